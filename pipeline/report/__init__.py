"""The report a person opens first: `OUTPUT.report.html`, built from the JSON report and stored work.

Nothing here recomputes a stage. The pictures come from the work directory's artifacts (aligned
crops, restorations, the "where is this invented?" spread) and from a few frames decoded from the
output file; the numbers come from `OUTPUT.report.json` (written by `pipeline.run.report`).

    assets.py   loading artifacts, decoding the few frames needed, images as data URIs
    measure.py  per-track steadiness and change curves, frame-coordinate consistency of sampled frames
    plots.py    small inline SVG line plots (no plotting dependency)
    spread.py   K searches from different starts per sampled face -> per-pixel spread heat map
    html.py     the page itself (self-contained: no network, images embedded)
    build.py    JSON + work directory -> HTML (what `reel report OUTPUT` runs), batch index page
"""
