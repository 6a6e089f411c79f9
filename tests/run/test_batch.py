"""`reel batch`: many inputs from one manifest on one Ray instance; a broken one does not stop the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.run.batch import load_manifest
from tests.media import make_clip, read_audio_packets, read_video_tags, read_video_times


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.allow_error_logs  # the broken item is logged as an error
def test_a_batch_with_a_broken_input_finishes_the_others_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    a = make_clip(media / "a", size=(64, 48), frames=12, audio=1)
    make_clip(media / "b", size=(48, 32), frames=9, rate="30000/1001")
    broken = media / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    manifest = _write(
        tmp_path / "reels.yaml",
        {
            "set": {
                "run": {"segment_frames": 5, "num_cpus": 2, "progress": False},
                "io": {"preset": "master-ffv1"},
            },
            "output_dir": "out",
            "items": [
                {"input": "media/a.mkv"},
                {"input": "media/broken.mp4", "output": "broken.mkv"},
                {"input": "media/b.mkv", "output": "b-same-size.mkv", "set": ["upscale.scale=1"]},
            ],
        },
    )
    (tmp_path / "out").mkdir()
    assert main(["batch", str(manifest), "--set", f"run.workdir={tmp_path / 'work'}"]) == 1

    summary = capsys.readouterr().out
    assert "2 done, 0 skipped, 1 failed" in summary
    assert "failed" in summary and "broken.mp4" in summary
    out_a, out_b = tmp_path / "out" / "a.restored.mkv", tmp_path / "out" / "b-same-size.mkv"
    assert len(read_video_times(out_a).pts) == 12 and read_audio_packets(out_a) == read_audio_packets(a)
    assert (read_video_tags(out_a).width, read_video_tags(out_a).height) == (128, 96)  # default scale 2
    assert (read_video_tags(out_b).width, read_video_tags(out_b).height) == (48, 32)  # the item's override
    assert not (tmp_path / "out" / "broken.mkv").exists()

    report = json.loads((tmp_path / "reels.summary.json").read_text())
    statuses = {Path(r["input"]).name: (r["status"], r["error"]) for r in report["items"]}
    assert statuses["a.mkv"] == ("done", None) and statuses["b.mkv"] == ("done", None)
    assert statuses["broken.mp4"][0] == "failed" and "broken.mp4" in statuses["broken.mp4"][1]

    # a rerun skips what is finished and tries the broken one again
    assert main(["batch", str(manifest), "--set", f"run.workdir={tmp_path / 'work'}"]) == 1
    assert "2 skipped" in capsys.readouterr().out


def test_manifest_errors_name_the_file_and_item(tmp_path: Path) -> None:
    bad_key = _write(tmp_path / "m.yaml", {"items": [{"input": "x.mp4", "ouput": "y.mkv"}]})
    with pytest.raises(ConfigError, match=r"m.yaml: items\[0\]: unknown key\(s\) ouput"):
        load_manifest(bad_key)
    dup = _write(
        tmp_path / "d.yaml",
        {"items": [{"input": "x.mp4", "output": "o.mkv"}, {"input": "y.mp4", "output": "o.mkv"}]},
    )
    with pytest.raises(ConfigError, match="several items write the same output"):
        load_manifest(dup)
    with pytest.raises(ConfigError, match="non-empty list"):
        load_manifest(_write(tmp_path / "e.yaml", {"items": []}))
    # a bad setting in one item is reported before anything runs
    bad_set = _write(tmp_path / "s.yaml", {"items": [{"input": "x.mp4", "set": ["search.stepz=3"]}]})
    assert main(["batch", str(bad_set)]) == 2
