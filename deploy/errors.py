"""The deploy kit's one user-facing error.

A :class:`DeployError` carries one line, ``what is wrong: what to do``. ``python -m deploy``
prints ``error: <line>`` and exits with status 2; anything else that escapes is a bug.
This module is deliberately dependency-free (the kit runs on JetPack's bare Python).
"""

from __future__ import annotations


class DeployError(Exception):
    """Bad input or a missing runtime, explained in one line (exit status 2)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
