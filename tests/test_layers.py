"""The layers (README, Development) hold: import-linter's contracts in pyproject.toml are all kept,
so an import circle or an import from a lower layer to a higher one fails the default test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_every_import_contract_is_kept() -> None:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    kinds = {c["type"] for c in contracts}
    assert {"layers", "forbidden", "acyclic_siblings"} <= kinds
    result = _lint(REPO, REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for contract in contracts:
        assert f"{contract['name']} KEPT" in result.stdout


def test_a_circle_or_an_upward_import_breaks_the_contracts(tmp_path: Path) -> None:
    # the same kinds of contract on a two-package tree with an upward import and a circle
    pkg = tmp_path / "tiny"
    for sub in ("low", "high"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("from tiny.low import b\nfrom tiny.high import c\n")
    (pkg / "low" / "b.py").write_text("def f():\n    from tiny.low import a\n")
    (pkg / "high" / "c.py").write_text("X = 1\n")
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.importlinter]
            root_package = "tiny"
            [[tool.importlinter.contracts]]
            name = "layers"
            type = "layers"
            containers = ["tiny"]
            layers = ["high", "low"]
            [[tool.importlinter.contracts]]
            name = "no circles"
            type = "acyclic_siblings"
            ancestors = ["tiny"]
            """
        )
    )
    result = _lint(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "layers BROKEN" in result.stdout and "no circles BROKEN" in result.stdout
    assert "tiny.low.a -> tiny.high.c" in result.stdout
