"""File helpers of the deploy kit (stdlib only): atomic writes and sha256.

deploy/ must not import edgekd, so these live here and edgekd.core.fileio reuses them. A write
goes to a temporary file in the same folder, is fsynced, then renamed over the target, so an
interrupted build or bench never leaves a half-written engine or JSON behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (/proc), else by
    the set-and-restore idiom."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(fd: int) -> None:
    """Give a ``mkstemp`` file (always 0600) the mode ``open()`` would: 0666 minus the umask,
    so an atomically written file is as readable as any other the user writes."""
    os.fchmod(fd, 0o666 & ~_umask())


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_temporary(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        public_mode(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_files_atomic(files: list[tuple[str | Path, bytes]]) -> None:
    """Write files that belong together (an engine and its sidecar): every file goes to a
    temporary file first, and only when all are written are they renamed, in order, over their
    targets. A failure while writing leaves the old files untouched; the renames themselves
    take microseconds. Old copies of the later files are removed before the first rename, so
    a crash between renames can leave a file without its sidecar, never with a stale one."""
    temporaries: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            temporaries.append((_write_temporary(Path(path), data), Path(path)))
        for _tmp, path in temporaries[1:]:
            path.unlink(missing_ok=True)
        for tmp, path in temporaries:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _path in temporaries:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    write_files_atomic([(path, data)])
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))
