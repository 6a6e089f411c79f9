"""Model zoo, cache and downloader, against a real HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import argparse
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from pipeline.cli import models as cli_models
from pipeline.errors import CheckpointError, DownloadError, ModelNotAvailableError, OutputError
from pipeline.prior import zoo
from pipeline.prior.download import download
from pipeline.prior.stylegan2 import make_random_generator
from tests.prior import formats


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if srv.mode == "error" or (srv.mode == "flaky" and len(srv.requests) == 1):
            self.send_error(500, "server exploded")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.mode != "no-range":
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if srv.mode == "interrupt" and len(srv.requests) == 1:
            self.wfile.write(part[: len(part) // 3])  # then hang up mid-transfer
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(part)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


BODY = bytes(range(256)) * 4000  # ~1 MB


def test_download_verifies_and_moves_atomically(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = BODY
    out = download(
        f"{server.url}/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(BODY).hexdigest(), size=len(BODY)
    )
    assert out.read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_interrupted_transfer_is_resumed_with_a_range_request(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = BODY
    server.mode = "interrupt"
    out = download(
        f"{server.url}/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(BODY).hexdigest(), backoff=0
    )
    assert out.read_bytes() == BODY
    assert server.requests[0]["range"] is None
    assert server.requests[1]["range"] == f"bytes={len(BODY) // 3}-"


def test_partial_file_from_an_earlier_run_is_resumed(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = BODY
    (tmp_path / "f.bin.part").write_bytes(BODY[:1000])
    download(f"{server.url}/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(BODY).hexdigest())
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert server.requests[0]["range"] == "bytes=1000-"
    # a server that ignores ranges makes the download start over, still correct
    server.mode = "no-range"
    (tmp_path / "g.bin.part").write_bytes(BODY[:1000])
    server.files["/g.bin"] = BODY
    download(f"{server.url}/g.bin", tmp_path / "g.bin", sha256=hashlib.sha256(BODY).hexdigest())
    assert (tmp_path / "g.bin").read_bytes() == BODY


def test_wrong_checksum_is_never_used(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = BODY
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download(f"{server.url}/f.bin", tmp_path / "f.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["error", "missing"])
def test_server_errors(server: _Server, tmp_path: Path, mode: str) -> None:
    server.files["/f.bin"] = BODY
    server.mode = mode
    url = f"{server.url}/{'f.bin' if mode == 'error' else 'nothing.bin'}"
    with pytest.raises(DownloadError, match="HTTP 500" if mode == "error" else "HTTP 404"):
        download(url, tmp_path / "f.bin", retries=2, backoff=0)
    assert not (tmp_path / "f.bin").exists()
    assert len(server.requests) == (3 if mode == "error" else 1)  # 5xx retried, 4xx not


def test_transient_server_error_is_retried(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = BODY
    server.mode = "flaky"
    download(f"{server.url}/f.bin", tmp_path / "f.bin", backoff=0)
    assert (tmp_path / "f.bin").read_bytes() == BODY


# ----------------------------------------------------------------------------------------------------
# zoo


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def _zoo_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict[str, Any]) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    monkeypatch.setattr(zoo, "ZOO_FILE", path)


def _entry(url: str, sha: str | None = None, fmt: str = "nvidia-pt") -> dict[str, Any]:
    return {
        "description": "test",
        "url": url,
        "filename": "tiny.pkl",
        "format": fmt,
        "resolution": 16,
        "sha256": sha,
    }


def test_shipped_zoo_lists_the_official_ffhq_models() -> None:
    entries = zoo.load_zoo()
    res = {e.resolution for e in entries.values() if e.name.startswith("ffhq") and e.url}
    assert {256, 512, 1024} <= res
    assert all(e.url is None or e.url.startswith("https://") for e in entries.values())


def test_fetch_convert_resolve_load(
    server: _Server, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    G = make_random_generator(16, seed=4)
    formats.write_nvidia_pt(G, tmp_path / "tiny.pkl")
    data = (tmp_path / "tiny.pkl").read_bytes()
    server.files["/tiny.pkl"] = data
    _zoo_file(
        tmp_path, monkeypatch, {"tiny": _entry(f"{server.url}/tiny.pkl", hashlib.sha256(data).hexdigest())}
    )
    with pytest.raises(ModelNotAvailableError, match="not downloaded"):
        zoo.resolve_model("tiny")
    path = zoo.fetch_model("tiny", progress=False)
    assert path == cache / "tiny.safetensors" and (cache / "tiny.pkl").read_bytes() == data
    assert zoo.resolve_model("tiny") == path
    loaded = zoo.load_generator("tiny", "cpu", "float32")
    z = torch.randn(2, G.z_dim)
    torch.testing.assert_close(loaded(z), G(z), rtol=1e-5, atol=1e-5)
    assert zoo.load_generator("tiny", dtype="bfloat16").w_avg.dtype == torch.bfloat16
    # fetching again does not download again
    n = len(server.requests)
    zoo.fetch_model("tiny", progress=False)
    assert len(server.requests) == n


def test_offline_error_names_the_url_and_the_target(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port bound and not listening: connections are refused, and no other process can take it
    # while the test runs (a port closed again could be).
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        url = f"http://127.0.0.1:{port}/tiny.pkl"
        _zoo_file(tmp_path, monkeypatch, {"tiny": _entry(url)})
        monkeypatch.setattr("pipeline.prior.download.time.sleep", lambda s: None)
        with pytest.raises(ModelNotAvailableError) as info:
            zoo.fetch_model("tiny", progress=False)
    assert url in str(info.value) and str(cache / "tiny.pkl") in str(info.value)
    with pytest.raises(ModelNotAvailableError, match="known: tiny"):
        zoo.resolve_model("no-such-model")


def test_download_that_is_not_a_generator_is_set_aside(
    server: _Server, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/tiny.pkl"] = b"<html>login page</html>"
    _zoo_file(tmp_path, monkeypatch, {"tiny": _entry(f"{server.url}/tiny.pkl")})
    with pytest.raises(CheckpointError):
        zoo.fetch_model("tiny", progress=False)
    assert not (cache / "tiny.pkl").exists() and (cache / "tiny.pkl.bad").exists()
    with pytest.raises(ModelNotAvailableError):
        zoo.resolve_model("tiny")


def test_hand_placed_file_is_checked_against_the_zoo_checksum(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    G = make_random_generator(16, seed=4)
    formats.write_nvidia_pt(G, tmp_path / "tiny.pkl")
    data = (tmp_path / "tiny.pkl").read_bytes()
    cache.mkdir(parents=True)
    (cache / "tiny.pkl").write_bytes(data[:-1] + b"\x00")  # corrupt last byte
    _zoo_file(
        tmp_path,
        monkeypatch,
        {"tiny": _entry("http://127.0.0.1:9/tiny.pkl", hashlib.sha256(data).hexdigest())},
    )
    with pytest.raises(CheckpointError, match="SHA-256"):
        zoo.load_generator("tiny")
    with pytest.raises(CheckpointError, match="SHA-256"):
        zoo.fetch_model("tiny", progress=False)
    (cache / "tiny.pkl").write_bytes(data)
    assert zoo.load_generator("tiny").img_resolution == 16
    assert (cache / "tiny.safetensors").is_file()


def test_random_spec_and_paths(tmp_path: Path) -> None:
    G = zoo.load_generator("random:16:3")
    assert G.img_resolution == 16
    torch.testing.assert_close(G.w_avg, make_random_generator(16, 3).w_avg)
    with pytest.raises(Exception, match="random:RESOLUTION"):
        zoo.load_generator("random:48")
    with pytest.raises(CheckpointError, match="no such file"):
        zoo.resolve_model(tmp_path / "missing.pkl")


# ----------------------------------------------------------------------------------------------------
# CLI


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli_models.add_arguments(parser)
    return cli_models.run(parser.parse_args(argv))


def test_cli_init_convert_list_path(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.safetensors"
    assert _cli("init", str(out), "--resolution", "16", "--seed", "5") == 0
    G = zoo.load_generator(out)
    z = torch.randn(1, G.z_dim)
    torch.testing.assert_close(G(z), make_random_generator(16, 5)(z))
    with pytest.raises(OutputError, match="exists"):
        _cli("init", str(out), "--resolution", "16")
    formats.write_nvidia_tf(G, tmp_path / "g.pkl")
    assert _cli("convert", str(tmp_path / "g.pkl"), str(tmp_path / "c.safetensors")) == 0
    assert "nvidia-tf" in capsys.readouterr().out
    torch.testing.assert_close(zoo.load_generator(tmp_path / "c.safetensors")(z), G(z))
    assert _cli("list") == 0
    listing = capsys.readouterr().out
    assert "ffhq-1024" in listing and "not downloaded" in listing
    with pytest.raises(ModelNotAvailableError, match="https://"):
        _cli("path", "ffhq-256")
