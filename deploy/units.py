"""Shape parsing, the one implementation for the deploy kit and edgekd (stdlib only; edgekd's
``edgekd.core.units.parse_shape`` wraps it, since deploy may not import edgekd)."""

from __future__ import annotations

import re

_SHAPE_SPLIT_RE = re.compile(r"[xX,\s]+")

__all__ = ["parse_shape"]


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x28x28"`` (also ``"1,28,28"``, ``"3X224X224"`` or ``"(3, 32, 32)"``) -> ``(1, 28, 28)``.

    Raises ValueError (with what is wrong) unless every dimension is a positive integer.
    """
    body = text.strip().strip("()[]").strip()
    parts = [p for p in _SHAPE_SPLIT_RE.split(body) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"shape {text!r} is not a list of integers")
    dims = tuple(int(p) for p in parts)
    if any(d <= 0 for d in dims):
        raise ValueError(f"shape {text!r} has a dimension <= 0")
    return dims
