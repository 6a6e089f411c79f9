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


def _is_op(name: str) -> bool:
    return name.startswith(("aten::", "autograd::", "torch::autograd")) or name.endswith("Backward0")


@dataclass(frozen=True)
class Event:
    """One traced interval: the fields of torch's raw (kineto) events this summary reads."""

    name: str
    start_ns: int
    duration_ns: int
    thread: int
    on_device: bool  # a kernel or copy on the accelerator (not a host range)


def raw_events(prof: torch.profiler.profile) -> list[Event]:
    """The profiler's raw events, without building torch's FunctionEvent tree (slow: ~0.2 ms per event)."""
    out = []
    for e in prof.profiler.kineto_results.events():  # type: ignore[union-attr]
        dev = e.device_type()
        out.append(
            Event(
                e.name(),
                e.start_ns(),
                e.duration_ns(),
                e.start_thread_id(),
                dev != torch.autograd.DeviceType.CPU,
            )
        )
    return out


def summarise(events: list[Event], wall_s: float) -> TraceSummary:
    """Sum raw events into a TraceSummary; nesting is recovered per thread from the intervals."""
    op_ns = step_op_ns = step_ns = kernel_ns = 0
    syncs = step_syncs = device_syncs = steps = step_ops = 0
    host = sorted(
        (e for e in events if not e.on_device), key=lambda e: (e.thread, e.start_ns, -e.duration_ns)
    )
    kernel_ns = sum(e.duration_ns for e in events if e.on_device)
    # open intervals of the current thread: (end_ns, an op is open, a step is open)
    stack: list[tuple[int, bool, bool]] = []
    thread = None
    for e in host:
        if e.thread != thread:
            stack, thread = [], e.thread
        while stack and stack[-1][0] <= e.start_ns:
            stack.pop()
        under_op, in_step = stack[-1][1:] if stack else (False, False)
        is_op = _is_op(e.name)
        if e.name == STEP_RANGE:
            steps += 1
            step_ns += e.duration_ns
        elif e.name in _DEVICE_SYNC:
            device_syncs += 1
        elif e.name in _SYNC_OPS:
            syncs += 1
            step_syncs += in_step
        if is_op and not under_op:
            op_ns += e.duration_ns
            if in_step:
                step_op_ns += e.duration_ns
                step_ops += 1
        stack.append((e.start_ns + e.duration_ns, under_op or is_op, in_step or e.name == STEP_RANGE))
    return TraceSummary(
        wall_s=wall_s,
        op_s=op_ns / 1e9,
        kernel_s=kernel_ns / 1e9,
        syncs=syncs,
        device_syncs=device_syncs,
        steps=steps,
        step_s=step_ns / 1e9,
        step_op_s=step_op_ns / 1e9,
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
    return out, summarise(raw_events(prof), wall)
