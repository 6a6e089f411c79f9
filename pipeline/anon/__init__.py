"""Anonymise: every face of every frame replaced by a synthetic one that cannot be traced back.

scan (recall first: both detectors, lone detections kept, gaps bridged, tracks extended) ->
search (a few pixels of each face, a per-track secret random start) -> compose (every face region
masked, synthetic faces on top; masks alone where the search cannot serve) -> audit (JSON sidecar).
"""
