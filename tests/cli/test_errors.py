"""Usage mistakes on the command line: one line, naming the option, with "did you mean" (issue 22)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.files import save_json
from tests.media import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("cli") / "in.mp4", frames=3)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # no usage block
    assert err.startswith("reel: error: ")
    return err


@pytest.mark.parametrize(
    "argv, wanted",
    [
        (["restore", "{clip}", "-o", "{out}", "--scale", "1.5"], "--scale 1.5: expected a whole number"),
        (["restore", "{clip}", "-o", "{out}", "--scale", "0"], "--scale 0: must be 1 or more"),
        (["restore", "{clip}"], "missing -o/--output"),
        (["restor", "{clip}", "-o", "{out}"], "'restor' is not a command (did you mean 'restore'?)"),
        (["restore", "{clip}", "-o", "{out}", "--executor", "rey"], "(did you mean 'ray'?)"),
        (
            ["restore", "{clip}", "-o", "{out}", "--sacle", "2"],
            "unknown argument(s) --sacle 2 (did you mean '--scale'?)",
        ),
    ],
)
def test_a_usage_mistake_is_one_line_naming_the_option(
    capsys: pytest.CaptureFixture[str], clip: Path, tmp_path: Path, argv: list[str], wanted: str
) -> None:
    argv = [a.format(clip=clip, out=tmp_path / "out.mp4") for a in argv]
    err = _error(capsys, argv)
    assert wanted in err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    "sets, wanted",
    [
        (["--preset", "newsreal"], "(did you mean 'newsreel'?)"),
        (["--set", "search.stepz=3"], "stepz (did you mean 'steps'?)"),
        (["--set", "serch.steps=3"], "serch (did you mean 'search'?)"),
    ],
)
def test_a_mistyped_preset_or_setting_gets_the_closest_name(
    capsys: pytest.CaptureFixture[str], clip: Path, tmp_path: Path, sets: list[str], wanted: str
) -> None:
    code = main(["restore", str(clip), "-o", str(tmp_path / "out.mp4"), *sets])
    err = capsys.readouterr().err
    assert code == 2
    assert wanted in err


def test_output_equal_to_input_does_not_advise_overwrite(
    capsys: pytest.CaptureFixture[str], clip: Path
) -> None:
    before = clip.read_bytes()
    code = main(["restore", str(clip), "-o", str(clip), "--executor", "local"])
    err = capsys.readouterr().err
    assert code == 2
    assert "is the input file" in err and "--overwrite" not in err
    assert clip.read_bytes() == before


def test_anonymize_strict_exits_non_zero_and_lists_the_frames_when_a_face_is_above_the_threshold(
    capsys: pytest.CaptureFixture[str], clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's side of --strict: the report of a run with two face-frames above the threshold."""
    import pipeline.api
    from pipeline.anon.audit import AnonReport

    out = tmp_path / "out.mkv"
    audit = tmp_path / "out.mkv.anon.json"
    above = [{"track_id": 0, "frame": 7, "cosine": 0.5}, {"track_id": 0, "frame": 2, "cosine": 0.4}]
    save_json(audit, {"identity": {"above_threshold": above}})
    report = AnonReport(out, 10, 1, 5, 5, 0, 0.5, 2, "m", False, audit_path=audit)
    monkeypatch.setattr(pipeline.api, "anonymize", lambda *a, **k: report)
    assert main(["anonymize", str(clip), "-o", str(out)]) == 0
    assert "review: frames 7, 2" in capsys.readouterr().out
    assert main(["anonymize", str(clip), "-o", str(out), "--strict"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 face-frame(s) above the same-person threshold (--strict)" in err
