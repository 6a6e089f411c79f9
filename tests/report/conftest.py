"""The report tests restore the same small face clip with the same tiny generator as tests/run."""

from tests.run.conftest import face_video, tiny_model

__all__ = ["face_video", "tiny_model"]
