"""torchvision's pure-Python parts, importable beside a CPU build of torch.

A torchvision wheel built for CUDA cannot load its compiled operators beside a CPU-only torch, and
its import then fails registering fake kernels for `torchvision::nms`/`qnms`. Defining those two
schemas lets everything that does not run them import: spandrel's super-resolution architectures
(pipeline.frame.sr) and onnx2torch's converters (pipeline.metrics.sface_torch) use none of them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.library

_LIBRARIES: list[torch.library.Library] = []  # the definitions live as long as their Library objects


def allow_torchvision_import() -> None:
    """Make `import torchvision` work (a no-op where it already does)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        import torch

        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            with contextlib.suppress(RuntimeError):  # already defined
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(lib)
