"""Number formatting, the one implementation of the rules listed in edgekd/core/fmt.py, which
reuses these functions (the kit never depends on edgekd, edgekd may use the kit). Accuracy
``97.20%``, latency in ms with 3 decimals below 100 ms, throughput to 3 significant digits
(``30,900``)."""

from __future__ import annotations

import math

MISSING = "-"


def percent(fraction: float | None) -> str:
    """``0.972 -> "97.20%"``."""
    return MISSING if fraction is None else f"{100.0 * float(fraction):.2f}%"


def ms(value: float | None) -> str:
    """A latency in ms without the unit: ``0.0321 -> "0.032"``, ``123.45 -> "123.5"``."""
    if value is None:
        return MISSING
    value = float(value)
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits (``13028.8 -> 13000.0``)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def rate(value: float | None) -> str:
    """A throughput (FPS, samples/s): ``13028.8 -> "13,000"``, ``95.44 -> "95.4"``."""
    if value is None:
        return MISSING
    rounded = significant(float(value))
    if not math.isfinite(rounded):
        return str(rounded)
    return f"{rounded:,.0f}" if abs(rounded) >= 100 else f"{rounded:g}"
