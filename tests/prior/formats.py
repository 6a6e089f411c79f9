"""Writers that put a generator's weights into each third-party on-disk structure, for the loader tests.

They build the files the way the original programs do, without any NVIDIA or rosinality code: the
NVIDIA pickles are produced by objects whose reduce records name the same globals NVIDIA's code does
(`torch_utils.persistence._reconstruct_persistent_obj`, `dnnlib.tflib.network.Network`,
`dnnlib.util.EasyDict`); stub modules exist in sys.modules only while pickling, because pickle checks
that a named global is importable when it writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.prior.ops import setup_filter
from pipeline.prior.stylegan2 import Generator

MALICIOUS_SRC = "import os\nos.system('touch {marker}')\nclass Generator:\n    pass\n"


@contextlib.contextmanager
def _stub_modules() -> Iterator[dict[str, types.ModuleType]]:
    names = [
        "torch_utils",
        "torch_utils.persistence",
        "dnnlib",
        "dnnlib.util",
        "dnnlib.tflib",
        "dnnlib.tflib.network",
    ]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}

    def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:  # never called: we only pickle
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]

    class EasyDict(dict):  # type: ignore[type-arg]
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    mods["dnnlib.util"].EasyDict = EasyDict  # type: ignore[attr-defined]

    class Network:
        def __init__(self, state: dict[str, Any]) -> None:
            self._state = state

        def __getstate__(self) -> dict[str, Any]:
            return self._state

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"
    mods["dnnlib.tflib.network"].Network = Network  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        yield mods
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


# ----------------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch pickles


class _Persistent:
    """Pickles exactly like a persistence-decorated module: REDUCE(_reconstruct_persistent_obj, (meta,))."""

    def __init__(self, class_name: str, state: dict[str, Any], module_src: str) -> None:
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self) -> tuple[Any, ...]:
        fn = sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj
        return (fn, (self.meta,))


def _module_state(
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    modules: dict[str, Any],
    init_kwargs: dict[str, Any],
    **attrs: Any,
) -> dict[str, Any]:
    """A torch.nn.Module.__dict__ as NVIDIA's pickles carry it."""
    state: dict[str, Any] = {
        "training": False,
        "_parameters": OrderedDict(
            (k, torch.nn.Parameter(v.clone(), requires_grad=False)) for k, v in params.items()
        ),
        "_buffers": OrderedDict((k, v.clone()) for k, v in buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": OrderedDict(modules),
        "_init_args": (),
        "_init_kwargs": init_kwargs,
    }
    state.update(attrs)
    return state


def _ada_generator(G: Generator, src: str, conv_clamp: float | None) -> _Persistent:
    sd = {k: v.float() for k, v in G.state_dict().items()}
    cfg = G.cfg
    filt = setup_filter(cfg.resample_filter)

    def fc(prefix: str, in_f: int, out_f: int, lr: float, act: str, bias_init: float) -> _Persistent:
        return _Persistent(
            "FullyConnectedLayer",
            _module_state(
                {"weight": sd[prefix + "weight"], "bias": sd[prefix + "bias"]},
                {},
                {},
                dict(
                    in_features=in_f,
                    out_features=out_f,
                    activation=act,
                    lr_multiplier=lr,
                    bias_init=bias_init,
                ),
                activation=act,
                weight_gain=lr / np.sqrt(in_f),
                bias_gain=lr,
            ),
            src,
        )

    dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
    fcs = {
        f"fc{i}": fc(f"mapping.fc{i}.", dims[i], dims[i + 1], cfg.mapping_lr_multiplier, "lrelu", 0.0)
        for i in range(cfg.mapping_layers)
    }
    mapping = _Persistent(
        "MappingNetwork",
        _module_state(
            {},
            {"w_avg": sd["mapping.w_avg"]},
            fcs,
            dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, num_ws=cfg.num_ws, num_layers=cfg.mapping_layers),
            z_dim=cfg.z_dim,
            c_dim=0,
            w_dim=cfg.w_dim,
            num_ws=cfg.num_ws,
            num_layers=cfg.mapping_layers,
            w_avg_beta=0.995,
        ),
        src,
    )
    blocks = {}
    for res in cfg.block_resolutions:
        p = f"synthesis.b{res}."
        mods: dict[str, Any] = {}
        for name in ["conv1"] if res == 4 else ["conv0", "conv1"]:
            q = p + name + "."
            w = sd[q + "weight"]
            mods[name] = _Persistent(
                "SynthesisLayer",
                _module_state(
                    {"weight": w, "bias": sd[q + "bias"], "noise_strength": sd[q + "noise_strength"]},
                    {"resample_filter": filt, "noise_const": sd[q + "noise_const"]},
                    {"affine": fc(q + "affine.", cfg.w_dim, w.shape[1], 1.0, "linear", 1.0)},
                    dict(
                        in_channels=w.shape[1],
                        out_channels=w.shape[0],
                        w_dim=cfg.w_dim,
                        resolution=res,
                        up=2 if name == "conv0" else 1,
                        conv_clamp=conv_clamp,
                    ),
                    resolution=res,
                    up=2 if name == "conv0" else 1,
                    use_noise=True,
                    activation="lrelu",
                    conv_clamp=conv_clamp,
                    padding=1,
                    act_gain=np.sqrt(2),
                ),
                src,
            )
        q = p + "torgb."
        w = sd[q + "weight"]
        mods["torgb"] = _Persistent(
            "ToRGBLayer",
            _module_state(
                {"weight": w, "bias": sd[q + "bias"]},
                {},
                {"affine": fc(q + "affine.", cfg.w_dim, w.shape[1], 1.0, "linear", 1.0)},
                dict(in_channels=w.shape[1], out_channels=w.shape[0], w_dim=cfg.w_dim),
                conv_clamp=conv_clamp,
                weight_gain=1 / np.sqrt(w.shape[1]),
            ),
            src,
        )
        params = {"const": sd[p + "const"]} if res == 4 else {}
        blocks[f"b{res}"] = _Persistent(
            "SynthesisBlock",
            _module_state(
                params,
                {"resample_filter": filt},
                mods,
                dict(resolution=res, is_last=res == cfg.resolution),
                resolution=res,
                architecture="skip",
                num_conv=1 if res == 4 else 2,
                num_torgb=1,
            ),
            src,
        )
    synthesis = _Persistent(
        "SynthesisNetwork",
        _module_state(
            {},
            {},
            blocks,
            dict(
                w_dim=cfg.w_dim,
                img_resolution=cfg.resolution,
                img_channels=cfg.img_channels,
                channel_base=cfg.channel_base,
                channel_max=cfg.channel_max,
                num_fp16_res=4,
                conv_clamp=conv_clamp,
            ),
            w_dim=cfg.w_dim,
            img_resolution=cfg.resolution,
            block_resolutions=cfg.block_resolutions,
            num_ws=cfg.num_ws,
        ),
        src,
    )
    return _Persistent(
        "Generator",
        _module_state(
            {},
            {},
            {"mapping": mapping, "synthesis": synthesis},
            dict(
                z_dim=cfg.z_dim,
                c_dim=0,
                w_dim=cfg.w_dim,
                img_resolution=cfg.resolution,
                img_channels=cfg.img_channels,
            ),
            z_dim=cfg.z_dim,
            c_dim=0,
            w_dim=cfg.w_dim,
            img_resolution=cfg.resolution,
            img_channels=cfg.img_channels,
            num_ws=cfg.num_ws,
        ),
        src,
    )


def write_nvidia_pt(
    G: Generator,
    path: Path,
    *,
    module_src: str = "class Generator: pass\n",
    conv_clamp: float | None = None,
    sg3_input: bool = False,
) -> None:
    """A network-snapshot-*.pkl: dict(G, D, G_ema, augment_pipe, training_set_kwargs), pickle protocol 3."""
    with _stub_modules() as mods:
        g_ema = _ada_generator(G, module_src, conv_clamp)
        if sg3_input:  # a StyleGAN3 synthesis network starts with a SynthesisInput module
            g_ema.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["input"] = _Persistent(
                "SynthesisInput", _module_state({"weight": torch.zeros(4, 2)}, {}, {}, {}), module_src
            )
        disc = _Persistent(
            "Discriminator", _module_state({"weight": torch.randn(3, 3)}, {}, {}, {}), module_src
        )
        pipe = _Persistent(
            "AugmentPipe", _module_state({}, {"p": torch.zeros([])}, {}, {}, xflip=1.0), module_src
        )
        easy = mods["dnnlib.util"].EasyDict
        data = dict(
            G=_ada_generator(G, module_src, conv_clamp),
            D=disc,
            G_ema=g_ema,
            augment_pipe=pipe,
            training_set_kwargs=easy(
                path="ffhq.zip", resolution=G.img_resolution, use_labels=False, xflip=True
            ),
        )
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=3)


# ----------------------------------------------------------------------------------------------------
# TensorFlow StyleGAN2 pickles


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().copy()


def write_nvidia_tf(G: Generator, path: Path) -> None:
    """stylegan2-ffhq-config-f.pkl layout: (G, D, Gs) Network records, variables as numpy arrays."""
    sd = G.state_dict()
    cfg = G.cfg
    mapping_vars = []
    for i in range(cfg.mapping_layers):
        mapping_vars += [
            (f"Dense{i}/weight", _np(sd[f"mapping.fc{i}.weight"]).T.copy()),
            (f"Dense{i}/bias", _np(sd[f"mapping.fc{i}.bias"])),
        ]
    synth_vars: list[tuple[str, np.ndarray]] = [("lod", np.float32(0.0) * np.ones([], np.float32))]
    noise_vars = []
    n = 0
    for res in cfg.block_resolutions:
        p = f"synthesis.b{res}."
        if res == 4:
            synth_vars.append(("4x4/Const/const", _np(sd[p + "const"])[None]))
        for ours, theirs in [("conv1", "Conv")] if res == 4 else [("conv0", "Conv0_up"), ("conv1", "Conv1")]:
            q, t = p + ours + ".", f"{res}x{res}/{theirs}/"
            w = _np(sd[q + "weight"]).transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> [kh, kw, I, O]
            if ours == "conv0":
                w = w[::-1, ::-1]
            synth_vars += [
                (t + "weight", w.copy()),
                (t + "mod_weight", _np(sd[q + "affine.weight"]).T.copy()),
                (t + "mod_bias", _np(sd[q + "affine.bias"]) - 1.0),
                (t + "noise_strength", _np(sd[q + "noise_strength"])),
                (t + "bias", _np(sd[q + "bias"])),
            ]
            noise_vars.append((f"noise{n}", _np(sd[q + "noise_const"])[None, None]))
            n += 1
        q, t = p + "torgb.", f"{res}x{res}/ToRGB/"
        synth_vars += [
            (t + "weight", _np(sd[q + "weight"]).transpose(2, 3, 1, 0).copy()),
            (t + "mod_weight", _np(sd[q + "affine.weight"]).T.copy()),
            (t + "mod_bias", _np(sd[q + "affine.bias"]) - 1.0),
            (t + "bias", _np(sd[q + "bias"])),
        ]
    with _stub_modules() as mods:
        Network = mods["dnnlib.tflib.network"].Network

        def net(
            name: str, func: str, kwargs: dict[str, Any], variables: list[Any], comps: dict[str, Any]
        ) -> Any:
            return Network(
                dict(
                    version=4,
                    name=name,
                    static_kwargs=kwargs,
                    components=comps,
                    build_module_src="import os\nos.system('false')\n",
                    build_func_name=func,
                    variables=variables,
                )
            )

        common = dict(
            num_channels=cfg.img_channels,
            resolution=cfg.resolution,
            fmap_base=cfg.channel_base // 2,
            fmap_max=cfg.channel_max,
            architecture="skip",
        )

        def generator(name: str) -> Any:
            mapping = net(
                "G_mapping",
                "G_mapping",
                dict(
                    latent_size=cfg.z_dim,
                    dlatent_size=cfg.w_dim,
                    mapping_layers=cfg.mapping_layers,
                    dlatent_broadcast=cfg.num_ws,
                ),
                mapping_vars,
                {},
            )
            synthesis = net(
                "G_synthesis",
                "G_synthesis_stylegan2",
                dict(common, dlatent_size=cfg.w_dim),
                noise_vars + synth_vars,
                {},
            )
            return net(
                name,
                "G_main",
                dict(
                    common,
                    latent_size=cfg.z_dim,
                    dlatent_size=cfg.w_dim,
                    mapping_layers=cfg.mapping_layers,
                    truncation_psi=0.5,
                ),
                [("dlatent_avg", _np(sd["mapping.w_avg"])), ("lod", np.zeros([], np.float32))],
                {"mapping": mapping, "synthesis": synthesis},
            )

        d = net("D", "D_stylegan2", dict(common), [("4x4/Dense0/weight", np.ones([4, 4], np.float32))], {})
        with open(path, "wb") as f:
            pickle.dump((generator("G"), d, generator("Gs")), f, protocol=4)


# ----------------------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch checkpoints


def rosinality_state(G: Generator) -> dict[str, torch.Tensor]:
    sd = G.state_dict()
    cfg = G.cfg
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    blur = setup_filter(cfg.resample_filter) * 4
    n = 0
    for j, res in enumerate(cfg.block_resolutions):
        p = f"synthesis.b{res}."
        convs = (
            [("conv1.", "conv1")]
            if res == 4
            else [(f"convs.{2 * j - 2}.", "conv0"), (f"convs.{2 * j - 1}.", "conv1")]
        )
        for theirs, ours in convs:
            q = p + ours + "."
            out[theirs + "conv.weight"] = sd[q + "weight"][None]
            out[theirs + "conv.modulation.weight"] = sd[q + "affine.weight"]
            out[theirs + "conv.modulation.bias"] = sd[q + "affine.bias"]
            if ours == "conv0":
                out[theirs + "conv.blur.kernel"] = blur
            out[theirs + "noise.weight"] = sd[q + "noise_strength"].reshape(1)
            out[theirs + "activate.bias"] = sd[q + "bias"]
            out[f"noises.noise_{n}"] = sd[q + "noise_const"][None, None]
            n += 1
        theirs = "to_rgb1." if res == 4 else f"to_rgbs.{j - 1}."
        q = p + "torgb."
        out[theirs + "conv.weight"] = sd[q + "weight"][None]
        out[theirs + "conv.modulation.weight"] = sd[q + "affine.weight"]
        out[theirs + "conv.modulation.bias"] = sd[q + "affine.bias"]
        out[theirs + "bias"] = sd[q + "bias"].reshape(1, -1, 1, 1)
        if res > 4:
            out[theirs + "upsample.kernel"] = blur
    return {k: v.clone() for k, v in out.items()}


def write_rosinality(G: Generator, path: Path, *, latent_avg: bool = True) -> None:
    """train.py's checkpoint: g, d, g_ema, optimiser states, args (an argparse Namespace)."""
    g = rosinality_state(G)
    ckpt: dict[str, Any] = {
        "g": g,
        "d": {"convs.0.0.weight": torch.randn(4, 3, 1, 1)},
        "g_ema": rosinality_state(G),
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0, 1]}]},
        "d_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0]}]},
        "args": argparse.Namespace(size=G.img_resolution, latent=G.w_dim, n_mlp=G.cfg.mapping_layers),
    }
    if latent_avg:
        ckpt["latent_avg"] = G.w_avg.clone()
    torch.save(ckpt, path)
