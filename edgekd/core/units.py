"""Human-friendly counts and shapes for the command line: ``30M`` MACs, ``1x28x28`` inputs.

Counts use decimal SI suffixes, as papers quote multiply budgets ("30M and 107M" in FitNets):
``K`` = 10^3, ``M`` = 10^6, ``G`` = 10^9 (case-insensitive). Plain integers are accepted too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from edgekd_deploy import units as deploy_units
from edgekd.core.errors import EdgekdError

#: Decimal multipliers, largest first (the order :func:`format_count` tries them in).
COUNT_SUFFIXES: dict[str, int] = {"G": 10**9, "M": 10**6, "K": 10**3}

_COUNT_RE = re.compile(r"^\s*((?:[0-9][0-9_]*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]?)\s*$")


def parse_count(text: str | int) -> int:
    """Parse a non-negative count such as ``"30M"``, ``"1.5k"``, ``"2G"``, ``"30000000"``.

    The value times its suffix must be a whole number (``"1.5K"`` = 1500 is fine,
    ``"1.2345K"`` is not). Raises :class:`EdgekdError` on anything else (``"12Q"``, ``"-3M"``).
    """
    if isinstance(text, bool):
        raise EdgekdError(f"count {text!r} is not a number: give e.g. 30M, 1.5K or 30000000")
    if isinstance(text, int):
        if text < 0:
            raise EdgekdError(f"count {text} is negative: give a count >= 0, e.g. 30M")
        return text
    match = _COUNT_RE.match(str(text))
    if match is None:
        raise EdgekdError(f"count {text!r} is not a number with an optional K/M/G suffix: "
                          "give e.g. 30M, 1.5K or 30000000")
    number, suffix = match.groups()
    scale = 1
    if suffix:
        if suffix.upper() not in COUNT_SUFFIXES:
            raise EdgekdError(f"count {text!r} has unknown suffix {suffix!r}: use K (10^3), "
                              "M (10^6) or G (10^9), e.g. 30M")
        scale = COUNT_SUFFIXES[suffix.upper()]
    value = float(number.replace("_", "")) * scale
    if not math.isfinite(value):
        raise EdgekdError(f"count {text!r} is too large: give e.g. 30M")
    rounded = round(value)
    if abs(value - rounded) > 1e-6 * max(1.0, abs(value)):
        raise EdgekdError(f"count {text!r} is not a whole number ({value:g}): "
                          "give a whole count, e.g. 1.5K or 1234")
    return int(rounded)


def format_count(count: int) -> str:
    """Format a count with one decimal and a K/M/G suffix: 30000000 -> ``"30.0M"``.

    Counts below 1000 are printed as plain integers (``"999"``). The unit is chosen after
    rounding, so 999950 prints as ``"1.0M"`` rather than ``"1000.0K"``.
    """
    count = int(count)
    sign = "-" if count < 0 else ""
    magnitude = abs(count)
    if magnitude < 1000:
        return f"{sign}{magnitude}"
    for suffix, scale in COUNT_SUFFIXES.items():
        scaled = round(magnitude / scale, 1)
        if scaled >= 1.0:
            return f"{sign}{scaled:.1f}{suffix}"
    return f"{sign}{magnitude}"  # pragma: no cover - unreachable: 1000 <= magnitude -> K


def parse_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """Parse an input shape such as ``"1x28x28"`` (also ``"1,28,28"`` or ``"(3, 32, 32)"``).

    Every dimension must be a positive integer. A sequence of ints is validated and returned
    as a tuple, so callers may pass either form.
    """
    if isinstance(text, str):
        try:
            return deploy_units.parse_shape(text)  # the one parser (deploy cannot import edgekd)
        except ValueError as error:
            fix = ("every dimension must be a positive integer, e.g. 1x28x28" if "<= 0" in str(error)
                   else "write it as CxHxW, e.g. 1x28x28")
            raise EdgekdError(f"{error}: {fix}") from None
    else:
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in text):
            raise EdgekdError(f"shape {tuple(text)!r} is not a list of integers: "
                              "write it as CxHxW, e.g. 1x28x28")
        dims = tuple(text)
    if not dims or any(d <= 0 for d in dims):
        raise EdgekdError(f"shape {text!r} has a dimension <= 0: every dimension must be a "
                          "positive integer, e.g. 1x28x28")
    return dims
