"""Choosing the people by reference photos (--only-people / --except-people), end to end: real
photographs of two people over two shots, the real scan, SFace and compose, checked on pixels
against the run without a face model. The clip is lossless RGB (FFV1) so "left as without a face
model" can be checked exactly."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.faces.people_clip import Appearance, PeopleClip, render

SEARCH = [
    "search.steps=8",
    "search.warm_steps=3",
    "search.gaussian_samples=2000",
    "run.device=cpu",
    "run.executor=local",
    "run.progress=false",
    "report.spread_faces=0",
    "compose.max_face_stretch=16",  # the 16-px test generator's faces are pasted, not fallen back
]


@dataclass
class _Clip:
    clip: PeopleClip
    video: Path
    refs: Path  # person 0: one photo; person 1: a subfolder of two


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> _Clip:
    import cv2

    root = tmp_path_factory.mktemp("people")
    shots = [
        [Appearance(0, (0.28, 0.45), (0.05, 0.0), 60), Appearance(1, (0.72, 0.45), (-0.04, 0.0), 56)],
        [Appearance(1, (0.3, 0.5), (0.03, 0.0), 64), Appearance(0, (0.7, 0.45), (0.0, 0.03), 52)],
        [Appearance(1, (0.5, 0.5), (0.0, 0.0), 18)],  # too small to decide
    ]
    clip = render(shots, length=6, size=(256, 144))
    video = root / "people.mkv"
    h, w = clip.frames[0].shape[:2]
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}"]
    cmd += ["-framerate", "25", "-i", "pipe:0", "-c:v", "ffv1", "-pix_fmt", "gbrp", str(video)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in clip.frames), check=True)
    refs = root / "refs"
    (refs / "second").mkdir(parents=True)
    cv2.imwrite(str(refs / "first.png"), clip.heads[0].photo[:, :, ::-1])
    photo = clip.heads[1].photo[:, :, ::-1]
    cv2.imwrite(str(refs / "second" / "big.jpg"), photo)
    cv2.imwrite(str(refs / "second" / "small.jpg"), cv2.resize(photo, (200, 200)))
    return _Clip(clip, video, refs)


def _first(refs: Path, tmp: Path) -> Path:
    """A folder with only person 0's photo."""
    one = tmp / "one"
    one.mkdir()
    (one / "first.png").write_bytes((refs / "first.png").read_bytes())
    return one


def _decode(path: Path) -> list[np.ndarray]:
    from pipeline.anon.evaluate import decode

    return decode(path)


def _region_diff(
    a: list[np.ndarray], b: list[np.ndarray], clip: PeopleClip, person: int, scale: int
) -> float:
    """Largest pixel difference of two outputs over every true face box of `person`."""
    worst = 0.0
    for f, rows in enumerate(clip.truth):
        for p, box in rows:
            if p == person:
                x0, y0, x1, y1 = (np.asarray(box) * scale).astype(int)
                d = np.abs(a[f][y0:y1, x0:x1].astype(int) - b[f][y0:y1, x0:x1].astype(int))
                worst = max(worst, float(d.max()))
    return worst


def test_restore_except_people_leaves_them_as_without_a_model(
    people: _Clip, tiny_model: Path, tmp_path: Path
) -> None:
    from pipeline.run.restore import restore

    lossless = ["io.preset=master-rgb", "upscale.scale=2"]
    plain = tmp_path / "plain.mkv"
    restore(people.video, plain, load_config(sets=[f"run.workdir={tmp_path}/w0", *SEARCH, *lossless]))
    out = tmp_path / "chosen.mkv"
    one = _first(people.refs, tmp_path)
    sets = [f"prior.model={tiny_model}", f"run.workdir={tmp_path}/w1", *SEARCH, *lossless]
    report = restore(people.video, out, load_config(sets=[*sets, f"people.exclude={one}"]))
    body = json.loads(out.with_name(out.name + ".report.json").read_text())
    by_match = {p["match"]: p for p in body["people"] if p["match"]}
    assert set(by_match) == {"first"} and by_match["first"]["chosen"] is False
    kept = {t for p in body["people"] if p["chosen"] for t in p["tracks"]}
    assert {t["track_id"] for t in body["tracks"]} == kept and report.restored > 0
    a, b = _decode(plain), _decode(out)
    assert _region_diff(a, b, people.clip, 0, 2) == 0  # person 0: exactly the plain upscale
    assert _region_diff(a, b, people.clip, 1, 2) > 0  # person 1: restored
    # under --only-people with the same photo (a changed choice: the scan is reused, the stitch is
    # redone) the other person is the one left alone
    only = tmp_path / "only.mkv"
    restore(people.video, only, load_config(sets=[*sets, f"people.only={one}"]))
    c = _decode(only)
    assert _region_diff(a, c, people.clip, 1, 2) == 0 and _region_diff(a, c, people.clip, 0, 2) > 0


def test_anonymize_only_people_hides_them_and_the_undecided(people: _Clip, tmp_path: Path) -> None:
    from pipeline.anon.mode import ANONYMIZE
    from pipeline.run.restore import restore

    common = ["run.executor=local", "run.progress=false", "io.preset=master-rgb"]
    plain = tmp_path / "plain.mkv"
    restore(people.video, plain, load_config(["anonymize"], [f"run.workdir={tmp_path}/w0", *common]))
    out = tmp_path / "anon.mkv"
    cfg = load_config(["anonymize"], [f"run.workdir={tmp_path}/w1", f"people.only={people.refs}", *common])
    restore(people.video, out, cfg, mode=ANONYMIZE)
    audit = json.loads(Path(f"{out}.anon.json").read_text())
    choice = audit["people_choice"]
    assert choice["rule"] == "only" and choice["undecided_hidden"] and choice["left_untouched"] == []
    # both photographed people recognised, the subfolder as one person
    assert sorted(choice["recognised"].values()) == ["first", "second"]
    a, b = _decode(plain), _decode(out)
    assert _region_diff(a, b, people.clip, 0, 1) > 60 and _region_diff(a, b, people.clip, 1, 1) > 60

    # only person 0 chosen: person 1 is left exactly as it was, except where undecided (hidden)
    out1 = tmp_path / "anon1.mkv"
    one = _first(people.refs, tmp_path)
    # (the same work directory: the first run forgot the embeddings, this one must scan again)
    cfg = load_config(["anonymize"], [f"run.workdir={tmp_path}/w1", f"people.only={one}", *common])
    restore(people.video, out1, cfg, mode=ANONYMIZE)
    audit = json.loads(Path(f"{out1}.anon.json").read_text())
    undecided = audit["people_choice"]["undecided_hidden"]
    assert undecided and audit["people_choice"]["left_untouched"]
    c = _decode(out1)
    decided_frames = range(0, 12)  # shots 0 and 1; shot 2 has person 1 too small to decide
    for f in decided_frames:
        for p, box in people.clip.truth[f]:
            x0, y0, x1, y1 = np.asarray(box).astype(int)
            d = int(np.abs(a[f][y0:y1, x0:x1].astype(int) - c[f][y0:y1, x0:x1].astype(int)).max())
            assert (d == 0) == (p == 1)
    f, (_, box) = 14, people.clip.truth[14][0]
    x0, y0, x1, y1 = np.asarray(box).astype(int)
    assert np.abs(a[f][y0:y1, x0:x1].astype(int) - c[f][y0:y1, x0:x1].astype(int)).max() > 30
    html = Path(f"{out1}.report.html").read_text()
    assert "left untouched" in html and "processed (undecided)" in html


@pytest.mark.parametrize("case", ["empty", "subfolder", "unreadable", "no face"])
def test_bad_reference_photos_fail_before_any_work(
    people: _Clip, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    refs = tmp_path / "refs"
    refs.mkdir()
    named = refs
    if case == "subfolder":
        (refs / "first.png").write_bytes((people.refs / "first.png").read_bytes())
        named = refs / "nobody"
        named.mkdir()
    elif case == "unreadable":
        named = refs / "photo.jpg"
        named.write_bytes(b"not an image")
    elif case == "no face":
        import cv2

        named = refs / "wall.png"
        cv2.imwrite(str(named), np.full((120, 160, 3), 128, np.uint8))
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = [str(people.video), "-o", str(outdir / "o.mkv"), "--executor", "local"]
    for command, option in (
        ("restore", "--only-people"),
        ("anonymize", "--except-people"),
        ("restore", "--reference-photos"),  # read and checked alike (with a model: guidance needs one)
    ):
        more = ["--model", str(tiny_model)] if option == "--reference-photos" else []
        assert main([command, *args, *more, option, str(refs)]) != 0
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("reel: error: ") and f"{named}:" in last
        assert list(outdir.iterdir()) == []  # nothing written


def test_restore_with_reference_photos_guides_the_recognised_people(
    people: _Clip, tiny_model: Path, tmp_path: Path
) -> None:
    """Both photographed people are recognised and their tracks searched towards their photos; the
    report says which tracks each reference person guided, and every restored face meets the bound."""
    from pipeline.run.restore import restore

    out = tmp_path / "guided.mkv"
    sets = [f"prior.model={tiny_model}", f"run.workdir={tmp_path}/w", "search.guide_steps=20", *SEARCH]
    restore(people.video, out, load_config(sets=[*sets, f"people.reference={people.refs}"]))
    body = json.loads(out.with_name(out.name + ".report.json").read_text())
    guided = body["reference_photos"]["guided_tracks"]
    by_person = {p["guided_by"]: p["tracks"] for p in body["people"] if p.get("guided_by")}
    assert set(by_person) == {"first", "second"}  # the subfolder is one person
    assert guided == {str(t): name for name, ts in by_person.items() for t in ts}
    undecided = {t for p in body["people"] if not p["decided"] for t in p["tracks"]}
    assert undecided and not undecided & {int(t) for t in guided}  # an undecided person is never guided
    for t in body["tracks"]:
        assert t["guided_by"] == guided.get(str(t["track_id"]))
    # the promise of the output: every restored face agrees with the footage in the frame (search
    # and projection; this random 16-px prior cannot meet it in its crop at 8 steps, guided or not)
    totals = body["totals"]
    assert totals["restored"] == totals["searched"] > 0 and totals["fell_back"] == 0
    assert totals["met_bound_in_frame"] == totals["restored"]
    html = out.with_name(out.name + ".report.html").read_text()
    assert "guided by (reference photos)" in html and "<td>second</td>" in html
    # the guidance reached the search: without the photos (the same work directory: the scan is
    # reused) the guided tracks come out otherwise
    plain = tmp_path / "plain.mkv"
    restore(people.video, plain, load_config(sets=sets))
    free = json.loads(plain.with_name(plain.name + ".report.json").read_text())
    assert free["reference_photos"] is None and all(t["guided_by"] is None for t in free["tracks"])
    psnr = {str(t["track_id"]): t["mean_psnr_db"] for t in free["tracks"]}
    assert all(t["mean_psnr_db"] != psnr[str(t["track_id"])] for t in body["tracks"] if t["guided_by"])


def test_reference_photos_guide_tracks_searched_in_chunks(
    people: _Clip, tiny_model: Path, tmp_path: Path
) -> None:
    """With search.chunk_len set, every track is searched as an anchor chain and chunks: the
    recognised people's chunked tracks are guided all the same (their anchors and chunks read the
    reference latents), every restored face meets the bound in frame, and the guided tracks come out
    otherwise than the same chunks unguided."""
    from pipeline.run.restore import restore

    sets = [f"prior.model={tiny_model}", f"run.workdir={tmp_path}/w", "search.guide_steps=20", *SEARCH]
    sets += ["search.chunk_len=3", "search.chunk_landing=1", "search.smooth_sigma=0"]
    bodies = {}
    for name, extra in (("guided", [f"people.reference={people.refs}"]), ("plain", [])):
        out = tmp_path / f"{name}.mkv"
        restore(people.video, out, load_config(sets=[*sets, *extra]))
        bodies[name] = json.loads(out.with_name(out.name + ".report.json").read_text())
    body, free = bodies["guided"], bodies["plain"]
    guided = {int(t) for t in body["reference_photos"]["guided_tracks"]}
    lengths = {t["track_id"]: t["restored"] for t in body["tracks"]}
    assert guided and all(lengths[t] > 3 for t in guided)  # searched in chunks
    totals = body["totals"]
    assert totals["restored"] == totals["searched"] > 0 and totals["met_bound_in_frame"] == totals["restored"]
    psnr = {t["track_id"]: t["mean_psnr_db"] for t in free["tracks"]}
    assert all(t["mean_psnr_db"] != psnr[t["track_id"]] for t in body["tracks"] if t["track_id"] in guided)
