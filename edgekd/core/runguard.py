"""Guarding a run folder while a command writes into it: the lock, and the shape of the tree.

**The lock.** One process at a time writes into a run: ``.lock`` in the run folder, held with
``fcntl.flock`` for as long as the command works on the run (a kill releases it). It is opened
with ``O_NOFOLLOW``, so a ``.lock`` that is a symbolic link (to a file outside the run) is refused,
never truncated or written through. A second process is refused in one line naming the first
one's pid. On release the file is removed (while still held), so a finished run keeps no
``.lock`` with a dead pid; a process that opened the old file meanwhile sees that the path no
longer names the file it locked and starts over (the usual lock-file protocol).

**The tree.** Before a command writes into a run, :func:`check_tree` refuses in one line a
symbolic link anywhere in the run that leads outside it (``report/`` linked to another folder
would have the report written there) and a file where the run has a folder (``export``,
``trials/ID``, ...), so a write never follows a link out of the run and never fails later with
``FileExistsError``.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from edgekd.core.errors import EdgekdError

_ATTEMPTS = 5


@dataclass
class RunLock:
    """A held run lock: the lock file's path and its open descriptor."""

    path: Path
    fd: int

    def release(self) -> None:
        """Remove the lock file (still held, so no other process is inside) and close it."""
        if self.fd < 0:
            return
        try:
            if _same_file(self.path, self.fd):
                self.path.unlink()
        except OSError:
            pass  # a read-only folder keeps its lock file; the lock itself ends with close
        finally:
            os.close(self.fd)
            self.fd = -1


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise EdgekdError(f"{path} is a symbolic link: a run's lock file must be a plain file "
                              f"in the run; remove it, then run the command again") from None
        if error.errno == errno.EISDIR:
            raise EdgekdError(f"{path} is a folder, not the run's lock file: remove it, then run "
                              "the command again") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise EdgekdError(f"{path} is not a plain file: remove it, then run the command again")
    return fd


def acquire_file(path: str | Path) -> RunLock:
    """Take the lock file ``path`` of the run folder it is in (see the module docstring;
    :meth:`edgekd.core.runfolder.RunDir.lock` names it); EdgekdError naming the holder's pid
    when another process has it."""
    import fcntl

    path = Path(path)
    root = path.parent
    for _ in range(_ATTEMPTS):
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise EdgekdError(f"{root} is in use by another edgekd process (pid {pid}): wait for "
                              "it to finish, or stop it and run again (with --resume for "
                              "compress)") from None
        if _same_file(path, fd):  # else the holder removed it on release: open the new one
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
            return RunLock(path, fd)
        os.close(fd)
    raise EdgekdError(f"{path} keeps being replaced by other processes: run the command again "
                      "when they are done")


def check_tree(root: str | Path, folders: Iterable[str], files: Iterable[str],
               parents: Iterable[str] = ()) -> None:
    """Refuse (one line) a run whose tree would lead a write outside it or into a file where a
    folder belongs: a symbolic link anywhere under ``root`` that resolves outside it, one of its
    ``folders`` (or an entry of a ``parents`` folder, ``trials/ID``) that is not a folder, one of
    its ``files`` that is one. :meth:`edgekd.core.runfolder.RunDir.check_tree` names them."""
    root = Path(root)
    real = root.resolve()
    for name in folders:
        _expect(root / name, folder=True, root=root)
    for name in files:
        _expect(root / name, folder=False, root=root)
    for parent in parents:
        if (root / parent).is_dir():
            for entry in (root / parent).iterdir():
                _expect(entry, folder=True, root=root)
    for folder, dirs, files in os.walk(root):  # never follows a link
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                target = path.resolve()
                if target != real and real not in target.parents:
                    raise EdgekdError(f"{path} is a symbolic link that leads outside the run "
                                      f"(to {target}): edgekd never writes through it; replace "
                                      "it with a plain file or folder, or pass a new --out")


def _expect(path: Path, *, folder: bool, root: Path) -> None:
    if not os.path.lexists(path) or path.is_symlink():  # links: checked by the walk
        return
    if folder and not path.is_dir():
        raise EdgekdError(f"{path} is a file where the run has a folder: move it away (or pass "
                          f"a new --out), then run the command again")
    if not folder and path.is_dir():
        raise EdgekdError(f"{path} is a folder where the run has a file: move it away (or pass "
                          f"a new --out), then run the command again")
