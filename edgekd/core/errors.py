"""User-facing errors.

An :class:`EdgekdError` carries one line that says what is wrong and what to do. The CLI
prints it (no traceback unless ``--verbose``) and exits with status 2. Anything else that
escapes is a bug and is shown with its traceback.
"""

from __future__ import annotations

import errno


class EdgekdError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Write the message as ``what is wrong: what to do``, e.g.
    ``profile 'x.toml': unknown key 'budget.foo'; remove it or check the spelling``.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line



#: errno values that mean "the disk or folder does not take the write", not a bug.
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
                errno.ENOTDIR}


def disk_error(error: BaseException) -> EdgekdError | None:
    """The one-line error for an OSError of a full, read-only or forbidden disk (None for any
    other error): the CLI shows it instead of a traceback, and nothing already written is lost
    (every write is atomic)."""
    if not isinstance(error, OSError) or error.errno not in _DISK_ERRNOS:
        return None
    where = f" '{error.filename}'" if error.filename else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = ("free some space (or pass an --out on another disk), then run the same command "
               "again (with --resume for compress)")
    elif error.errno == errno.ENOTDIR:
        fix = "that is a file where a folder belongs: move it away, or pass another --out"
    else:
        fix = "pass an --out in a folder you can write to"
    return EdgekdError(f"cannot write{where} ({error.strerror}): {fix}")
