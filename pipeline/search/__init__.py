"""Latent search (PULSE) with temporal warm starts, batched across faces.

Public API (import from the submodules; this package imports nothing heavy itself):
- latent_space.GaussianizedW: PULSE's Gaussianised W (fit(G, n, seed, chunk), cached per model; to_w/from_w)
- search.search(G, targets, *, settings, space, init, prev, prev_mask, gray, seeds, device) -> SearchResult
  (its optimiser loop: loop.optimise, a fixed-shape batch with masked faces, one host sync per check,
  optionally compiled; targets.TargetBatch: the targets prepared once per call)
- profiling.profile_call(fn, device) -> (result, TraceSummary): ops vs Python vs kernels, syncs per step
- track.restore_track(G, crops, *, settings, space, gray, device, track_id, frame_indices, prev_state)
  and track.restore_tracks_batched(G, tracks: [TrackInput], ...) -> [TrackOutput] (lockstep batching)
- chunks.plan_chunks (plan.plan_chunks, torch-free) / chunks.restore_track_chunked: anchors first, chunks
  landing on the next anchor (solve_anchors, chunk_input: the same steps as separate work units)
- synthetic.make_track: a known-answer world for evaluation (scripts/evaluate_search.py)
Settings are pipeline.config.SearchConfig. The detail the search restores is invented by the prior
(see pipeline.INVENTED_DETAIL_NOTICE).
"""
