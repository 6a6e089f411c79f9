"""NVIDIA network pickles: stylegan2-ada-pytorch / stylegan3-repo (persistence records) and the original
TensorFlow StyleGAN2 (dnnlib.tflib Network records). Both are read by the restricted unpickler; the
module source they carry is never executed. Layouts learned from NVlabs' public repositories.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import CheckpointError
from pipeline.prior.ops import setup_filter
from pipeline.prior.safe_pickle import PersistentRecord, TFNetworkRecord
from pipeline.prior.state import OFFICIAL_FILTER, generator_from_state
from pipeline.prior.stylegan2 import Generator

# ----------------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch / stylegan3 repository pickles


def _flatten(
    rec: PersistentRecord,
    prefix: str,
    path: Path,
    tensors: dict[str, torch.Tensor],
    records: dict[str, PersistentRecord],
) -> None:
    """Collect parameters and persistent buffers of a persistence record tree under their module names."""
    records[prefix.rstrip(".")] = rec
    state = rec.state
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(path, f"{prefix}{name} is not a tensor")
            tensors[prefix + name] = t
    for name, sub in (state.get("_modules") or {}).items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentRecord):
            raise CheckpointError(
                path, f"module {prefix}{name} is not a persistent record ({type(sub).__name__})"
            )
        _flatten(sub, f"{prefix}{name}.", path, tensors, records)


def generator_from_torch_pickle(data: Any, path: Path) -> Generator:
    """`data` is the unpickled dict {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}."""
    if not isinstance(data, dict) or "G_ema" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(path, f"a pickle, but not an NVIDIA network pickle with G_ema (has {keys})")
    root = data["G_ema"]
    if not isinstance(root, PersistentRecord):
        raise CheckpointError(path, "G_ema is not a persistent network record")
    tensors: dict[str, torch.Tensor] = {}
    records: dict[str, PersistentRecord] = {}
    _flatten(root, "", path, tensors, records)

    if "synthesis.input" in records or any(r.class_name == "SynthesisInput" for r in records.values()):
        raise CheckpointError(path, "a StyleGAN3 (alias-free) generator: not supported yet, only StyleGAN2")
    if "mapping.embed" in records:
        raise CheckpointError(path, "a conditional (class-label) generator: not supported")
    conv_clamp = None
    for name, rec in records.items():
        st = rec.state
        if rec.class_name == "SynthesisBlock" and st.get("architecture", "skip") != "skip":
            raise CheckpointError(
                path, f"{name}: architecture {st.get('architecture')!r} (only 'skip' is supported)"
            )
        if rec.class_name in ("SynthesisLayer", "FullyConnectedLayer") and st.get(
            "activation", "lrelu"
        ) not in (
            "lrelu",
            "linear",
        ):
            raise CheckpointError(path, f"{name}: activation {st.get('activation')!r} is not supported")
        if rec.class_name in ("SynthesisLayer", "ToRGBLayer") and st.get("conv_clamp") is not None:
            conv_clamp = float(st["conv_clamp"])
    fc0 = records.get("mapping.fc0")
    lr = float(fc0.state.get("bias_gain", 0.01)) if fc0 is not None else 0.01

    # resample filters are buffers in the official modules; ours are fixed by the config.
    official = setup_filter(OFFICIAL_FILTER)
    for name in [k for k in tensors if k.endswith("resample_filter")]:
        f = tensors.pop(name)
        if tuple(f.shape) != (4, 4) or not torch.allclose(f.float(), official, atol=1e-6):
            raise CheckpointError(path, f"{name}: only the [1, 3, 3, 1] resample filter is supported")
    G = generator_from_state(tensors, path, mapping_lr_multiplier=lr, conv_clamp=conv_clamp)
    num_ws = records[""].state.get("num_ws")
    if num_ws is not None and int(num_ws) != G.num_ws:
        raise CheckpointError(path, f"the pickle says {num_ws} ws, the layers imply {G.num_ws}")
    return G


# ----------------------------------------------------------------------------------------------------
# TensorFlow StyleGAN2 pickles: (G, D, Gs) tuples of dnnlib.tflib Network records


def _tf_variables(net: TFNetworkRecord, prefix: str, out: dict[str, np.ndarray], path: Path) -> None:
    for name, value in net.state.get("variables") or []:
        out[prefix + str(name)] = np.asarray(value)
    for cname, comp in (net.state.get("components") or {}).items():
        if not isinstance(comp, TFNetworkRecord):
            raise CheckpointError(path, f"component {cname} is not a network record")
        _tf_variables(comp, f"{prefix}{cname}/", out, path)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def generator_from_tf_pickle(data: Any, path: Path) -> Generator:
    """`data` is the unpickled (G, D, Gs) tuple (or a lone Network); Gs, the moving average, is used."""
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetworkRecord) for n in data):
        net = data[2]
    elif isinstance(data, TFNetworkRecord):
        net = data
    else:
        raise CheckpointError(path, "not a TensorFlow StyleGAN2 pickle (expected (G, D, Gs) networks)")
    version = net.state.get("version")
    if version not in (3, 4):
        raise CheckpointError(path, f"TF network pickle version {version} is not supported (need 3 or 4)")
    kw = dict(net.state.get("static_kwargs") or {})
    synth = (net.state.get("components") or {}).get("synthesis")
    synth_kw = dict(synth.state.get("static_kwargs") or {}) if isinstance(synth, TFNetworkRecord) else {}
    if kw.get("label_size", 0):
        raise CheckpointError(path, "a conditional (class-label) generator: not supported")
    for key, want in (("architecture", "skip"), ("nonlinearity", "lrelu")):
        got = kw.get(key, synth_kw.get(key, want))
        if got != want:
            raise CheckpointError(path, f"{key} {got!r} is not supported (only {want!r})")
    kernel = kw.get("resample_kernel") or synth_kw.get("resample_kernel") or [1, 3, 3, 1]
    if [float(k) for k in kernel] != list(OFFICIAL_FILTER):
        raise CheckpointError(path, f"resample kernel {kernel} is not supported (only [1, 3, 3, 1])")
    lr = float(kw.get("mapping_lrmul", 0.01))

    v: dict[str, np.ndarray] = {}
    _tf_variables(net, "", v, path)
    if (
        not any(re.fullmatch(r"synthesis/\d+x\d+/Conv0_up/weight", k) for k in v)
        and "synthesis/4x4/Conv/weight" not in v
    ):
        fn = synth.state.get("build_func_name") if isinstance(synth, TFNetworkRecord) else None
        raise CheckpointError(path, f"not a StyleGAN2 synthesis network (build function {fn!r})")
    sd: dict[str, torch.Tensor] = {}
    try:
        sd["mapping.w_avg"] = _t(v["dlatent_avg"])
        i = 0
        while f"mapping/Dense{i}/weight" in v:
            sd[f"mapping.fc{i}.weight"] = _t(v[f"mapping/Dense{i}/weight"].T)  # [in, out] -> [out, in]
            sd[f"mapping.fc{i}.bias"] = _t(v[f"mapping/Dense{i}/bias"])
            i += 1
        sd["synthesis.b4.const"] = _t(v["synthesis/4x4/Const/const"][0])
        res = 4
        while f"synthesis/{res}x{res}/ToRGB/weight" in v:
            layers = (
                [("conv1", "Conv", 0)] if res == 4 else [("conv0", "Conv0_up", -1), ("conv1", "Conv1", 0)]
            )
            for ours, theirs, noise_off in layers:
                p, q = f"synthesis.b{res}.{ours}.", f"synthesis/{res}x{res}/{theirs}/"
                w = v[q + "weight"]  # [kh, kw, in, out]
                if ours == "conv0":
                    # TF's up-sampling conv flips the kernel inside its transposed convolution.
                    w = w[::-1, ::-1]
                sd[p + "weight"] = _t(w.transpose(3, 2, 0, 1))
                sd[p + "bias"] = _t(v[q + "bias"])
                sd[p + "noise_strength"] = _t(v[q + "noise_strength"]).reshape([])
                sd[p + "affine.weight"] = _t(v[q + "mod_weight"].T)
                sd[p + "affine.bias"] = _t(v[q + "mod_bias"] + 1.0)  # TF adds the 1 outside the bias
                noise_idx = 2 * (res.bit_length() - 1) - 4 + noise_off
                sd[p + "noise_const"] = _t(v[f"synthesis/noise{noise_idx}"][0, 0])
            p, q = f"synthesis.b{res}.torgb.", f"synthesis/{res}x{res}/ToRGB/"
            sd[p + "weight"] = _t(v[q + "weight"].transpose(3, 2, 0, 1))
            sd[p + "bias"] = _t(v[q + "bias"])
            sd[p + "affine.weight"] = _t(v[q + "mod_weight"].T)
            sd[p + "affine.bias"] = _t(v[q + "mod_bias"] + 1.0)
            res *= 2
    except KeyError as exc:
        raise CheckpointError(path, f"TF variable {exc.args[0]} is missing") from None
    except (ValueError, IndexError) as exc:
        raise CheckpointError(path, f"TF variables of an unexpected shape: {exc}") from None
    G = generator_from_state(sd, path, mapping_lr_multiplier=lr)
    declared = kw.get("resolution")
    if declared is not None and int(declared) != G.img_resolution:
        raise CheckpointError(path, f"declares resolution {declared} but has layers up to {G.img_resolution}")
    return G
