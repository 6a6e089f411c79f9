#!/usr/bin/env python
"""Evaluate the latent search where the answer is known: a seeded generator's face moving smoothly.

A small random StyleGAN2 (noise inputs at realistic strength) renders a smooth latent path; the frames,
downscaled (optionally blurred and noisy), are the targets; the renders are the truth. Each method
restores the track, and the table reports per method:

  met      fraction of frames whose downscaled restoration meets the bound (MSE <= eps)
  steps    mean optimiser steps per frame (overlap frames of chunked runs count both chunks' work)
  psnr_hr  mean PSNR of the restoration to the true high-resolution frame (dB)
  change   mean frame-to-frame RMS change of the output ÷ the truth's (1 = moves as much as the truth)
  flicker  mean RMS of (output change - truth change) ÷ mean truth change (0 = moves exactly like it)
  renders  full-resolution syntheses per frame (with --truncate-factor: the refreshes, the final image
           and any refinement; without: every step renders at full size)

Methods: cold per-frame search with a fresh seed per frame (naive video PULSE), the same seed for every
frame, warm start, warm + coarse layers shared along the track, warm + temporal smoothing, and warm
chunked (anchors solved first, chunks landing on the next anchor). The last line is a JSON summary;
steadiness_gain is the cold (fresh seed) flicker ÷ the warm flicker; boundary_ratio is the chunked run's
flicker over the transitions a boundary shapes (landing + step onto the anchor) ÷ its flicker elsewhere,
seam_ratio the same for the step onto the anchor alone.

With --reference: reference-guided search (pipeline.search.guide). Per world, the references are
renders of the true latents (a few frames of the track) under other noise maps, each cropped (a
random 80-95 % window, shifted, resized back); they are inverted with our search and the track is
restored unguided and guided at the same settings (the same step budgets). Reported: the fraction
meeting the bound, steps, the latent error (RMS of W+ restored - W+ true, per frame), and identity
similarity along the track. The small random generator has no face recogniser, so identity is
measured in generator space: each restored frame's W+ and the references' true latents are rendered
under one common set of noise maps, and the cosine of (render - the average face's render) is taken
(the mean of the references'). In this world a person IS their latent: the references share it and
differ only in noise maps and crop, so with the noise held fixed the render difference is what the
latents, and only they, make (a face recogniser's embedding plays that part for real faces). The
true latents score about 0.9 on it (they move along the track); a random face about 0. Also reported:
the distance to the reference code (RMS of W+ restored - the references' inverted person code in W),
how far the guidance pulled. With --chunked the track is searched in chunks (--chunk-len, --landing:
anchors first, then chunks landing on the next anchor), guided or not alike. With --identity-weight W a
third run adds the SFace identity term (search.identity_weight = W, SFace in torch) towards the mean
SFace embedding of the reference renders; `sface` is then, for every run, the SFace cosine of each
restored frame to that embedding. SFace was trained on faces and this generator draws none: the
term can raise `sface` here (that is what it optimises) without saying anything about identity;
the latent error and the generator-space identity are the independent measures. The last line is
JSON.

The restored detail in any real use is invented by the prior; here the prior is a random generator
and the "faces" are not faces.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import SearchConfig
from pipeline.metrics.temporal import boundary_ratio, flicker, frame_changes, psnr
from pipeline.prior.stylegan2 import make_random_generator
from pipeline.search.chunks import boundary_transitions, plan_chunks, restore_track_chunked
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.synthetic import SyntheticTrack, make_track, reference_renders
from pipeline.search.track import restore_track
from pipeline.types import FaceRestoration


def _measure(
    out: list[FaceRestoration], world: SyntheticTrack, seconds: float, full_renders: int
) -> dict[str, float]:
    img = np.stack([o.image for o in out])  # [T, R, R, 3]
    truth_change = float(frame_changes(world.truth).mean())
    return {
        "met": float(np.mean([o.met_bound for o in out])),
        "steps": float(np.mean([o.steps for o in out])),
        "psnr_lr": float(np.mean([o.psnr for o in out])),
        "psnr_hr": float(np.mean([psnr(img[t], world.truth[t]) for t in range(len(out))])),
        "change": float(frame_changes(img).mean()) / truth_change,
        "flicker": float(flicker(img, world.truth).mean()) / truth_change,
        "seconds": seconds,
        "renders": full_renders / len(out),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small world, under a minute on a laptop CPU")
    ap.add_argument("--resolution", type=int, default=64, help="generator output size (px)")
    ap.add_argument("--scale", type=int, default=8, help="downscale factor of the targets")
    ap.add_argument("--frames", type=int, default=48, help="track length")
    ap.add_argument("--tracks", type=int, default=2, help="independent worlds (seeds) averaged")
    ap.add_argument("--motion", type=float, default=0.6, help="how far the face moves per keyframe (0..1)")
    ap.add_argument("--blur", type=float, default=0.0, help="Gaussian blur of the truth before downscaling")
    ap.add_argument("--noise", type=float, default=0.0, help="additive noise on the targets (sigma, 0..1)")
    ap.add_argument("--chunk-len", type=int, default=12, help="chunk length of the chunked run")
    ap.add_argument("--landing", type=int, default=6, help="frames a chunk takes to land on the next anchor")
    ap.add_argument("--share-coarse", type=int, default=4, help="coarse W+ layers shared in that option")
    ap.add_argument("--smooth-sigma", type=float, default=1.5, help="smoothing sigma (frames) in that option")
    ap.add_argument(
        "--truncate-factor", type=float, default=0.0, help="search.truncate_factor (0 = full synthesis)"
    )
    ap.add_argument(
        "--truncate-refresh", type=int, default=10, help="search.truncate_refresh (0 = first only)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", action="store_true", help="reference-guided vs unguided search instead")
    ap.add_argument("--references", type=int, default=3, help="reference renders per world (--reference)")
    ap.add_argument("--chunked", action="store_true", help="with --reference: search the tracks in chunks")
    ap.add_argument(
        "--identity-weight", type=float, default=0.0, help="with --reference: also a run with the SFace term"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (more only helps an idle machine)"
    )
    args = ap.parse_args(argv)
    if args.reference:
        if args.quick:
            args.frames, args.tracks, args.resolution = 12, 6, 32
            args.chunk_len, args.landing = 4, 1
        torch.set_num_threads(args.threads)
        return reference_main(args)
    if args.quick:
        args.frames, args.tracks, args.resolution = 24, 1, 32
        args.chunk_len, args.landing = 8, 5
    torch.set_num_threads(args.threads)

    G = make_random_generator(args.resolution, args.seed + 1, noise_strength=0.3)
    space = GaussianizedW.fit(G, n=20_000, seed=0, use_cache=False)
    base = SearchConfig(truncate_factor=args.truncate_factor, truncate_refresh=args.truncate_refresh)
    full_renders = [0]  # faces synthesised at the generator's full resolution

    def count(_m: torch.nn.Module, _a: tuple, kwargs: dict, img: torch.Tensor) -> None:
        if img.shape[-1] == G.img_resolution:
            full_renders[0] += int(img.shape[0])

    G.synthesis.register_forward_hook(count, with_kwargs=True)
    methods = {
        "cold (fresh seed per frame)": ("per-frame", base),
        "cold (same seed every frame)": ("same-seed", base),
        "warm start": ("track", base),
        f"warm + coarse {args.share_coarse} shared": (
            "track",
            replace(base, share_coarse_layers=args.share_coarse),
        ),
        f"warm + smoothing sigma {args.smooth_sigma}": (
            "track",
            replace(base, smooth_sigma=args.smooth_sigma),
        ),
        f"warm chunked {args.chunk_len}, landing {args.landing}": (
            "chunked",
            replace(base, chunk_len=args.chunk_len, chunk_landing=args.landing),
        ),
    }
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    ratios: list[float] = []
    seams: list[float] = []
    for w in range(args.tracks):
        world = make_track(
            G,
            frames=args.frames,
            scale=args.scale,
            seed=1000 + w,
            motion=args.motion,
            blur_sigma=args.blur,
            noise_sigma=args.noise,
        )
        for name, (kind, settings) in methods.items():
            t0 = time.perf_counter()
            full_renders[0] = 0
            if kind == "per-frame" or kind == "same-seed":
                out = []
                for t, crop in enumerate(world.crops):
                    s = replace(settings, seed=settings.seed + (t if kind == "per-frame" else 0))
                    out += restore_track(G, [crop], settings=s, space=space, track_id=w, frame_indices=[t])[0]
            elif kind == "track":
                out, _ = restore_track(G, world.crops, settings=settings, space=space, track_id=w)
            else:
                out, _ = restore_track_chunked(G, world.crops, settings=settings, space=space, track_id=w)
                img = np.stack([o.image for o in out])
                chunks = plan_chunks(args.frames, args.chunk_len, args.landing)
                change = flicker(img, world.truth)
                ratios.append(boundary_ratio(change, boundary_transitions(chunks, args.landing)))
                # the seam alone: the step from a chunk's last frame onto the next chunk's anchor
                calm = np.ones(change.shape[0], bool)
                calm[boundary_transitions(chunks, args.landing)] = False
                seams.append(float(change[[c.start - 1 for c in chunks[1:]]].mean() / change[calm].mean()))
            rows[name].append(_measure(out, world, time.perf_counter() - t0, full_renders[0]))

    table = {name: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for name, rs in rows.items()}
    print(
        f"world: {args.resolution} px random StyleGAN2 (noise strength 0.3), x{args.scale} targets, "
        f"{args.frames} frames x {args.tracks} track(s), motion {args.motion}, "
        f"blur {args.blur}, noise {args.noise}"
    )
    print(f"bound: MSE <= {base.eps} ; early stop at MSE <= {base.stop_eps}")
    print(
        f"truncated synthesis: factor {base.truncate_factor} (0 = off), refresh every {base.truncate_refresh}"
    )
    head = ("met", "steps", "psnr_lr", "psnr_hr", "change", "flicker", "renders", "sec")
    print(f"{'method':36s} " + " ".join(f"{h:>7s}" for h in head))
    for name, r in table.items():
        print(
            f"{name:36s} {r['met']:7.2f} {r['steps']:7.1f} {r['psnr_lr']:7.2f} {r['psnr_hr']:7.2f} "
            f"{r['change']:7.2f} {r['flicker']:7.2f} {r['renders']:7.2f} {r['seconds']:7.1f}"
        )
    names = list(methods)
    cold, same, warm = table[names[0]], table[names[1]], table[names[2]]
    summary = {
        "frames_meeting_bound": warm["met"],
        "frames_meeting_bound_all_methods": min(r["met"] for r in table.values()),
        "cold_steps": cold["steps"],
        "warm_steps": warm["steps"],
        "warm_to_cold_steps": warm["steps"] / max(cold["steps"], 1e-9),
        "steadiness_gain": cold["flicker"] / max(warm["flicker"], 1e-9),
        "steadiness_gain_vs_same_seed": same["flicker"] / max(warm["flicker"], 1e-9),
        "change_ratio_gain": cold["change"] / max(warm["change"], 1e-9),
        "boundary_ratio": float(np.mean(ratios)),
        "seam_ratio": float(np.mean(seams)),
        "psnr_hr_cold": cold["psnr_hr"],
        "psnr_hr_warm": warm["psnr_hr"],
        "chunked_steps": table[names[5]]["steps"],
        "chunked_meeting_bound": table[names[5]]["met"],
        "warm_full_renders": warm["renders"],
    }
    print(json.dumps({k: round(v, 4) for k, v in summary.items()}))
    return 0


class RenderIdentity:
    """Generator-space identity (see the module docstring): a latent's render under fixed noise maps,
    minus the average face's render under the same maps, as a vector."""

    @torch.no_grad()
    def __init__(self, G: torch.nn.Module, seed: int = 99) -> None:
        rng = torch.Generator().manual_seed(seed)
        self.G = G
        self.noise = [torch.randn(1, 1, h, w, generator=rng) for h, w in G.noise_shapes()]
        z = torch.randn(4096, int(G.z_dim), generator=torch.Generator().manual_seed(seed + 1))
        w_avg = G.mapping(z).mean(0, keepdim=True)  # [1, num_ws, w_dim]
        self.avg = self._render(w_avg)

    def _render(self, ws: torch.Tensor) -> torch.Tensor:
        noise = [n.expand(ws.shape[0], -1, -1, -1) for n in self.noise]
        return ((self.G.synthesis(ws, noise=noise) + 1) / 2).flatten(1)

    @torch.no_grad()
    def embed(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ [N, num_ws, w_dim] -> [N, 3 R R]."""
        return self._render(ws) - self.avg

    def cosine(self, ws: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        a = self.embed(ws)
        return torch.nn.functional.cosine_similarity(a, ref.expand_as(a), dim=1)


def _restore(
    G: torch.nn.Module,
    space: GaussianizedW,
    world: SyntheticTrack,
    settings: SearchConfig,
    track_id: int,
    guide: torch.Tensor | None,
    embedding: torch.Tensor | None,
    chunked: bool,
) -> list:
    """One track restored (guided when `guide` is given, with the SFace term towards `embedding`
    when settings.identity_weight > 0), whole or in chunks."""
    if not chunked:
        out, _ = restore_track(
            G, world.crops, settings=settings, space=space, track_id=track_id, guide=guide,
            guide_embedding=embedding,
        )  # fmt: skip
        return out
    from pipeline.search.state import Guide

    out, _ = restore_track_chunked(
        G, world.crops, settings=settings, space=space, track_id=track_id,
        guide=Guide(guide, embedding) if guide is not None else None,
    )  # fmt: skip
    return out


def _sface(images: list[np.ndarray]) -> torch.Tensor:
    """SFace embeddings [N, 128] (torch SFace, the crop's landmarks) of images [R, R, 3] in [0, 1]."""
    from pipeline.search.identity import embed_crops

    with torch.no_grad():
        return embed_crops(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float())


def reference_main(args: argparse.Namespace) -> int:
    """Reference-guided vs unguided search in the known-answer world (see the module docstring)."""
    from pipeline.search.guide import reference_latents

    G = make_random_generator(args.resolution, args.seed + 1, noise_strength=0.3)
    space = GaussianizedW.fit(G, n=20_000, seed=0, use_cache=False)
    identity = RenderIdentity(G)
    settings = SearchConfig(truncate_factor=args.truncate_factor, truncate_refresh=args.truncate_refresh)
    if args.chunked:
        settings = replace(settings, chunk_len=args.chunk_len, chunk_landing=args.landing)
    rows: dict[str, list[dict[str, float]]] = {"unguided": [], "guided": []}
    if args.identity_weight > 0:
        rows["guided+sface"] = []
    t0 = time.perf_counter()
    for w in range(args.tracks):
        world = make_track(G, frames=args.frames, scale=args.scale, seed=1000 + w, motion=args.motion)
        picks = np.linspace(0, args.frames - 1, args.references).round().astype(int)
        refs = reference_renders(G, world.ws[picks], seed=5000 + w)
        (guide,) = reference_latents(G, space, [refs], settings=settings)
        ref_id = identity.embed(world.ws[picks]).mean(0)  # the references' true identity
        code = space.to_w(guide)  # [1, num_ws, w_dim] the person code in W
        ref_sface = _sface(refs).mean(0)
        ref_sface = ref_sface / ref_sface.norm()
        runs = [("unguided", None, None, settings), ("guided", guide, None, settings)]
        if args.identity_weight > 0:
            sface = replace(settings, identity_weight=args.identity_weight)
            runs.append(("guided+sface", guide, ref_sface, sface))
        for name, g, emb, s in runs:
            out = _restore(G, space, world, s, w, g, emb, args.chunked)
            found = torch.from_numpy(np.stack([o.latents for o in out]))  # [T, num_ws, w_dim] W+
            err = (found - world.ws).pow(2).mean((1, 2)).sqrt()  # [T]
            to_code = (found - code).pow(2).mean((1, 2)).sqrt()  # [T]
            sim = identity.cosine(found, ref_id)  # [T]
            rows[name].append(
                {
                    "met": float(np.mean([o.met_bound for o in out])),
                    "steps": float(np.mean([o.steps for o in out])),
                    "latent_error": float(err.mean()),
                    "to_reference": float(to_code.mean()),
                    "sface": float((_sface([o.image for o in out]) @ ref_sface).mean()),
                    "identity": float(sim.mean()),
                    "identity_min": float(sim.min()),
                    "psnr_lr": float(np.mean([o.psnr for o in out])),
                }
            )
    table = {n: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for n, rs in rows.items()}
    print(
        f"world: {args.resolution} px random StyleGAN2 (noise strength 0.3), x{args.scale} targets, "
        f"{args.frames} frames x {args.tracks} track(s), motion {args.motion}; "
        f"{args.references} reference renders per track (other noise, 80-95 % crops)"
    )
    print(
        f"bound: MSE <= {settings.eps}; guide weight {settings.guide_weight}, "
        f"inversion {settings.guide_steps} steps x {settings.guide_restarts} starts per reference"
        + (f"; in chunks of {settings.chunk_len} (landing {settings.chunk_landing})" if args.chunked else "")
    )
    head = ("met", "steps", "latent_error", "to_reference", "identity", "identity_min", "sface", "psnr_lr")
    print(f"{'method':12s} " + " ".join(f"{h:>12s}" for h in head))
    for name, r in table.items():
        print(f"{name:12s} " + " ".join(f"{r[h]:12.4f}" for h in head))
    per_track = [
        g["latent_error"] < u["latent_error"] for u, g in zip(rows["unguided"], rows["guided"], strict=True)
    ]
    more_similar = [
        g["identity"] > u["identity"] for u, g in zip(rows["unguided"], rows["guided"], strict=True)
    ]
    u, g = table["unguided"], table["guided"]
    summary = {
        "guided_meeting_bound": g["met"],
        "unguided_meeting_bound": u["met"],
        "unguided_latent_error": u["latent_error"],
        "guided_latent_error": g["latent_error"],
        "latent_error_ratio": g["latent_error"] / max(u["latent_error"], 1e-9),
        "unguided_to_reference": u["to_reference"],
        "guided_to_reference": g["to_reference"],
        "tracks_guided_closer": float(np.mean(per_track)),
        "unguided_identity": u["identity"],
        "guided_identity": g["identity"],
        "guided_identity_min": g["identity_min"],
        "tracks_guided_more_similar": float(np.mean(more_similar)),
        "unguided_steps": u["steps"],
        "guided_steps": g["steps"],
        "seconds": time.perf_counter() - t0,
    }
    if "guided+sface" in table:
        t = table["guided+sface"]
        summary |= {
            "sface_meeting_bound": t["met"],
            "sface_latent_error": t["latent_error"],
            "sface_identity": t["identity"],
            "sface_steps": t["steps"],
            "sface_similarity": t["sface"],
            "guided_sface_similarity": g["sface"],
            "unguided_sface_similarity": u["sface"],
        }
    print(json.dumps({k: round(v, 4) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
