"""Opening a run: its identity, the refusal of a different run, the lock, the cleanup.

The folder's layout and documents belong to :mod:`edgekd.core.runfolder` (``RunDir`` is defined
there and re-exported here). A run is identified by :func:`identity` (everything that changes
its results). Opening a folder that holds a run with a different identity is refused with
one line naming what differs; an identical run is continued (a finished (rung, trial) is
never trained again). :func:`open_run` takes an exclusive lock on the folder (``.lock``,
``fcntl.flock``) for the life of the process, so two ``--resume`` never train the same
trials, and deletes the temporary files a kill left behind.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd_deploy import system
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import TEMP_GLOB, remove_temp_files
from edgekd.core.runfolder import LOCK_FILE, RUN, RunDir, acquire, safe_id, write_doc
from edgekd.core.runguard import RunLock

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.run.config import CompressConfig

__all__ = ["RunDir", "safe_id", "identity", "differences", "open_run", "default_out", "versions",
           "RUN_FORMAT", "lock_run"]

RUN_FORMAT = RUN.format
#: The identity's parts, in the order differences are named in a refusal.
IDENTITY_KEYS = ("teacher", "data", "profile", "budget", "seed", "config")
#: The libraries whose versions run.json records.
VERSIONED_PACKAGES = ("edgekd", "torch", "torchvision", "onnx", "onnxruntime", "numpy")


def versions() -> dict[str, str]:
    """Versions of Python, the OS and the libraries that change results: the deploy kit's
    :func:`deploy.system.versions` (one implementation; it reads package metadata, so nothing
    heavy is imported) plus edgekd's own libraries, ``"absent"`` when not installed."""
    return system.versions(**{name: system.package_version(name) or "absent"
                              for name in VERSIONED_PACKAGES})


def identity(*, teacher: dict, data: dict, profile: dict, budget: dict, seed: int,
             config: dict) -> dict[str, Any]:
    """What makes two runs the same run. ``teacher``/``data`` carry a ``fingerprint``."""
    return {"teacher": teacher, "data": data, "profile": profile, "budget": budget,
            "seed": seed, "config": config}


def differences(old: dict, new: dict) -> list[str]:
    """Human names of what differs between two identities, e.g. ``budget.latency_ms 0.5 -> 0.3``."""
    names: list[str] = []
    for key in IDENTITY_KEYS:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key in ("teacher", "data"):
            names.append(f"{key} ({_fp(a)} -> {_fp(b)})")
        elif isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    names.append(f"{key}.{sub} {_short(a.get(sub))} -> {_short(b.get(sub))}")
        else:
            names.append(f"{key} {_short(a)} -> {_short(b)}")
    return names


def _fp(part: Any) -> str:
    if isinstance(part, dict):
        label = part.get("name") or part.get("source") or ""
        return f"{label} {str(part.get('fingerprint', ''))[:12]}".strip()
    return _short(part)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def default_out(profile: str | None, data: str | None, teacher: str | None) -> Path:
    """The deterministic default ``--out``: ``runs/default`` for the embedded default, else
    ``runs/<profile>-<data>-<teacher>`` from the names given (so ``--resume`` needs no --out)."""
    if profile is None and data is None and teacher is None:
        return Path("runs/default")
    parts = [profile or "host-cpu", Path(data).stem if data else "mnist-subset",
             Path(teacher).stem if teacher else "builtin"]
    slug = "-".join(parts)
    return Path("runs") / "".join(c if c.isalnum() or c in "-_." else "_" for c in slug)


def lock_run(run: RunDir) -> RunLock:
    """Take the run's exclusive lock (:func:`edgekd.core.runfolder.acquire`: ``.lock``,
    ``fcntl.flock``, never through a symbolic link), held until ``run.release()`` or the end
    of the process. A folder another process holds is refused in one line naming its pid."""
    return acquire(run.root)


def _holds_files(root: Path) -> bool:
    """Whether ``root`` holds anything but the lock and temp files of an interrupted start."""
    return any(p.name != LOCK_FILE and not p.match(TEMP_GLOB) for p in root.iterdir())


def open_run(root: str | Path, run_identity: dict, *, resume: bool,
             command: list[str] | None = None) -> tuple[RunDir, bool]:
    """Create ``root`` for a new run, or reopen it to continue the same run; lock it.

    Returns ``(run_dir, resumed)``; ``run_dir.release()`` (or the process's end) frees the
    lock. Refuses (EdgekdError, one line) a folder another process works on, a folder that
    holds a different run (naming what differs), a damaged run.json, or a non-empty folder
    that holds no run at all. Without ``--resume`` an existing identical run is refused too,
    so a finished run is never touched by accident; with it, the run continues.
    """
    run = RunDir(Path(root))
    if run.root.exists() and not run.root.is_dir():
        raise EdgekdError(f"--out {run.root} is a file: pass a folder path")
    try:
        run.root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgekdError(f"--out {run.root} cannot be created ({error.strerror}): pass a "
                          "folder on a writable disk") from None
    run.hold(lock_run(run))
    try:
        run.check_tree()
        remove_temp_files(run.root)
        resumed = _reopen(run, run_identity, resume=resume) if _holds_files(run.root) else False
        if not resumed:
            write_doc(RUN, run.run_json, {
                "command": list(command if command is not None else sys.argv),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "versions": versions(),
                "identity": run_identity,
            })
    except BaseException:
        run.release()
        raise
    return run, resumed


def _reopen(run: RunDir, run_identity: dict, *, resume: bool) -> bool:
    if not run.run_json.exists():
        raise EdgekdError(f"--out {run.root} is not empty and holds no edgekd run (no run.json): "
                          "pass a new or empty folder, or restore its run.json")
    old = run.manifest()
    diff = differences(old.get("identity", {}), run_identity)
    if diff:
        verb = "cannot resume" if resume else "holds a different run"
        again = (f" (its options: edgekd compress --config {run.run_json} --out {run.root} --resume)"
                 if "options" in old else "")
        raise EdgekdError(f"--out {run.root} {verb}: {'; '.join(diff)}; pass a new --out "
                          f"or the same teacher, data, budget and options{again}")
    if not resume:
        raise EdgekdError(f"--out {run.root} already holds this run: add --resume to "
                          "continue it, or pass a new --out")
    return True


def run_folder(config: "CompressConfig") -> Path:
    """``--out``, or the default folder (runs/default, runs/PROFILE-DATA-TEACHER) numbered like
    Ultralytics' runs: a rerun writes a new runs/default2, runs/default3 ... instead of
    refusing, and ``--resume`` continues the latest of them. An explicit ``--out`` is used as
    given (and refused when it holds another run)."""
    if config.out:
        return Path(config.out)
    base = default_out(config.profile, config.data, config.teacher)

    def numbered(i: int) -> Path:
        return base if i == 1 else base.with_name(f"{base.name}{i}")

    def occupied(path: Path) -> bool:
        return path.exists() and (not path.is_dir() or any(path.iterdir()))

    i = 1
    while occupied(numbered(i)):
        i += 1
    return numbered(max(1, i - 1)) if config.resume else numbered(i)


def run_folder_line(config: "CompressConfig", out: Path) -> str:
    """The line a run starts with: which folder it writes and why, and for a numbered rerun
    how to continue the previous run instead."""
    if config.out:
        return f"run folder: {out} (--out{', resumed' if config.resume else ''})"
    if config.resume:
        return f"run folder: {out} (--resume without --out: the latest default folder)"
    base = default_out(config.profile, config.data, config.teacher)
    if out == base:
        return f"run folder: {out} (the default folder)"
    number = int(out.name[len(base.name):])
    previous = base if number == 2 else base.with_name(f"{base.name}{number - 1}")
    return (f"run folder: {out} (a new run: {previous} already holds one; to continue that one "
            f"instead, stop this (Ctrl-C) and add --resume --out {previous} to the command)")
