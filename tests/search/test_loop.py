"""The fixed-shape step loop: a face's result does not depend on its batch, how often the host checks for
stopped faces, or compaction; the loop synchronises with the host only at its checks."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.prior.stylegan2 import Generator
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.loss import downscale
from pipeline.search.profiling import profile_call
from pipeline.search.search import random_state, render, search
from pipeline.search.state import SearchResult, SearchState


@pytest.fixture
def on_device(
    tiny_G: Generator, tiny_space: GaussianizedW, device: str
) -> tuple[Generator, GaussianizedW, torch.device]:
    """The tiny generator and its space on the test device (REEL_TEST_DEVICE; a copy off the CPU)."""
    dev = torch.device(device)
    G = tiny_G if dev.type == "cpu" else copy.deepcopy(tiny_G).to(dev)
    return G, tiny_space.to(dev), dev


@pytest.fixture(scope="module")
def targets(tiny_G: Generator, tiny_space: GaussianizedW) -> tuple[torch.Tensor, torch.Tensor]:
    """Four 8-px targets of random faces, and the same moved a little (the next frame)."""
    with torch.no_grad():
        hr = render(tiny_G, tiny_space, random_state(tiny_G, [100, 101, 102, 103])).clamp(0, 1)
    tg = downscale(hr, (8, 8)).clamp(0, 1)
    return tg, (0.85 * tg + 0.15 * tg.roll(1, 0)).clamp(0, 1)


def test_a_face_alone_equals_the_same_face_in_a_batch_of_four(
    on_device: tuple[Generator, GaussianizedW, torch.device],
    fast_settings: SearchConfig,
    targets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    G, space, dev = on_device
    tg, moved = targets
    four = search(G, tg, settings=fast_settings, space=space, seeds=[5, 6, 7, 8], device=dev)
    alone = search(G, tg[2:3], settings=fast_settings, space=space, seeds=[7], device=dev)
    # faces of the batch stop at different steps, so the batch was compacted under this one
    assert len(set(four.steps.tolist())) > 1
    assert int(alone.steps[0]) == int(four.steps[2])
    assert float((alone.ws[0] - four.ws[2]).abs().max()) < 1e-4
    # the next frame, warm-started from each: still the same answer
    warm_four = search(G, moved, settings=fast_settings, space=space, prev=four.state, device=dev)
    warm_alone = search(G, moved[2:3], settings=fast_settings, space=space, prev=alone.state, device=dev)
    assert int(warm_alone.steps[0]) == int(warm_four.steps[2]) > 0
    assert float((warm_alone.ws[0] - warm_four.ws[2]).abs().max()) < 1e-4


def test_check_interval_and_compaction_change_nothing_but_rounding(
    on_device: tuple[Generator, GaussianizedW, torch.device],
    fast_settings: SearchConfig,
    targets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    G, space, dev = on_device
    tg, _ = targets
    settings = replace(fast_settings, truncate_factor=2.0)  # the truncated loss and its refreshes too

    def run(**kw: object) -> SearchResult:
        return search(G, tg, settings=replace(settings, **kw), space=space, device=dev)  # type: ignore[arg-type]

    every_step = run(stop_check_every=1, compact=False)
    every_fourth = run(stop_check_every=4, compact=False)
    # stopped faces are masked, not removed: the same computation, bit for bit
    assert torch.equal(every_step.ws, every_fourth.ws) and torch.equal(every_step.steps, every_fourth.steps)
    compacted = run(stop_check_every=3)
    assert torch.equal(compacted.steps, every_step.steps)
    assert float((compacted.ws - every_step.ws).abs().max()) < 1e-4


def test_the_loop_syncs_only_at_its_checks(
    tiny_G: Generator,
    tiny_space: GaussianizedW,
    fast_settings: SearchConfig,
    targets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    tg, _ = targets
    # a short budget: the profiler's own bookkeeping is slow on a CPU
    settings = replace(fast_settings, steps=16, stop_check_every=4, truncate_factor=2.0, compact=False)
    _, trace = profile_call(
        lambda: search(tiny_G, tg[:2], settings=settings, space=tiny_space), torch.device("cpu")
    )
    assert trace.steps > 8 and trace.step_ops > 0
    # one check (a sum read on the host) every 4 iterations and at the end of each of the two loops
    # (the truncated search, then the full-size refinement of faces that missed the bound there)
    assert trace.step_syncs <= trace.steps // 4 + 2, trace
    # compaction reads which faces go on: a few syncs per halving of the batch, not per iteration
    _, compacting = profile_call(
        lambda: search(tiny_G, tg[:2], settings=replace(settings, compact=True), space=tiny_space),
        torch.device("cpu"),
    )
    assert compacting.step_syncs <= compacting.steps // 4 + 2 + 2 * 3, compacting


def test_bad_loop_settings_raise(
    tiny_G: Generator,
    tiny_space: GaussianizedW,
    fast_settings: SearchConfig,
    targets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    with pytest.raises(SearchError, match="compile"):
        search(tiny_G, targets[0], settings=replace(fast_settings, compile="fast"), space=tiny_space)


@pytest.mark.slow
def test_compiled_step_gives_the_eager_answer(
    tiny_G: Generator,
    tiny_space: GaussianizedW,
    fast_settings: SearchConfig,
    targets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """torch.compile over the step (minutes of compiling on a CPU; the GPU runs it in bench_search)."""
    tg, _ = targets
    settings = replace(fast_settings, steps=20, compile="default")
    compiled = search(tiny_G, tg, settings=settings, space=tiny_space, seeds=[1, 2, 3, 4])
    eager = search(
        tiny_G, tg, settings=replace(settings, compile="off"), space=tiny_space, seeds=[1, 2, 3, 4]
    )
    assert torch.equal(compiled.steps, eager.steps)
    # fused kernels sum in another order: float rounding, grown over 20 steps (measured 1.2e-3)
    assert float((compiled.ws - eager.ws).abs().max()) < 1e-2
    assert float((compiled.psnr - eager.psnr).abs().max()) < 0.05


def test_a_warm_start_reuses_the_previous_render(
    tiny_G: Generator,
    tiny_space: GaussianizedW,
    fast_settings: SearchConfig,
    targets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """The result's state carries its full render; the next frame's truncated loss starts from it."""
    tg, moved = targets
    settings = replace(fast_settings, truncate_factor=2.0)
    first = search(tiny_G, tg[1:3], settings=settings, space=tiny_space, seeds=[1, 2])
    assert first.state.image is not None and first.state.image.shape == (2, 3, 32, 32)
    assert first.state.detach().image is None  # never stored or sent
    full = [0]

    def count(_m: torch.nn.Module, _a: tuple, _kw: dict, img: torch.Tensor) -> None:
        full[0] += int(img.shape[0]) if img.shape[-1] == 32 else 0

    hook = tiny_G.synthesis.register_forward_hook(count, with_kwargs=True)
    try:
        carried = search(tiny_G, moved[1:3], settings=settings, space=tiny_space, prev=first.state)
        with_carry = full[0]
        full[0] = 0
        plain = SearchState(first.state.latents, first.state.noise)
        rendered = search(tiny_G, moved[1:3], settings=settings, space=tiny_space, prev=plain)
    finally:
        hook.remove()
    assert with_carry == full[0] - 2  # one full render per face saved
    assert torch.equal(carried.steps, rendered.steps)
    assert float((carried.ws - rendered.ws).abs().max()) < 1e-5
