"""HTTP(S) download with resume, progress, size and SHA-256 verification, and an atomic final move.

The bytes go to `<dest>.part`; an interrupted transfer is resumed with a Range request (also on the
next run); only a complete file whose size and checksum verify is renamed to `dest`, so a corrupt or
partial download is never used. A checksum mismatch deletes the partial file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.errors import DownloadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool | None = None,
) -> Path:
    """Fetch `url` to `dest`. Returns dest; DownloadError if it cannot be fetched or does not verify."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    show = sys.stderr.isatty() if progress is None else progress
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * attempt)
            log.warning(
                "download of %s interrupted (%s); resuming, try %d of %d", url, last_error, attempt, retries
            )
        try:
            if _transfer(url, part, timeout, show):
                break
            last_error = "the connection closed before the end of the file"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500 and exc.code != 429:
                raise DownloadError(f"{url}: {last_error}") from exc
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
            last_error = str(getattr(exc, "reason", exc)) or type(exc).__name__
    else:
        kept = f"; {part.stat().st_size} bytes kept in {part} to resume" if part.exists() else ""
        raise DownloadError(f"{url}: download failed after {retries + 1} tries ({last_error}){kept}")

    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: got {got_size} bytes, expected {size}; the partial file was deleted")
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: SHA-256 mismatch (expected {sha256}, got {digest}); the downloaded file was deleted"
            )
    part.replace(dest)
    return dest


def _transfer(url: str, part: Path, timeout: float, show: bool) -> bool:
    """One request, appending to `part` (resuming from its size). True when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "reel-restore"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part file is already complete
            return True
        raise
    with resp:
        if have and resp.status != 206:  # the server ignored the range: start over
            have = 0
        total_header = resp.headers.get("Content-Length")
        remaining = int(total_header) if total_header is not None else None
        mode = "ab" if have else "wb"
        bar = None
        if show:
            from tqdm import tqdm

            total = have + remaining if remaining is not None else None
            bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], leave=True)
        received = 0
        try:
            with open(part, mode) as f:
                while block := resp.read(CHUNK):
                    f.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
        except http.client.IncompleteRead as exc:
            # keep what arrived; the caller resumes
            with open(part, "ab") as f:
                f.write(exc.partial)
            return False
        finally:
            if bar is not None:
                bar.close()
    return remaining is None or received >= remaining
