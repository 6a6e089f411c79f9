"""The work directory: every durable result of a run, keyed so that a rerun skips what is done.

Layout: `<root>/<stage>/<key>/<name>`. A key is built by the stage from the input video's content
key (`WorkDir.video_key`) and a hash of exactly the settings its result depends on
(`pipeline.files.settings_key`), e.g. `settings_key(video_key, config.scan)`. A changed setting gives a new
key, so only the stages that depend on it are recomputed; the old artifacts stay (they are cheap to
delete by hand and make switching back free).

Artifacts are written with `pipeline.files` (npz and JSON, never pickles, always through
`atomic_path`), so a killed writer leaves only a temporary file, which `has()` never accepts and
`clean_temporaries()` removes.

On a cluster the work directory must be on a filesystem every node sees (NFS, Lustre, ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

from pipeline.files import KEY_LENGTH, SCHEMA_VERSION, TMP_MARK, file_key, is_complete
from pipeline.io.sequence import is_sequence, resolve_sequence, sequence_rate
from pipeline.io.verify import is_complete_video

log = logging.getLogger(__name__)


def default_workdir(output: str | Path, workdir: str | Path | None = None) -> Path:
    """The work directory for an output: `workdir` when given, else `<output>.work` beside it."""
    if workdir is not None:
        return Path(workdir)
    output = Path(output)
    return output.with_name(output.name + ".work")


class WorkDir:
    """A directory of durable, atomically written, content-keyed artifacts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"WorkDir({str(self.root)!r})"

    def __reduce__(self) -> tuple[type[WorkDir], tuple[str]]:
        # Sent to Ray workers as its path only.
        return (WorkDir, (str(self.root),))

    # ------------------------------------------------------------------ keys

    @staticmethod
    def video_key(path: str | Path) -> str:
        """Content key of an input: `files.file_key` of a file, `sequence_key` of an image sequence.

        Independent of the input's name, location and modification time, so a copied or renamed
        input keeps its finished work; any edit that changes the size or a sampled block changes it.
        """
        if is_sequence(path):
            return WorkDir.sequence_key(path)
        return file_key(path)

    @staticmethod
    def sequence_key(path: str | Path) -> str:
        """Content key of an image sequence: its frame rate, every file's name and size, and the
        content keys of its first, middle and last files."""
        seq = resolve_sequence(path)
        files = seq.files
        digest = hashlib.blake2b(digest_size=KEY_LENGTH // 2)
        digest.update(f"reel-sequence-v{SCHEMA_VERSION}:{sequence_rate()}:{seq.start}:{seq.count}".encode())
        for f in files:
            digest.update(f"{f.name}:{f.stat().st_size};".encode())
        for f in {files[0], files[len(files) // 2], files[-1]}:
            digest.update(file_key(f).encode())
        return digest.hexdigest()

    # ------------------------------------------------------------------ paths

    def artifact(self, stage: str, key: str, name: str) -> Path:
        """Path of one artifact (its directory is created; the file may not exist yet)."""
        for label, part in (("stage", stage), ("key", key), ("name", name)):
            if not part or "/" in part or "\\" in part or part in (".", "..") or part.startswith(TMP_MARK):
                raise ValueError(f"work directory {label} {part!r} is not a plain file name")
        directory = self.root / stage / key
        directory.mkdir(parents=True, exist_ok=True)
        return directory / name

    def has(self, stage: str, key: str, name: str) -> bool:
        """True when the artifact exists and verifies; one that does not is removed (and redone).

        Writes are atomic, but a disk that filled up, a copy cut short or a writer from an older
        version can still leave a damaged file under a final name: npz files must open as complete
        zip archives, JSON must parse, and encoded video parts must read back with their frames.
        """
        if name.startswith(TMP_MARK):
            return False
        path = self.root / stage / key / name
        if not path.is_file():
            return False
        if _verifies(path):
            return True
        log.warning("%s: damaged or incomplete; it is removed and redone", path)
        with contextlib.suppress(OSError):
            path.unlink()
        return False

    def clean_temporaries(self) -> int:
        """Remove temporary files left by killed writers (ours and the encoder's hidden partial
        parts); returns how many were removed."""
        removed = 0
        for pattern in (f"{TMP_MARK}*", ".*.partial.*"):
            for tmp in self.root.rglob(pattern):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    tmp.unlink()
                    removed += 1
        if removed:
            log.info("%s: removed %d temporary file(s) an interrupted run left", self.root, removed)
        return removed


def _verifies(path: Path) -> bool:
    """A stored artifact reads back completely (see WorkDir.has); encoded video parts must decode."""
    if path.suffix.lower() in (".mov", ".mkv", ".mp4"):
        try:
            return path.stat().st_size > 0 and is_complete_video(path)
        except (OSError, ValueError):
            return False
    return is_complete(path)
