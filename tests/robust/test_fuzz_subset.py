"""A fast, representative subset of `scripts/fuzz_inputs.py`: bad and unusual inputs end in one clean
line naming the user's file, good ones restore with every frame, nothing partial is left behind.

The corpus is built by the script itself (ffmpeg lavfi clips, truncations, corruptions, RGB/deep
sources, image sequences, hostile checkpoints); each case runs `python -m pipeline` as a user would.
The full run (62+ cases, a few minutes) is `python scripts/fuzz_inputs.py`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_inputs", ROOT / "scripts" / "fuzz_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_inputs"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_script()


@pytest.fixture(scope="module")
def quick_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fuzz")
    corpus = fuzz.build_corpus(root / "corpus", quick=True)
    return {c.name: c for c in fuzz.cases(corpus, root / "out") if c.quick}


QUICK = [
    "prores422-pcm-to-mov",
    "ffv1-bgr0-to-mp4",
    "ffv1-gbrp16-master-rgb",
    "ffv1-gbrp16-to-tiff-seq",
    "dpx-seq-master",
    "mkv-cut10",
    "mp4-header",
    "zero-frames",
    "seq-gap",
    "pcm-into-mp4",
    "scale-100",
    "malformed-set",
    "model-evil",
    "probe-dpx",
    "probe-empty",
    "output-exists",
    "full-disk-up-front",
    "two-runs-one-output",
    # issue 22: what new users typed or had
    "vfr-mkv-two-audio",
    "scale-fraction",
    "scale-zero",
    "output-option-missing",
    "command-typo",
    "preset-typo",
    "set-key-typo",
    "output-is-input-no-overwrite",
]


def test_the_subset_is_the_scripts_quick_cases(quick_cases: dict[str, Any]) -> None:
    assert sorted(quick_cases) == sorted(QUICK)


@pytest.mark.parametrize("name", QUICK)
def test_case(quick_cases: dict[str, Any], name: str) -> None:
    result = fuzz.run_case(quick_cases[name])
    assert not result.traceback, result.last_line
    assert result.as_expected, f"{name}: rc={result.rc} {result.last_line}"
    assert result.stale == [], result.stale
    assert result.leftover == [], f"{name}: processes left running: {result.leftover}"
    if result.intact is not None:
        assert result.intact, f"{name}: the existing output was changed by a failed run"


def test_ctrl_c_under_ray_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group) once the embedded Ray has started and work is under way:
    exit 130, one `reel: interrupted` line, no output, no hidden partial in the work directory, and no
    Ray process left running (issue 22: agents were left alive, ~200 MB, parent gone)."""
    # 60 s, so that a loaded machine cannot finish the run between the first artifact and the signal
    # (a 20-s clip did once, under a landing's full load).
    corpus = {"long": fuzz.clip(tmp_path / "long.mkv", size="320x240", seconds=60.0)}
    case = fuzz.Case("ctrl-c-under-ray", [], "error", run=fuzz._interrupt_case(corpus, tmp_path / "out"))
    result = fuzz.run_case(case)
    assert result.rc == 130 and result.clean_error, result.last_line
    assert result.stale == [] and result.leftover == [], (result.stale, result.leftover)
