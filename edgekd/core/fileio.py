"""Small file helpers shared by every stage: atomic writes, JSON lines, hashing.

Every file in a run directory is written atomically (write a temporary file in the same
folder, fsync, then ``os.replace``) so a crash or ``kill -9`` never leaves a half-written
file behind: a reader sees either the old content or the new one. The file gets the mode
a plain ``open()`` would give it (0666 minus the umask), not mkstemp's 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


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


def _public_mode(fd: int) -> None:
    """Give a ``mkstemp`` file (always 0600) the mode ``open()`` would: 0666 minus the umask,
    so an atomically written file is as readable as any other the user writes."""
    os.fchmod(fd, 0o666 & ~_umask())


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _public_mode(fd)
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _atomic_write(Path(path), lambda h: h.write(data), "wb")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic_write(Path(path), lambda h: h.write(text.encode("utf-8")), "wb")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` to ``path`` atomically (torch is imported here, not at module load)."""
    import torch

    return _atomic_write(Path(path), lambda h: torch.save(obj, h), "wb")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON record as a line. Each line is written with one ``write`` call and
    flushed, so a crash loses at most the line being written; :func:`read_jsonl` skips a
    torn last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write all ``records`` as JSON lines, atomically."""
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    return atomic_write_text(path, text)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines; a torn (unparseable) final line from a crash is ignored."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if index == len(lines) - 1:
                return  # torn last line after a crash
            raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of the canonical JSON of ``obj`` (sorted keys, no spaces)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
