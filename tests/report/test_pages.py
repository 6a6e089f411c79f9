"""The anonymise page and the batch index page, from their JSON, with real output files."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.files import save_json
from pipeline.report.anon import write_anon_report
from pipeline.report.build import batch_index
from tests.media import make_clip


def test_anonymize_page_shows_figures_and_output_only(tmp_path: Path) -> None:
    out = make_clip(tmp_path / "anon.mkv", frames=20, size=(64, 48))
    audit = {
        "version": 1,
        "notice": "Every detected face was replaced.",
        "output": str(out),
        "frames": 20,
        "shots": [[0, 12], [12, 20]],
        "face_frames": 9,
        "synthetic": 8,
        "masked": 1,
        "random_test_generator": True,
        "identity": {"same_person_threshold": 0.363, "max": 0.21, "leaked_face_frames": 0},
        "tracks": [
            {
                "track_id": 0,
                "shot": 0,
                "frames": [2, 11],
                "synthetic": 8,
                "masked": 1,
                "masked_because": {"prior cannot fit": 1},
                "identity_cosine": {"max": 0.21, "mean": 0.1},
                "leaked_frames": 0,
            }
        ],
        "seconds": {"scan": 1.0, "search": 2.0, "total": 3.5},
    }
    audit_path = tmp_path / "anon.mkv.anon.json"
    save_json(audit_path, audit)
    html = write_anon_report(audit_path).read_text()
    assert "Every detected face was replaced." in html and "RANDOM TEST GENERATOR" in html
    assert "prior cannot fit: 1" in html and "0.210" in html
    assert "footage crop" not in html  # the originals are never shown
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 6 and all(s.startswith("data:image/jpeg") for s in sources)  # 3 thumbs x 2 shots
    assert set(re.findall(r'href="#([^"]+)"', html)) <= set(re.findall(r'id="([^"]+)"', html))


def test_batch_index_links_each_items_report(tmp_path: Path) -> None:
    done = tmp_path / "a.mkv"
    (tmp_path / "a.mkv.report.html").write_text("<html></html>")
    save_json(tmp_path / "a.mkv.report.json", {"frames": 16, "restored": 24, "met_bound": 3})
    summary = {
        "manifest": "reels.yaml",
        "items": [
            {"input": "in/a.mp4", "output": str(done), "status": "done", "seconds": 12.5},
            {"input": "in/b.mp4", "output": str(tmp_path / "b.mkv"), "status": "failed", "seconds": 0.4},
        ],
    }
    html = batch_index(summary, tmp_path / "reels.report.html").read_text()
    assert 'href="a.mkv.report.html"' in html and "failed" in html and "<td>24</td>" in html
    assert html.count("<tr>") == 3  # header and two items


def test_anonymize_page_lists_every_face_frame_above_the_threshold_with_the_output(tmp_path: Path) -> None:
    from pipeline.anon.audit import above_threshold

    out = make_clip(tmp_path / "anon.mkv", frames=12, size=(64, 48))
    records = [
        {"track_id": 0, "frame": 3, "identity_cosine": 0.41},
        {"track_id": 0, "frame": 4, "identity_cosine": 0.2},
        {"track_id": 1, "frame": 9, "identity_cosine": 0.55},
        {"track_id": 1, "frame": 10, "identity_cosine": None},
    ]
    above = above_threshold(records)
    assert [(r["frame"], r["cosine"]) for r in above] == [(9, 0.55), (3, 0.41)]  # worst first, only those
    audit = {
        "output": str(out),
        "frames": 12,
        "shots": [[0, 12]],
        "identity": {
            "same_person_threshold": 0.363,
            "max": 0.55,
            "leaked_face_frames": 2,
            "above_threshold": above,
        },
        "tracks": [],
    }
    save_json(tmp_path / "anon.mkv.anon.json", audit)
    html = write_anon_report(tmp_path / "anon.mkv.anon.json").read_text()
    review = html[html.index('id="review"') :]
    assert "2 face-frame(s) above the threshold" in review
    assert "<td>9</td>" in review and "<td>3</td>" in review and "<td>4</td>" not in review
    strip = review[review.index('class="strip review"') :].split("</div>")[0]
    assert strip.count("<img") == 2 and "frame 9" in strip and "frame 3" in strip


def test_anonymize_page_says_when_nothing_needs_review(tmp_path: Path) -> None:
    out = make_clip(tmp_path / "anon.mkv", frames=4, size=(64, 48))
    audit = {
        "output": str(out),
        "frames": 4,
        "shots": [[0, 4]],
        "identity": {"above_threshold": []},
        "tracks": [],
    }
    save_json(tmp_path / "a.json", audit)
    assert "no face-frame above the threshold" in write_anon_report(tmp_path / "a.json").read_text()


def _pictures(html: str, alt: str) -> list[np.ndarray]:
    import cv2

    found = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" alt="([^"]*)"', html)
    out = []
    for data, text in found:
        if alt in text:
            buf = np.frombuffer(base64.b64decode(data), np.uint8)
            out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32))  # 8-bit levels
    return out


def _people_audit(out: Path) -> dict[str, Any]:
    """An anonymised output's audit with two people (one undecided) pictured at their tracks."""
    people = [
        {
            "id": 0,
            "tracks": [0, 1],
            "frames": 14,
            "decided": True,
            "thumbs": [
                {"track_id": 0, "shot": 0, "frame": 4, "box": [10, 8, 40, 44]},
                {"track_id": 1, "shot": 1, "frame": 15, "box": [50, 10, 80, 46]},
            ],
        },
        {
            "id": 1,
            "tracks": [2],
            "frames": 3,
            "decided": False,
            "thumbs": [{"track_id": 2, "shot": 1, "frame": 13, "box": [0, 0, 12, 12]}],
        },
    ]
    tracks = [{"track_id": t, "shot": t // 2 + (t == 1), "frames": [0, 5]} for t in range(3)]
    audit = {"output": str(out), "frames": 20, "shots": [[0, 12], [12, 20]], "tracks": tracks}
    return audit | {"people": people, "undecided_people": [1], "scale": 1}


def test_anonymize_people_sheet_pictures_the_output_at_each_track(tmp_path: Path) -> None:
    from pipeline.io.decode import open_video
    from pipeline.report.assets import face_region, fit, to_uint8

    out = make_clip(tmp_path / "anon.mkv", frames=20, size=(96, 64))
    audit = _people_audit(out)
    people = audit["people"]
    save_json(tmp_path / "anon.mkv.anon.json", audit)
    html = write_anon_report(tmp_path / "anon.mkv.anon.json").read_text()
    assert 'id="person-0"' in html and 'id="person-1"' in html and "undecided" in html
    assert "2 people (1 undecided)" in html
    assert set(re.findall(r'href="#([^"]+)"', html)) <= set(re.findall(r'id="([^"]+)"', html))
    shown = _pictures(html, "(output)")
    assert len(shown) == 3  # one per track
    frames = open_video(out, deinterlace="off").pictures({4, 15, 13})
    for pic, thumb in zip(shown, [t for p in people for t in p["thumbs"]], strict=True):
        cut = face_region(to_uint8(frames[thumb["frame"]]), thumb["box"], 1.0, margin=0.25)[0]
        region = fit(cut, pic.shape[0]).astype(np.float32)
        err = float(np.abs(pic - region).mean())
        assert err < 16 and 4 * err < float(np.abs(pic - region[::-1, ::-1]).mean())  # that place, that frame


def test_an_output_that_cannot_be_decoded_is_reported_without_pictures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The page is still written (every section, no picture of the output), and the log says why."""
    out = tmp_path / "anon.mkv"
    out.write_bytes(b"not a video, cut short by a full disk")
    save_json(tmp_path / "anon.mkv.anon.json", _people_audit(out))
    with caplog.at_level(logging.WARNING, logger="pipeline.report"):
        html = write_anon_report(tmp_path / "anon.mkv.anon.json").read_text()
    assert 'id="person-0"' in html and "2 people (1 undecided)" in html
    assert _pictures(html, "(output)") == []
    assert f"report: {out} not decoded" in caplog.text
