"""Every checkpoint format loads to its source weights' images; unsafe or broken files are refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from pipeline.errors import CheckpointError, UnsafeCheckpointError
from pipeline.prior.cache_format import save_generator
from pipeline.prior.checkpoint import convert_checkpoint, load_checkpoint
from pipeline.prior.stylegan2 import Generator, make_random_generator
from tests.prior import formats


@pytest.fixture(scope="module")
def G() -> Generator:
    # not config-f: 32 px, z 48, w 40, 5 mapping layers, 24 channels halving above 8 px
    return make_random_generator(
        32, seed=7, z_dim=48, w_dim=40, mapping_layers=5, channel_base=192, channel_max=24
    )


@pytest.fixture(scope="module")
def probe(G: Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, G.z_dim, generator=gen)
    noise = [torch.randn(3, 1, h, w, generator=gen) for h, w in G.noise_shapes()]
    return z, noise


def _same_images(a: Generator, b: Generator, probe: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    z, noise = probe
    assert a.cfg == b.cfg
    torch.testing.assert_close(b.w_avg, a.w_avg)
    ws = a.mapping(z)
    torch.testing.assert_close(b.mapping(z), ws, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        b.synthesis(ws, noise=noise), a.synthesis(ws, noise=noise), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(b(z, truncation_psi=0.7), a(z, truncation_psi=0.7), rtol=1e-5, atol=1e-5)


WRITERS = {
    "rosinality": formats.write_rosinality,
    "nvidia-pt": formats.write_nvidia_pt,
    "nvidia-tf": formats.write_nvidia_tf,
    "reel": save_generator,
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_each_format_loads_to_the_same_images(G: Generator, probe, fmt: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / f"model.{fmt}"
    WRITERS[fmt](G, src)
    loaded, kind = load_checkpoint(src)
    assert kind == fmt
    _same_images(G, loaded, probe)
    # convert to our format: the same images again
    _, kind2 = convert_checkpoint(src, tmp_path / "model.safetensors")
    assert kind2 == fmt
    again, kind3 = load_checkpoint(tmp_path / "model.safetensors")
    assert kind3 == "reel"
    _same_images(G, again, probe)


def test_nvidia_pickle_conv_clamp_is_read(G: Generator, tmp_path: Path) -> None:
    formats.write_nvidia_pt(G, tmp_path / "c.pkl", conv_clamp=256.0)
    loaded, _ = load_checkpoint(tmp_path / "c.pkl")
    assert loaded.cfg.conv_clamp == 256.0


def test_rosinality_without_latent_avg_measures_it(G: Generator, tmp_path: Path) -> None:
    formats.write_rosinality(G, tmp_path / "r.pt", latent_avg=False)
    loaded, _ = load_checkpoint(tmp_path / "r.pt")
    # G's w_avg was measured from 4096 latents; the loader's from 10000 others: close, not equal
    assert float((loaded.w_avg - G.w_avg).norm()) < 0.1 * float(G.w_avg.norm())


def test_stylegan3_pickle_is_reported_as_unsupported(G: Generator, tmp_path: Path) -> None:
    formats.write_nvidia_pt(G, tmp_path / "sg3.pkl", sg3_input=True)
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        load_checkpoint(tmp_path / "sg3.pkl")


def test_embedded_source_code_is_never_executed(G: Generator, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    formats.write_nvidia_pt(G, tmp_path / "m.pkl", module_src=formats.MALICIOUS_SRC.format(marker=marker))
    loaded, _ = load_checkpoint(tmp_path / "m.pkl")
    assert loaded.img_resolution == 32
    assert not marker.exists()


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


class _ImportsModule:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import json

        return (json.loads, ("{}",))


@pytest.mark.parametrize("payload", ["shell", "module"])
def test_pickle_that_would_run_code_is_refused(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    evil = _RunsShell(marker) if payload == "shell" else _ImportsModule()
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": evil}, protocol=3))
    with pytest.raises(UnsafeCheckpointError, match="system" if payload == "shell" else "json.loads") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_rosinality_file_with_code_is_refused(G: Generator, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": formats.rosinality_state(G), "hook": _RunsShell(marker)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_embedded_tensor_bytes_with_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    inner = pickle.dumps(_RunsShell(marker), protocol=2)

    class _Storage:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            import torch.storage

            return (torch.storage._load_from_bytes, (inner,))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Storage()}, protocol=3))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_truncated_file_gives_a_clear_error(G: Generator, fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"t.{fmt}"
    WRITERS[fmt](G, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a known checkpoint format"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pkl")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    wrong = tmp_path / "list.pkl"
    wrong.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match=r"TensorFlow|G_ema"):
        load_checkpoint(wrong)


def test_convert_never_leaves_a_partial_output(G: Generator, tmp_path: Path) -> None:
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x03garbage")
    with pytest.raises(CheckpointError):
        convert_checkpoint(bad, out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
