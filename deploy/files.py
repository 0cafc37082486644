"""File helpers of the deploy kit (stdlib only): atomic writes, sha256, bounded JSON/TOML reads.

deploy/ must not import edgekd, so these live here and edgekd.core.fileio reuses them. A write
goes to a temporary file in the same folder, is fsynced, then renamed over the target, so an
interrupted build or bench never leaves a half-written engine or JSON behind.

Every JSON or TOML document edgekd or the kit reads (run files, configs, profiles, measurements,
calibration files, ONNX metadata values) goes through :func:`loads_json` / :func:`loads_toml` /
:func:`read_json`: a document larger than :data:`MAX_BYTES` or nested deeper than
:data:`MAX_DEPTH` is a :class:`DocumentError` (a ``ValueError``), never a ``RecursionError`` or
an unbounded allocation.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

#: The largest JSON or TOML document read (bytes); every file edgekd reads is far smaller.
MAX_BYTES = 64 << 20
#: The deepest nesting of arrays and objects accepted; edgekd's own files nest fewer than 10 deep.
MAX_DEPTH = 64


class DocumentError(ValueError):
    """A JSON or TOML document that is not valid, too large or too deeply nested (one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/dicts deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False


def _bounded(parse: Callable[[str], Any], text: str, kind: str, max_depth: int) -> Any:
    if len(text) > MAX_BYTES:
        raise DocumentError(f"{kind} document of {len(text)} characters is larger than the "
                            f"{MAX_BYTES >> 20} MiB limit")
    try:
        value = parse(text)
    except RecursionError:
        value = None
        deep = True
    except ValueError as error:  # json.JSONDecodeError, tomllib.TOMLDecodeError
        raise DocumentError(f"invalid {kind}: {str(error).splitlines()[0][:80]}") from None
    else:
        deep = _depth_over(value, max_depth)
    if deep:
        raise DocumentError(f"{kind} nested deeper than {max_depth} levels")
    return value


def loads_json(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with the size and depth limits (DocumentError past them or when invalid)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return _bounded(json.loads, text, "JSON", max_depth)


def loads_toml(text: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """``tomllib.loads`` with the size and depth limits (DocumentError past them or when invalid).
    Imported here: the kit itself reads no TOML, and JetPack's Python may predate tomllib."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 (edgekd depends on tomli there)
        import tomli as tomllib
    return _bounded(tomllib.loads, text, "TOML", max_depth)


def read_text_bounded(path: str | Path, max_bytes: int | None = None) -> str:
    """The UTF-8 text of ``path`` (undecodable bytes replaced), refused (DocumentError) past
    ``max_bytes`` (default :data:`MAX_BYTES`) before it is read; OSError as ``open`` raises it."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DocumentError(f"file is larger than the {max_bytes >> 20} MiB limit")
    return data.decode("utf-8", errors="replace")


def read_json(path: str | Path, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in ``path``, read with the size and depth limits."""
    return loads_json(read_text_bounded(path), max_depth=max_depth)


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


def ensure_folder(folder: str | Path) -> Path:
    """``mkdir -p folder``; a file where one of its folders belongs is a NotADirectoryError
    (ENOTDIR) naming that file, not mkdir's FileExistsError about the folder asked for."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(errno.ENOTDIR, "a file is where a folder belongs",
                                 str(blocker)) from None
    return folder


def _write_temporary(path: Path, data: bytes) -> str:
    ensure_folder(path.parent)
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
