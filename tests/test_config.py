"""The configuration contract: defaults, YAML presets and --set only override; bad keys are errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import (
    CONFIG_DIR,
    Config,
    apply_overrides,
    dump_config,
    load_config,
    parse_set_option,
)
from pipeline.errors import ConfigError


def test_defaults_are_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.upscale.scale = 3  # type: ignore[misc]


def test_set_option_overrides_one_field_and_keeps_the_rest() -> None:
    config = load_config(sets=["upscale.scale=4", "upscale.method=bicubic"])
    assert config.upscale.scale == 4
    assert config.upscale.method == "bicubic"
    assert config.search == Config().search


def test_unknown_key_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="scael"):
        load_config(sets=["upscale.scael=4"])
    with pytest.raises(ConfigError, match="nosuchsection"):
        apply_overrides(Config(), {"nosuchsection": {"a": 1}})


def test_wrong_type_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"upscale\.scale"):
        load_config(sets=["upscale.scale=big"])
    with pytest.raises(ConfigError, match=r"upscale\.scale"):
        load_config(sets=["upscale.scale=true"])


def test_optional_fields_accept_null() -> None:
    config = load_config(sets=["prior.model=tiny.safetensors"])
    assert config.prior.model == "tiny.safetensors"
    assert load_config(sets=["prior.model=null"]).prior.model is None


def test_preset_file_applies_and_names_itself_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("upscale:\n  scale: 3\n")
    assert load_config([str(good)]).upscale.scale == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("upscale:\n  bogus: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*bogus"):
        load_config([str(bad)])


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(["definitely-not-a-preset"])


def test_bad_set_syntax() -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_set_option("upscale.scale")


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "models"))
def test_every_shipped_preset_loads(preset: str) -> None:
    """Presets only override known keys: a renamed field breaks this test, not a user's run."""
    load_config([preset])


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config(sets=["upscale.scale=4", "search.lr=0.1"])
    out = tmp_path / "resolved.yaml"
    dump_config(config, out)
    again = apply_overrides(Config(), yaml.safe_load(out.read_text()))
    assert again == config
