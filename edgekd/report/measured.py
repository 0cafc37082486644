"""A model's figures in the report: its latency on the host and on the target (measured, else
the latency model's prediction), found by the ONNX file's sha256 in the run's measurements, and
its size on disk."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from edgekd.core.fileio import sha256_file

__all__ = ["model_latency", "model_size_mb"]


def _latency_from(measurement: dict) -> dict[str, Any]:
    forced = measurement.get("forced")  # merged with --force although it does not match the profile
    return {"ms": float(measurement["latency_ms"]["median"]),
            "label": "measured, forced" if forced else "measured", **({"forced": forced} if forced else {}),
            "device": measurement.get("device", "?"), "backend": measurement.get("backend", "?"),
            "precision": measurement.get("precision", "fp32"),
            "batch": int(measurement.get("batch", 1)), **_rounds(measurement)}


def _rounds(measurement: dict) -> dict[str, Any]:
    """The per-round medians of an interleaved measurement and the session that timed the
    models together (nothing for a single-model or a device measurement without them)."""
    rounds, session = measurement.get("round_ms"), (measurement.get("protocol") or {}).get("session")
    if not isinstance(rounds, list) or not rounds or not isinstance(session, str):
        return {}
    try:
        values = [float(v) for v in rounds]
        median = float(measurement["latency_ms"]["median"])
    except (TypeError, ValueError, KeyError):
        return {}
    # the rounds come from the same samples as the median: a file whose rounds disagree with
    # its latency was edited by hand (e.g. a host file relabelled as a device's) and is taken
    # without them
    if min(values) <= 0 or not 0.5 <= statistics.median(values) / median <= 2.0:
        return {}
    return {"rounds": values, "session": session}


def model_latency(onnx: Path | None, measured: dict[str, dict[str, dict]],
                  predicted: dict | None, target_is_host: bool) -> dict[str, dict | None]:
    """``{"host": ..., "target": ...}``, each ``{"ms", "label", "device", "batch", ...}`` or None.
    ``measured`` maps ``"host"``/``"target"`` to the measurements by model sha256; a target that is
    this host takes the host's figure, and a target without a measurement takes ``predicted``."""
    sha = sha256_file(onnx) if onnx is not None and onnx.exists() else None
    host = _latency_from(measured["host"][sha]) if sha in measured["host"] else None
    if sha in measured["target"]:
        target = _latency_from(measured["target"][sha])
        if target_is_host:  # the target is a CPU like this one: the merged figure is the host's
            host = dict(target)
    elif target_is_host and host is not None:
        target = dict(host)
    elif predicted:
        target = {"ms": float(predicted["ms"]), "label": predicted.get("label", "predicted"),
                  "device": predicted.get("device", "model"), "batch": int(predicted.get("batch", 1))}
    else:
        target = None
    return {"host": host, "target": target}


def model_size_mb(onnx: Path, params: int | None) -> float | None:
    """The ONNX file's size with its external data, in MB; 4 bytes per parameter when the file
    is missing (None without parameters)."""
    if onnx.exists():
        size = onnx.stat().st_size
        data = onnx.with_name(onnx.name + ".data")
        if data.exists():
            size += data.stat().st_size
        return round(size / 1e6, 3)
    return None if params is None else round(params * 4 / 1e6, 3)
