"""Small file helpers shared by every stage: atomic writes, JSON lines, hashing.

Every file in a run directory is written atomically (write a temporary file in the same
folder, fsync, then ``os.replace``, then fsync the folder so the new entry survives a power
cut) so a crash or ``kill -9`` never leaves a half-written file behind: a reader sees either
the old content or the new one. The file gets the mode a plain ``open()`` would give it
(0666 minus the umask), not mkstemp's 0600. A kill can leave the temporary file
(``.NAME.XXXX.tmp``, :data:`TEMP_GLOB`); :func:`remove_temp_files` cleans them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from edgekd_deploy.files import (DocumentError, ensure_folder, loads_json, loads_toml,  # the kit's: one each
                          public_mode, read_text_bounded)
from edgekd.core.errors import EdgekdError

__all__ = ["DocumentError", "JsonFileError", "loads_json", "loads_toml", "read_text_bounded",
           "read_json", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_torch_save", "append_jsonl", "write_jsonl", "read_jsonl", "iter_jsonl",
           "iter_jsonl_lines", "sha256_file", "sha256_json", "fsync_dir", "remove_temp_files",
           "TEMP_GLOB"]


#: The names :func:`_atomic_write`'s temporary files have (``tempfile.mkstemp`` prefix/suffix).
TEMP_GLOB = ".*.tmp"


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder, so a rename or a new file in it is on disk (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


def remove_temp_files(root: str | os.PathLike) -> list[Path]:
    """Delete the temporary files interrupted atomic writes left under ``root``; returns them.
    Call it only while no other process writes there (the run lock)."""
    removed = []
    for path in Path(root).rglob(TEMP_GLOB):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    ensure_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        public_mode(fd)
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
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
    """``torch.save`` to ``path`` atomically (torch is imported here, not at module load). The
    archive is built in memory and then written like any other file, so a full disk is the
    OSError of the write (one line, :func:`edgekd.core.errors.disk_error`) and the previous
    file stays whole, never a RuntimeError from inside torch's zip writer."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


class JsonFileError(EdgekdError, ValueError):
    """A JSON file that is not valid, too large or too deeply nested: one line naming it. It is
    a ValueError too, so a reader that treats a damaged file as absent still catches it;
    ``reason`` is what is wrong, for a caller that words its own line."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document in ``path``, read with the kit's size and depth limits
    (:data:`deploy.files.MAX_BYTES`, :data:`deploy.files.MAX_DEPTH`); OSError as ``open``
    raises it, :class:`JsonFileError` for a bad document."""
    try:
        return loads_json(read_text_bounded(path))
    except DocumentError as error:
        raise JsonFileError(f"{path}: {error}: pass a JSON file edgekd or the deploy kit "
                            "wrote", str(error)) from None


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON record as a line. Each line is written with one ``write`` call and
    fsynced, so a crash loses at most the line being written; :func:`read_jsonl` skips a
    torn line. After a torn tail (no final newline) the record starts on a fresh line, so it
    never sticks onto the torn bytes."""
    path = Path(path)
    ensure_folder(path.parent)
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    new = not path.exists()
    with open(path, "a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    if new:
        fsync_dir(path.parent)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write all ``records`` as JSON lines, atomically."""
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    return atomic_write_text(path, text)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines; a line that is not a JSON object (torn by a kill, garbage) is skipped.
    Readers that must know about skipped lines use :func:`edgekd.core.runfolder.read_records`."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    for line in iter_jsonl_lines(path):
        try:
            value = loads_json(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def iter_jsonl_lines(path: str | os.PathLike) -> Iterator[str]:
    """The non-blank lines of a text file (none when it does not exist); undecodable bytes
    become U+FFFD, so a damaged file yields bad lines rather than raising."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        text = read_text_bounded(path)
    except DocumentError as error:
        raise JsonFileError(f"{path}: {error}: remove it or start a new run") from None
    for line in text.splitlines():
        if line.strip():
            yield line


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
