"""Feeding the device (pipeline.run.feed): decode ahead on a thread, encode on a thread, the learned
upscale kept on the device through compose. Outputs are those of the plain, threadless path, and an
error on a thread reaches the caller as itself, once, without a hang. No test here waits on a clock:
the bounds asserted hold for every interleaving of the threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config, load_config
from pipeline.errors import DecodeError, OutputError
from pipeline.io.decode import open_video
from pipeline.io.probe import probe
from pipeline.io.writer import VideoWriter
from pipeline.run.feed import ThreadedWriter, prefetched
from pipeline.run.restore import RESTORE
from pipeline.run.steps import compose_step
from tests.media import MediaCache


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


def _counted(n: int | None, produced: list[int], fail_at: int | None = None) -> Iterator[int]:
    i = 0
    while n is None or i < n:
        if i == fail_at:
            raise DecodeError(Path("/films/reel 3.mkv"), f"frame {i} cannot be decoded")
        produced.append(i)
        yield i
        i += 1


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "reel-prefetch"]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetch_gives_every_item_in_order_and_reads_at_most_depth_ahead(depth: int) -> None:
    produced: list[int] = []
    got = []
    with prefetched(_counted(20, produced), depth) as items:
        for i, item in enumerate(items):
            # read so far: the consumed ones, `depth` queued and one waiting for room, at most
            assert len(produced) <= i + 1 + depth + 1
            got.append(item)
    assert got == list(range(20))
    assert not _prefetch_threads()


def test_an_error_while_prefetching_is_raised_where_the_item_would_be_read() -> None:
    produced: list[int] = []
    got = []
    with pytest.raises(DecodeError) as caught, prefetched(_counted(10, produced, fail_at=4), 2) as items:
        got.extend(items)
    assert got == [0, 1, 2, 3]  # every item before the failure, then the failure itself
    assert str(caught.value) == "/films/reel 3.mkv: frame 4 cannot be decoded"  # the same one line
    assert not _prefetch_threads()


def test_leaving_early_stops_the_reader_thread() -> None:
    produced: list[int] = []
    with prefetched(_counted(None, produced), 2) as items:  # an endless source
        for item in items:
            if item == 5:
                break
    assert not _prefetch_threads()  # joined when the block ended, not left reading
    stopped = len(produced)
    assert stopped <= 5 + 1 + 2 + 1
    with pytest.raises(ValueError, match="in the consumer"), prefetched(_counted(None, produced), 2) as items:
        next(items)
        raise ValueError("in the consumer")
    assert not _prefetch_threads()


class _Recorder:
    def __init__(self, fail_at: int | None = None) -> None:
        self.frames: list[tuple[int, int]] = []
        self.fail_at, self.closed, self.aborted, self.frames_written = fail_at, False, False, 0

    def open(self) -> None:
        pass

    def write(self, image: np.ndarray, pts: int) -> None:
        if pts == self.fail_at:
            raise DecodeError(Path("/out/part.mkv"), "the encoder refused frame 3")
        self.frames.append((int(image[0, 0]), pts))
        self.frames_written += 1

    def close(self) -> Path:
        self.closed = True
        return Path("/out/part.mkv")

    def abort(self) -> None:
        self.aborted = True


def test_threaded_writer_encodes_every_frame_in_order() -> None:
    inner = _Recorder()
    writer = ThreadedWriter(inner, depth=2)
    writer.open()
    for pts in range(30):
        writer.write(np.full((2, 2), pts, np.uint8), pts)
    assert writer.close() == Path("/out/part.mkv")
    assert inner.frames == [(p, p) for p in range(30)] and inner.closed
    assert writer.frames_written == 30


def test_an_encoder_error_is_raised_as_itself_and_the_part_aborted() -> None:
    inner = _Recorder(fail_at=3)
    writer = ThreadedWriter(inner, depth=2)
    writer.open()
    with pytest.raises(DecodeError, match=r"^/out/part\.mkv: the encoder refused frame 3$") as caught:
        for pts in range(50):  # raised at a later write, or at the close at the latest
            writer.write(np.zeros((2, 2), np.uint8), pts)
        writer.close()
    for pts in range(50, 60):  # every later call: the same error at once, the encoder not reached
        with pytest.raises(DecodeError) as again:
            writer.write(np.zeros((2, 2), np.uint8), pts)
        assert again.value is caught.value
    with pytest.raises(DecodeError) as closing:
        writer.close()
    assert closing.value is caught.value
    writer.abort()  # what compose_step does with a failed part: no second error, no hang
    assert inner.aborted and not inner.closed
    assert inner.frames == [(0, p) for p in range(3)]


class _Counted(VideoWriter):
    """The real encoder (ffmpeg through a pipe), its writes counted."""

    calls = 0

    def write(self, image: np.ndarray, pts: int) -> None:
        self.calls += 1
        super().write(image, pts)


def test_a_killed_encoder_fails_every_later_write_at_once_and_close_neither_hangs_nor_hides_it(
    tmp_path: Path,
) -> None:
    """ffmpeg killed under a running encode (as the OOM killer would): the error reaches the caller
    at a write or at the close, as the writer's one error; then no frame reaches the encoder again,
    every write and close raises that same error at once, and nothing is left behind."""
    inner = _Counted(
        tmp_path / "part.mov", width=64, height=48, time_base=Fraction(1, 25), preset="master-ffv1"
    )
    writer = ThreadedWriter(inner, depth=2)
    writer.open()
    assert inner._proc is not None
    inner._proc.kill()
    inner._proc.wait()  # dead and reaped: its end of the pipe is closed, every write to it fails
    image = np.zeros((48, 64, 3), np.uint8)
    first: OutputError | None = None
    for pts in range(300):  # 2.7 MB: far more than the pipe and the muxer's buffers hold
        try:
            writer.write(image, pts)
        except OutputError as exc:
            first = exc
            break
    if first is None:  # every frame queued before the thread met the error: close raises it
        with pytest.raises(OutputError) as caught:
            writer.close()
        first = caught.value
    calls = inner.calls
    assert "ffmpeg" in str(first) and calls <= 300
    for pts in range(300, 310):
        with pytest.raises(OutputError) as again:
            writer.write(image, pts)
        assert again.value is first
    for _ in range(2):  # closing after the error: the same error, no wait, no other error in its place
        with pytest.raises(OutputError) as closing:
            writer.close()
        assert closing.value is first
    writer.abort()
    assert inner.calls == calls  # the failed encoder was never handed another frame
    assert not [t for t in threading.enumerate() if t.name == "reel-encode"]
    assert list(tmp_path.iterdir()) == []  # no part, no partial file


def _config(tmp: Path, *sets: str) -> Config:
    return load_config(sets=[f"run.workdir={tmp}", "run.progress=false", *sets])


def _compose(clip: Path, tmp: Path, name: str, cfg: Config, end: int) -> list[np.ndarray]:
    part = tmp / f"{name}.mkv"
    compose_step(
        str(clip), probe(clip), cfg, 0, end, [], False, str(part), str(tmp / f"{name}.records.json"), RESTORE
    )
    with open_video(part).reader() as reader:
        return [f.image for f in reader]


@pytest.mark.parametrize(
    "sets",
    [
        ("upscale.scale=2", "film.deflicker=true", "film.dust=true"),  # decode, clean, upscale, encode
        ("upscale.scale=1",),  # decoded frames passed to the encoder as they are (native frames)
    ],
    ids=["cleaned-x2", "pass-through"],
)
def test_compose_with_threads_writes_what_it_writes_without(
    media: MediaCache, tmp_path: Path, sets: tuple[str, ...]
) -> None:
    clip = media.clip("feed", frames=12, size=(64, 48), gop=4)
    plain = _compose(clip, tmp_path, "plain", _config(tmp_path, "run.prefetch_frames=0", *sets), 12)
    fed = _compose(clip, tmp_path, "fed", _config(tmp_path, "run.prefetch_frames=2", *sets), 12)
    assert len(plain) == len(fed) == 12
    assert all(np.array_equal(a, b) for a, b in zip(plain, fed, strict=True))


def test_a_decode_error_in_the_reader_thread_fails_the_step_with_its_one_line(
    media: MediaCache, tmp_path: Path
) -> None:
    src = media.clip("feed-cut", frames=60, size=(64, 48), gop=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 3])
    with pytest.raises(DecodeError) as direct:
        list(open_video(cut).reader())
    cfg = _config(tmp_path, "upscale.scale=2", "run.prefetch_frames=2")
    with pytest.raises(DecodeError) as fed:
        _compose(cut, tmp_path, "cut-part", cfg, 60)
    assert str(fed.value) == str(direct.value) and "\n" not in str(fed.value)
    assert not (tmp_path / "cut-part.mkv").exists()  # nothing half-written left as a part
    assert not _prefetch_threads()
