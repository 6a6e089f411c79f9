"""What the footage is decides two things before a run starts: inverse telecine and the face prior.

- `io.inverse_telecine: auto` is measured (pipeline.io.cadence): only a telecine cadence turns it on.
- Drawn faces: the face prior is photographic, and on a drawn face it paints a photograph. With
  `film.content: drawn` the run restores faces only with `film.drawn_face_prior` (a prior trained on
  drawn faces); without one, no face is searched and the frame is upscaled as a whole.

`resolve(config, input)` returns the config the run uses and a JSON-able note for the report; it
also checks the film settings and that a learned upscaler (`upscale.model`) loads, before any work.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.film.clean import check_config
from pipeline.frame.sr import load_descriptor
from pipeline.io.cadence import resolve_inverse_telecine

log = logging.getLogger(__name__)


def face_prior(config: Config) -> str | None:
    """The face prior a run may use: `prior.model` for photographed content, for drawn content only
    `film.drawn_face_prior` (None: faces are not restored)."""
    if config.film.content == "drawn":
        return config.film.drawn_face_prior
    return config.prior.model


def resolve(config: Config, input: str | Path) -> tuple[Config, dict[str, Any]]:
    """(the config with inverse telecine decided and the face prior chosen, what was decided and why)."""

    check_config(config)
    u = config.upscale
    if u.tile < 0 or u.tile_overlap < 0 or (u.tile and u.tile_overlap >= u.tile):
        raise ConfigError(f"upscale.tile={u.tile}, tile_overlap={u.tile_overlap}: need 0 <= overlap < tile")
    if u.batch < 1:
        raise ConfigError(f"upscale.batch={u.batch}: need at least 1 frame per forward pass")
    if not 0.0 <= u.tile_memory <= 0.9:
        raise ConfigError(f"upscale.tile_memory={u.tile_memory}: need a fraction of free memory in [0, 0.9]")
    if u.model:  # a learned upscaler that cannot be loaded fails now, not when the first part is composed
        load_descriptor(Path(u.model).expanduser())
    asked = config.io.inverse_telecine
    config, cadence = resolve_inverse_telecine(config, input)
    note: dict[str, Any] = {"inverse_telecine": {"asked": asked, "on": config.io.inverse_telecine}}
    if cadence is not None:
        note["inverse_telecine"].update(
            verdict=cadence.verdict, moving_frames=cadence.moving, repeated_field_frames=cadence.repeated
        )
    model = face_prior(config)
    if model != config.prior.model:
        log.info(
            "drawn content: the photographic face prior %s is not run on drawn faces%s",
            config.prior.model,
            f"; faces use the drawn-face prior {model}"
            if model
            else " (set film.drawn_face_prior to restore them)",
        )
        note["face_prior"] = {"asked": config.prior.model, "used": model, "reason": "film.content=drawn"}
        config = replace(config, prior=replace(config.prior, model=model))
    return config, note
