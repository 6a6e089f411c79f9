"""Where a search's time goes: torch ops vs Python on the host, kernels on the device, and host syncs.

`profile_call` runs a function under torch.profiler and sums the trace into a `TraceSummary`. The search
loop marks each optimiser iteration with a `search.step` range (see `STEP_RANGE`), so per-step figures
count only the loop, not the set-up and the final renders around it.

A host synchronisation is counted where the code asks for a tensor's value on the host: `.item()`,
`bool(t)`, `int(t)` (all `aten::_local_scalar_dense`) and `nonzero` (boolean-mask indexing, `.nonzero()`,
whose output shape depends on the data). On a CPU these cost nothing extra, but they are exactly the
calls that stall a GPU stream, so the count measured on a CPU is the count a GPU run pays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.autograd.profiler_util import FunctionEvent

STEP_RANGE = "search.step"  # record_function label of one optimiser iteration
_SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero")
_DEVICE_SYNC = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")

T = TypeVar("T")


@dataclass(frozen=True)
class TraceSummary:
    """Totals of one profiled call (seconds unless named otherwise)."""

    wall_s: float  # the call's wall time (device synchronised at both ends)
    op_s: float  # host time inside top-level torch ops (their children included)
    kernel_s: float  # device time in kernels (0 on a CPU: there the ops are the kernels)
    syncs: int  # host syncs the code asked for (see the module docstring), whole call
    device_syncs: int  # CUDA runtime synchronisations seen in the trace (0 on a CPU)
    steps: int  # optimiser iterations (STEP_RANGE ranges)
    step_s: float  # wall time inside the iterations (host clock)
    step_op_s: float  # host time in top-level torch ops inside the iterations
    step_syncs: int  # host syncs inside the iterations
    step_ops: int  # top-level torch ops dispatched inside the iterations (each one a kernel launch or more)

    @property
    def host_overhead_s(self) -> float:
        """Wall time outside any torch op: Python, dispatch gaps and waiting."""
        return max(0.0, self.wall_s - self.op_s)

    @property
    def step_python_ms(self) -> float:
        """Per iteration: host time outside torch ops (Python between the ops), ms."""
        return 1000 * max(0.0, self.step_s - self.step_op_s) / max(1, self.steps)

    @property
    def step_ms(self) -> float:
        return 1000 * self.step_s / max(1, self.steps)

    @property
    def kernel_fraction(self) -> float:
        """Fraction of the wall time the device spends in kernels (on a CPU: in torch ops)."""
        busy = self.kernel_s if self.kernel_s > 0 else self.op_s
        return busy / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.steps} iterations, {self.step_ms:.2f} ms each ({self.step_python_ms:.2f} ms Python "
            f"between ops); {self.step_ops / max(1, self.steps):.0f} ops and "
            f"{self.step_syncs / max(1, self.steps):.2f} syncs per iteration, {self.syncs} syncs "
            f"in all ({self.device_syncs} CUDA); time in kernels {100 * self.kernel_fraction:.0f}%"
        )


def _is_op(e: FunctionEvent) -> bool:
    return e.name.startswith(("aten::", "autograd::", "torch::autograd")) or e.name.endswith("Backward0")


def _inside(e: FunctionEvent, name: str) -> bool:
    p = e.cpu_parent
    while p is not None:
        if p.name == name:
            return True
        p = p.cpu_parent
    return False


def _top_level_op(e: FunctionEvent) -> bool:
    if not _is_op(e):
        return False
    p = e.cpu_parent
    while p is not None:
        if _is_op(p):
            return False
        p = p.cpu_parent
    return True


def summarise(events: list[FunctionEvent], wall_s: float) -> TraceSummary:
    """Sum a profiler's events (prof.events()) into a TraceSummary."""
    op_us = step_op_us = step_us = kernel_us = 0.0
    syncs = step_syncs = device_syncs = steps = step_ops = 0
    for e in events:
        kernel_us += float(getattr(e, "self_device_time_total", 0.0) or 0.0)
        if e.name == STEP_RANGE:
            steps += 1
            step_us += e.cpu_time_total
            continue
        if e.name in _DEVICE_SYNC:
            device_syncs += 1
        in_step = _inside(e, STEP_RANGE)
        if e.name in _SYNC_OPS:
            syncs += 1
            step_syncs += in_step
        if _top_level_op(e):
            op_us += e.cpu_time_total
            if in_step:
                step_op_us += e.cpu_time_total
                step_ops += 1
    return TraceSummary(
        wall_s=wall_s,
        op_s=op_us / 1e6,
        kernel_s=kernel_us / 1e6,
        syncs=syncs,
        device_syncs=device_syncs,
        steps=steps,
        step_s=step_us / 1e6,
        step_op_s=step_op_us / 1e6,
        step_syncs=step_syncs,
        step_ops=step_ops,
    )


def profile_call(fn: Callable[[], T], device: torch.device) -> tuple[T, TraceSummary]:
    """Run fn() once under torch.profiler (CPU, and CUDA kernels on a CUDA device); returns its result."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with torch.profiler.profile(activities=activities) as prof:
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
    return out, summarise(list(prof.events()), wall)
