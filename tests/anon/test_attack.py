"""The attack check: restore's own latent search run on an anonymised output must not bring the
person back (SFace cosine of the restored face to the original < 0.3).

The prior is the seeded 16-px test generator, not a face model, so the cosines only check the
machinery: the attack runs on real outputs of real photographs, its figure is recorded in the audit
and its page, and a deliberately leaky "anonymiser" (the input passed through unchanged) is caught.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.anon.attack import ATTACK_COSINE, attack_check
from pipeline.anon.evaluate import AnonClip, truth_targets
from pipeline.config import load_config
from tests.anon.test_anonymize import FAST


@pytest.fixture(scope="module")
def outputs(clip_video: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The clip anonymised with synthetic faces (the run's own attack on) and with masks only."""
    from pipeline.api import anonymize

    root = tmp_path_factory.mktemp("attack")
    config = load_config(["anonymize"], [*FAST, "anon.attack_faces=4"])
    synthetic = replace(config, prior=replace(config.prior, model=str(tiny_model)))
    return {
        "config": synthetic,
        "synthetic": anonymize(clip_video, root / "synthetic.mkv", synthetic),
        "masks": anonymize(clip_video, root / "masks.mkv", config),
    }


def test_the_audit_records_the_attack_on_its_own_output(outputs: dict[str, Any]) -> None:
    report = outputs["synthetic"]
    audit = json.loads(Path(report.audit_path).read_text())
    attack = audit["attack"]
    assert attack["face_frames"] == 4 and attack["threshold"] == ATTACK_COSINE
    assert -1.0 <= attack["max_cosine"] <= 1.0 and attack["random_test_generator"] is True
    assert attack["passed"] is (attack["max_cosine"] < ATTACK_COSINE)
    assert report.attack_max_cosine == attack["max_cosine"]
    html = Path(report.html_path).read_text()
    assert 'id="attack"' in html and f"{attack['max_cosine']:.3f}" in html
    assert "random test generator" in html
    masks = json.loads(Path(outputs["masks"].audit_path).read_text())["attack"]
    assert masks["max_cosine"] is None and "no face model" in masks["not_run"]  # said, not hidden


def test_a_leaky_anonymiser_is_caught_and_the_real_outputs_pass(
    clip: AnonClip, clip_video: Path, tiny_model: Path, outputs: dict[str, Any]
) -> None:
    from pipeline.run.search_steps import load_search_model

    cfg = outputs["config"]
    prior = load_search_model(str(tiny_model), "cpu", "float32", cfg.search.gaussian_samples)
    targets = truth_targets(clip)
    found = {
        name: attack_check(clip_video, path, targets, cfg, prior)
        for name, path in (
            ("passthrough", clip_video),  # nothing hidden: the attack must recognise the people
            ("synthetic", outputs["synthetic"].output),
            ("masks", outputs["masks"].output),
        )
    }
    assert all(f["face_frames"] == len(targets) for f in found.values())
    assert found["passthrough"]["passed"] is False
    assert found["passthrough"]["max_cosine"] >= ATTACK_COSINE + 0.05
    # hidden outputs score well below the leaky one; whether they pass the bound itself means
    # something only with a real face model (here: about 0.23 synthetic, 0.29 masks)
    for name in ("synthetic", "masks"):
        assert found[name]["passed"] is (found[name]["max_cosine"] < ATTACK_COSINE), name
        assert found[name]["max_cosine"] < found["passthrough"]["max_cosine"] - 0.1, name
