"""Film grain put back at output resolution (film.grain=regrain): matched to the grain measured in
the source (strength, and size scaled by the upscale factor), steady along time, on the faces as on
their surroundings, and the consistency promise still met on the output with its grain.

Every test runs on both paths (`path`): numpy (the CPU's default) and torch on each device of the
device fixture (CPU always, CUDA where present): the torch grain is drawn by another generator,
so its values differ, but every figure asserted here holds for both."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import cv2
import numpy as np
import pytest
import skimage.data

from pipeline.config import Config, FilmConfig
from pipeline.film import synthetic as S
from pipeline.film.clean import clean_frames
from pipeline.frame.compose import compose_frame
from pipeline.frame.grain import Regrain, pack, parse
from pipeline.frame.tensor_ops import as_tensor
from pipeline.frame.upscale import upscale
from pipeline.types import VideoFrame
from tests.conftest import _devices

H, W, N = 96, 128, 12
SIGMA, BLUR = 6.0, 0.8  # the film's grain: 6 levels, white noise blurred by 0.8 px


@pytest.fixture(scope="module", params=["numpy", *(f"torch:{d}" for d in _devices())])
def path(request: pytest.FixtureRequest) -> str:
    """Where the grain is laid: "numpy", or "torch:<device>"."""
    return str(request.param)


def _device(path: str) -> str:
    return path.split(":", 1)[1] if path.startswith("torch:") else "cpu"


def _regrain(path: str, seed: int = 0) -> Regrain:
    return Regrain(seed, on_device=path != "numpy")


def _layer(
    regrain: Regrain, path: str, image: np.ndarray, measure: np.ndarray | None, index: int, scale: float
) -> np.ndarray | None:
    """`Regrain.layer` of a float image on `path` (the torch layer brought to the host)."""
    if path == "numpy":
        return regrain.layer(image, measure, index, scale)
    layer = regrain.layer_tensor(as_tensor(image, _device(path)), measure, index, scale)
    return None if layer is None else layer.cpu().numpy()


def _apply(regrain: Regrain, path: str, image: np.ndarray, measure: np.ndarray, index: int) -> np.ndarray:
    """A frame ([H, W, 3] uint8) with its grain at x1, composed on `path` as compose writes it."""
    frame = VideoFrame(index=index, pts=index, time=Fraction(index, 25), image=image, grain=measure)
    cfg = Config(upscale=replace(Config().upscale, scale=1))
    return compose_frame(frame, None, [], False, cfg, regrain=regrain, device=_device(path))[0]


def _correlation(r: np.ndarray, lag: int) -> float:
    """Mean correlation of values `lag` pixels apart, horizontally and vertically."""
    r = r - r.mean()
    var = float((r * r).mean())
    return float(((r[:, lag:] * r[:, :-lag]).mean() + (r[lag:] * r[:-lag]).mean()) / (2 * var))


@pytest.fixture(scope="module")
def still() -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A still shot of a real photograph, (picture, real grain per frame, the grainy frames): the
    grain is fresh in every frame, as in film."""
    base = cv2.resize(skimage.data.astronaut(), (W, H), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(1)
    grains, frames = [], []
    for _ in range(N):
        g = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), BLUR)
        g *= SIGMA / g.std()
        frames.append(np.clip(base + g[..., None] + 0.5, 0, 255).astype(np.uint8))
        grains.append(frames[-1].astype(np.float32)[..., 1] - base[..., 1])  # as quantised, green
    return base, grains, frames


@pytest.fixture(scope="module")
def regrained(still: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]], path: str) -> list[np.ndarray]:
    """The output grain of the still shot cleaned with regrain and composed at x2 on `path` (output
    minus the clean picture upscaled), frames 2 .. N - 3 (full windows)."""
    base, _, frames = still
    cleaned = clean_frames(S.as_frames(frames), FilmConfig(grain="regrain"), start=0, end=N)
    regrain, truth = _regrain(path), upscale(base, 2).astype(np.float32)
    dev = _device(path)
    out = [compose_frame(f, None, [], False, Config(), regrain=regrain, device=dev)[0] for f in cleaned]
    assert out[0].shape == (2 * H, 2 * W, 3) and out[0].dtype == np.uint8
    return [(o.astype(np.float32) - truth)[..., 1] for o in out[2:-2]]


def test_output_grain_has_the_source_strength_and_its_size_scaled_by_the_upscale(
    still: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]], regrained: list[np.ndarray]
) -> None:
    source = still[1]
    src_std, out_std = float(np.std(source)), float(np.std(regrained))
    assert abs(out_std / src_std - 1) < 0.15  # measured here: 0.93
    src_rho1 = np.mean([_correlation(g, 1) for g in source])  # ~0.67 for a 0.8 px blur
    # x2: output pixels 2 apart correlate as neighbouring source pixels did (measured: 0.65 vs 0.67),
    # so the grain is as large in the picture; unscaled grain would correlate ~0.2 there.
    assert abs(np.mean([_correlation(g, 2) for g in regrained]) - src_rho1) < 0.08
    assert np.mean([_correlation(g, 1) for g in regrained]) > src_rho1 + 0.1


def test_output_grain_does_not_boil(
    still: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]], regrained: list[np.ndarray]
) -> None:
    """In a still shot, the grain's change from frame to frame (relative to its std) against real
    film grain's, which is fresh in every frame (sqrt(2)); still renewing, not frozen on the picture."""

    def change(grains: list[np.ndarray]) -> float:
        g = np.stack(grains)
        return float(np.std(np.diff(g, axis=0)) / np.std(g))

    real, ours = change(still[1]), change(regrained)
    assert real == pytest.approx(np.sqrt(2), rel=0.05)
    assert 0.4 * real < ours < 0.75 * real  # measured here: 0.91 / 1.41 = 0.65


def test_a_frame_grain_depends_only_on_its_index(path: str) -> None:
    """Segments composed apart equal the whole run (and a resumed run the first): frame 7's grain is
    the same whether the frames before it were composed by the same Regrain or not (monochrome and
    still; colour, moving); another seed, or another frame, is other grain."""
    pan = [np.array([[1.0, 0.0, 1.5], [0.0, 1.0, -0.5]]), np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -1.0]])]
    moving = pack(np.full(8, 0.02), 0.8, 0.3, np.array([1.2, 1.1, 1.3]), pan)
    picture = np.full((32, 48, 3), 128, np.uint8)
    for m in (np.array([0.02] * 8 + [0.8], np.float32), moving):
        whole = _regrain(path, 3)
        for i in range(7):
            _apply(whole, path, picture, m, i)
        seventh = _apply(whole, path, picture, m, 7)
        np.testing.assert_array_equal(seventh, _apply(_regrain(path, 3), path, picture, m, 7))
        assert int(np.abs(seventh.astype(int) - 128).max()) > 3  # grain was laid
        assert not np.array_equal(seventh, _apply(_regrain(path, 3), path, picture, m, 6))
    assert not np.array_equal(
        _apply(_regrain(path, 3), path, picture, moving, 7),
        _apply(_regrain(path, 4), path, picture, moving, 7),
    )


def _face_frame(sigma: float) -> tuple[VideoFrame, list[object], np.ndarray]:
    """A clean gray frame of a rendered face, its true high-res face as the restoration, a grain
    measurement of `sigma` levels, and the face's core in the output (paste mask 1)."""
    from pipeline.affine import rescale_affine
    from pipeline.faces.align import crop_to_frame_affine, native_size, warp_crop
    from pipeline.faces.synthetic import Placement, ShotSpec, render
    from pipeline.frame.compose import ComposeSettings, FacePlacement, footprint_alpha
    from pipeline.types import FaceRestoration

    shot = ShotSpec(1, (Placement(0, (260, 60), (260, 60), (1.3, 1.3)),), background_seed=5)
    clip = render([shot], size=(640, 360), factor=4, grain=0.0, gray=True)
    _, _, marks = clip.truth[0][0]
    size, res = native_size(marks), 128
    to_frame = crop_to_frame_affine(marks, size)
    face = warp_crop(clip.hr_frames[0], rescale_affine(to_frame, src_scale=res / size, dst_scale=4), res)
    r = FaceRestoration(0, 3, np.zeros((2, 4), np.float32), face.astype(np.float32) / 255, 30.0, True, 10)
    measure = np.array([sigma / 255] * 8 + [0.8], np.float32)
    frame = VideoFrame(index=3, pts=3, time=Fraction(3, 25), image=clip.frames[0], grain=measure)
    placed = footprint_alpha(
        rescale_affine(to_frame, src_scale=res / size, dst_scale=2), res, (180, 320), ComposeSettings()
    )
    assert placed is not None
    alpha = np.zeros((180, 320), np.float32)
    x0, y0, x1, y1 = placed.box
    alpha[y0:y1, x0:x1] = placed.alpha
    return frame, [FacePlacement(r, to_frame, size)], alpha


@pytest.mark.parametrize("sigma", [6.0, 14.0])
def test_faces_carry_the_grain_of_their_surroundings_and_still_meet_the_bound(
    sigma: float, path: str
) -> None:
    frame, placements, alpha = _face_frame(sigma)
    cfg, dev = Config(), _device(path)
    plain, _ = compose_frame(frame, None, placements, True, cfg, device=dev)  # type: ignore[arg-type]
    out, (rec,) = compose_frame(frame, None, placements, True, cfg, regrain=_regrain(path), device=dev)  # type: ignore[arg-type]
    grain = out[..., 0].astype(np.float64) - plain[..., 0]
    core = alpha > 0.99
    ring = (cv2.dilate((alpha > 0).astype(np.uint8), np.ones((25, 25), np.uint8)) > 0) & (alpha == 0)
    ratio = grain[core].std() / grain[ring].std()
    assert rec["met_bound_in_frame"] and rec["psnr_in_frame_db"] >= rec["bound_db"]  # on the grainy output
    if sigma == 6.0:  # the face keeps all of it: the projection, done before, took none of it out
        assert rec["grain_share"] == 1.0 and 0.85 < ratio < 1.15  # measured here: 0.99
    else:  # heavy grain would break the promise: the face carries as much as keeps bound + margin
        assert 0.3 < rec["grain_share"] < 1.0 and 0.3 < ratio < 0.9  # measured here: 0.57, 0.59
        assert rec["psnr_in_frame_db"] >= rec["bound_db"] + cfg.compose.project_margin_db - 0.1
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() == 0  # black and white stays so


def _film(clean: list[np.ndarray], rho: float, seed: int) -> list[np.ndarray]:
    """`clean` with fresh grain of 6 levels (white noise blurred 0.8 px) in every frame, its
    channels correlated by `rho` (1: monochrome grain)."""
    rng = np.random.default_rng(seed)
    out = []
    for im in clean:
        f = cv2.GaussianBlur(rng.standard_normal((*im.shape[:2], 4)).astype(np.float32), (0, 0), BLUR)
        f /= f.reshape(-1, 4).std(axis=0)
        g = (np.sqrt(rho) * f[..., :1] + np.sqrt(1 - rho) * f[..., 1:]) * SIGMA
        out.append(np.clip(im + g + 0.5, 0, 255).astype(np.uint8))
    return out


def _layers(frames: list[VideoFrame], path: str, glued: bool = False) -> list[np.ndarray]:
    """The grain regrain lays on each frame at x2 on `path` (`glued`: the same measurement with the
    picture's motion taken out: the grain laid on fixed positions of the screen)."""
    regrain, out = _regrain(path), []
    for f in frames:
        measure = f.grain
        if glued:
            g = parse(measure)
            measure = pack(g.profile, g.size, g.rho, np.array(g.strengths), [np.eye(2, 3)] * 2)
        layer = _layer(regrain, path, upscale(f.image, 2).astype(np.float32) / 255, measure, f.index, 2.0)
        assert layer is not None
        out.append(layer)
    return out


def _shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float32), b.astype(np.float32), window)
    return np.array([dx, dy])


def test_in_a_pan_the_grain_moves_with_the_picture_and_does_not_boil(path: str) -> None:
    """A real photograph panned (2 px a frame, a sway about it) with fresh grain every frame, cleaned
    with regrain and composed at x2. Frame to frame, the grain moves as the picture does, shares two
    thirds of itself along the motion (it changes there by about sqrt(2/3) of its std: no boiling)
    and little on the screen. The same grain laid on fixed positions (the motion taken out) does
    the opposite: the figures tell the two apart."""
    clean = S.camera_clip(skimage.data.astronaut(), (W, H), N, pan_px=2.0, sway_px=1.0, light=0.0)
    frames = list(
        clean_frames(S.as_frames(_film(clean, 1.0, 1)), FilmConfig(grain="regrain"), start=0, end=N)
    )
    inner = (slice(16, -16), slice(16, -16))
    for glued in (False, True):
        grain = _layers(frames, path, glued)
        errors, along, on_screen, change = [], [], [], []
        for t in range(3, N - 2):  # full windows
            gray = [cv2.cvtColor(upscale(clean[k], 2), cv2.COLOR_RGB2GRAY) for k in (t - 1, t)]
            picture = _shift(*gray)
            errors.append(float(np.hypot(*(_shift(grain[t - 1], grain[t]) - picture))))
            m = np.array([[1.0, 0.0, picture[0]], [0.0, 1.0, picture[1]]])
            moved = cv2.warpAffine(grain[t - 1], m, (2 * W, 2 * H), flags=cv2.INTER_CUBIC)[inner]
            now, before = grain[t][inner], grain[t - 1][inner]
            along.append(np.corrcoef(moved.ravel(), now.ravel())[0, 1])
            on_screen.append(np.corrcoef(before.ravel(), now.ravel())[0, 1])
            change.append(float(np.std(now - moved) / np.std(now)))
        if not glued:  # measured here: 0.54 px, 0.65, 0.10, 0.85
            assert max(errors) < 1.0 and np.mean(along) > 0.55 and np.mean(on_screen) < 0.3
            assert np.mean(change) < 0.95  # fresh grain every frame: sqrt(2) = 1.41
        else:  # measured here: 4.7 px, 0.11, 0.67, 1.36
            assert max(errors) > 2.0 and np.mean(along) < 0.3 and np.mean(on_screen) > 0.55
            assert np.mean(change) > 1.2


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_the_grain_has_the_colour_of_the_sources(rho: float, path: str) -> None:
    """A real photograph with grain whose channels correlate by `rho` (0: each dye layer its own
    grain; 1: monochrome grain): regrain measures the correlation of what the reduction removed
    and lays grain whose channels correlate alike; monochrome grain comes back monochrome, the
    same in every channel. Measured here: rho 0.03 / 0.45 / 0.98, output 0.01 / 0.49 / 1 (one field)."""
    clean = S.camera_clip(skimage.data.coffee(), (W, H), 8, pan_px=1.0, sway_px=1.0, light=0.0)
    frames = list(
        clean_frames(S.as_frames(_film(clean, rho, 2)), FilmConfig(grain="regrain"), start=0, end=8)
    )
    measured = np.mean([parse(f.grain).rho for f in frames])
    assert abs(measured - rho) < 0.12
    layer = _layers(frames, path)[4]
    if rho == 1.0:
        assert layer.ndim == 2  # one field for the three channels
        return
    c = np.corrcoef(layer.reshape(-1, 3).T)
    assert abs((c[0, 1] + c[0, 2] + c[1, 2]) / 3 - rho) < 0.12


def test_a_black_and_white_film_gets_monochrome_grain(path: str) -> None:
    """A gray picture (R = G = B) with its grain: the output's grain is the same in the three
    channels, exactly."""
    clean = S.camera_clip(skimage.data.astronaut(), (W, H), 6, pan_px=1.0, sway_px=1.0, light=0.0)
    gray = [np.repeat(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for c in clean]
    frames = list(clean_frames(S.as_frames(_film(gray, 1.0, 3)), FilmConfig(grain="regrain"), start=0, end=6))
    g = parse(frames[3].grain)
    assert g.mono and g.rho == pytest.approx(1.0, abs=1e-6)
    out = _apply(_regrain(path), path, upscale(frames[3].image, 2), frames[3].grain, 3)
    assert int(np.abs(out.astype(int) - upscale(frames[3].image, 2)).max()) > 3  # grain was laid
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_a_frame_regrained_on_the_device_comes_to_the_host_once_in_its_dtype(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compose on a torch device with regrain (faces pasted, projected, grained): the frame comes to
    the host once, for the encoder, as 8 or 16 bits a sample; besides it, at most a byte per
    source pixel (each face's mask of the source pixels it covers, for its record) and scalars.
    The numpy regrain brings the projected frame over as float32 first (4 bytes a sample)."""
    import torch

    crossed: list[tuple[int, int]] = []  # (samples, bytes) of every tensor read on the host
    numpy_of, tolist_of = torch.Tensor.numpy, torch.Tensor.tolist

    def counted(t: torch.Tensor) -> None:
        crossed.append((t.numel(), t.numel() * t.element_size()))

    monkeypatch.setattr(torch.Tensor, "numpy", lambda t, **kw: (counted(t), numpy_of(t, **kw))[1])
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: (counted(t), tolist_of(t))[1])
    face, placements, _ = _face_frame(14.0)
    deep = replace(face, image=face.image.astype(np.uint16) * 257)
    cfg = Config()
    for frame, faces, width in ((face, placements, 1), (deep, placements, 2), (face, [], 1)):
        h, w = frame.image.shape[:2]
        for on_device in (True, False):
            regrain = Regrain(0, on_device=on_device)
            compose_frame(frame, None, faces, True, cfg, regrain=regrain, device=device)  # warm caches
            crossed.clear()
            out, rows = compose_frame(frame, None, faces, True, cfg, regrain=regrain, device=device)
            assert out.shape == (2 * h, 2 * w, 3) and len(rows) == len(faces)
            whole = [b for n, b in crossed if n == out.size]  # full frames read on the host
            if on_device:
                assert whole == [out.size * width], crossed  # once, 8 or 16 bits a sample
                assert sum(b for n, b in crossed if n != out.size) <= h * w, crossed
            elif faces:
                assert out.size * 4 in whole  # float32: the numpy grain is laid on the host
