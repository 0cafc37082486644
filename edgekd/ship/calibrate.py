"""``edgekd calibrate``: measure a set of students once per device and fit its kernel table.

On the host (``--profile host-cpu``): a stratified set of students from every calibrated family
(``Family.calibrated``)
(MACs spread on a log scale) is exported to ONNX, timed with the deploy kit under the
measurement protocol (every model for at least ``min_seconds``, fixed intra-op threads,
spinning off, rounds interleaved across the models: ``python -m deploy bench A B ...
--min-seconds``), and :func:`edgekd.search.kernel_model.fit_kernel_table` fits the table.

For another device: ``--export DIR`` writes the same students plus ``index.json`` (sha256 of
each ONNX -> its spec) and ``commands.sh``; run those commands on the device with the deploy
kit, bring the Measurement (or ``deploy profile``) JSON files back into DIR, and
``--from DIR`` fits the table from them, matched to the specs through the sha256 they record.
Layer profiles (``python -m deploy profile``) also give per-kernel times
(:mod:`edgekd.search.op_times`): ``--from DIR`` applies them on top of the whole-model fit, and
``--from PROFILE.json`` builds the table from them alone, or updates the one already there.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, atomic_write_text, read_json, sha256_file
from edgekd.search.families import calibrated_families
from edgekd.search.kernel_model import KernelTable, fit_kernel_table
from edgekd.search.grid import enumerate_specs
from edgekd.search.space import SpaceConfig, StudentSpec

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.profiles import DeviceProfile

INDEX_FORMAT = "edgekd.calibration-set/1"


def calibration_students(input_shape: Sequence[int], classes: int, n: int, *, seed: int = 0,
                         min_macs: float = 3e5, max_macs: float = 6e7,
                         families: Sequence[str] | None = None) -> list[StudentSpec]:
    """``n`` students stratified over family and log10(MACs) in [min_macs, max_macs], from a
    grid with kernels 3 and 5, stem strides 1 and 2 and widths in multiples of 8; ``families``
    default: the calibrated ones (:func:`edgekd.search.families.calibrated_families`)."""
    from edgekd.search.cost import spec_totals

    families = calibrated_families() if families is None else tuple(families)
    config = SpaceConfig(families=families, max_depth=13, kernels=(3, 5),
                         stem_strides=(1, 2), width_multiple=8, base_widths=(8, 16, 24, 32, 48),
                         growths=(1.0, 2.0), se=(False, True))
    rng = random.Random(seed)
    bins: dict[tuple[str, int], list[StudentSpec]] = {}
    grid = enumerate_specs(input_shape, classes, config)
    # cost a random sample only: counting every block of the full grid takes a minute
    for spec in rng.sample(grid, min(len(grid), 30 * n)):
        macs = spec_totals(spec)[0]
        if min_macs <= macs <= max_macs:
            bins.setdefault((spec.family, int(4 * math.log10(macs))), []).append(spec)
    for group in bins.values():
        rng.shuffle(group)
    # round robin over families, and within a family over its MAC bins in a shuffled order
    orders = {f: [key for key in sorted(bins) if key[0] == f] for f in families}
    for keys in orders.values():
        rng.shuffle(keys)
    chosen: list[StudentSpec] = []
    turn = 0
    while len(chosen) < n and any(bins.values()):
        for keys in orders.values():
            live = [key for key in keys if bins[key]]
            if live and len(chosen) < n:
                chosen.append(bins[live[turn % len(live)]].pop())
        turn += 1
    return chosen


def export_set(specs: Iterable[StudentSpec], folder: Path, *, max_batch: int = 64,
               exporter: str = "torchscript") -> dict[str, dict]:
    """Export each spec to ``folder/ID.onnx`` (dynamic batch) and write ``index.json``
    (sha256 -> spec); returns the index entries. The TorchScript exporter by default: the
    runtime runs the same fused kernels as from the dynamo exporter's graph (ONNX Runtime's
    optimised graphs have the same convolutions; GlobalAveragePool instead of ReduceMean), at
    0.1-0.3 s per student instead of 5-12 s (:func:`edgekd.ship.export.export_onnx`)."""
    import torch

    from edgekd.ship.export import export_onnx
    from edgekd.search.space import build

    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {}
    for spec in specs:
        path = folder / f"{spec.id}.onnx"
        if not path.is_file():
            torch.manual_seed(0)
            export_onnx(build(spec).eval(), spec.input, path, batch=1,
                        dynamic_batch=(1, 1, max_batch), metadata={"edgekd.spec": spec.to_json()},
                        exporter=exporter)
        entries[sha256_file(path)] = {"id": spec.id, "file": path.name, "spec": spec.to_dict()}
    atomic_write_json(folder / "index.json", {"format": INDEX_FORMAT, "models": entries})
    return entries


def _read_index(folder: Path) -> dict[str, dict]:
    path = folder / "index.json"
    if not path.is_file():
        raise EdgekdError(f"{folder} has no index.json: give the folder 'edgekd calibrate "
                          "--export' wrote (with the measurements copied back into it)")
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise EdgekdError(f"{path} is not an edgekd calibration set (format {INDEX_FORMAT}): "
                          "export the set again with 'edgekd calibrate --export'")
    return data["models"]


def measurement_ms(measurement: dict) -> float:
    """The latency a Measurement or a layer profile (its total) reports, in ms: the thread
    CPU time of the best round (``cpu_ms.min``, one ORT thread on a CPU) when the Measurement
    has it, else its named statistic (else the median). On a shared host the wall clock
    measures the load: timed twice, batch-32 wall-clock medians agreed within +-10% for 43% of
    the students, ``cpu_ms.min`` for 98% (benchmarks/results/latency_predictor.md)."""
    cpu = measurement.get("cpu_ms")
    if isinstance(cpu, dict) and cpu.get("min"):
        return float(cpu["min"])
    latency = measurement.get("latency_ms")
    if isinstance(latency, dict):
        return float(latency[measurement.get("statistic", "median")])
    return float(latency)


def rows_from_folder(folder: Path) -> list[tuple[StudentSpec, int, float]]:
    """``(spec, batch, ms)`` from every Measurement / layer-profile JSON in ``folder`` whose
    sha256 is in its ``index.json``."""
    index = _read_index(folder)
    rows = []
    for path in sorted(folder.rglob("*.json")):
        if path.name == "index.json":
            continue
        try:
            data = read_json(path)
        except (OSError, ValueError, EdgekdError):
            continue
        if not isinstance(data, dict) or data.get("sha256") not in index or "latency_ms" not in data:
            continue
        rows.append((StudentSpec.from_dict(index[data["sha256"]]["spec"]), int(data["batch"]),
                     measurement_ms(data)))
    if not rows:
        raise EdgekdError(f"no measurements of the calibration set found in {folder}: run the "
                          "commands in commands.sh on the device and copy the JSON files back")
    return rows


def layer_profiles_from(path: Path) -> list[tuple[StudentSpec, dict]]:
    """``(spec, layer profile)`` for a ``python -m deploy profile`` JSON file, or for every one
    in a folder. The spec comes from the folder's ``index.json`` (by sha256) when there is
    one, else from the ``edgekd.spec`` metadata of the ONNX file the profile names, beside it."""
    from edgekd_deploy.onnxmeta import SPEC, read_onnx_header
    from edgekd.search.latency import LAYER_PROFILE_FORMAT

    folder = path if path.is_dir() else path.parent
    index = _read_index(folder) if (folder / "index.json").is_file() else {}
    files = sorted(folder.rglob("*.json")) if path.is_dir() else [path]
    found = []
    for file in files:
        try:
            data = read_json(file)
        except (OSError, ValueError, EdgekdError):
            if path.is_dir():
                continue
            raise EdgekdError(f"{file} is not valid JSON: give the file 'python -m deploy "
                              "profile --out' wrote") from None
        if not isinstance(data, dict) or data.get("format") != LAYER_PROFILE_FORMAT:
            if path.is_dir():
                continue
            raise EdgekdError(f"{file} is not a layer profile (format {LAYER_PROFILE_FORMAT}): "
                              "make it with 'python -m deploy profile MODEL --out FILE'")
        if data.get("sha256") in index:
            found.append((StudentSpec.from_dict(index[data["sha256"]]["spec"]), data))
            continue
        onnx = folder / Path(str(data.get("model", ""))).name  # beside it, never elsewhere
        beside = onnx.suffix == ".onnx" and onnx.is_file()
        if beside and sha256_file(onnx) not in (data.get("sha256"), data.get("file_sha256")):
            if path.is_dir():  # another model's profile: its kernels were never measured here
                continue
            raise EdgekdError(f"{file} profiled a model with sha256 {str(data.get('sha256'))[:12]}, "
                              f"not {onnx.name} beside it ({sha256_file(onnx)[:12]}): put the "
                              "ONNX file that was profiled beside it")
        spec = read_onnx_header(onnx).metadata.get(SPEC) if beside else None
        if spec is None:
            if path.is_dir():
                continue
            raise EdgekdError(f"cannot tell which student {file} profiled: put the edgekd-exported "
                              f"{onnx.name or 'ONNX file'} beside it, or use the folder "
                              "'edgekd calibrate --export' wrote")
        found.append((StudentSpec.from_json(spec), data))
    return found


def apply_layer_profiles(table: KernelTable | None, items: list[tuple[StudentSpec, dict]],
                         profile: "DeviceProfile", *, source: str = "") -> tuple[KernelTable, int, int]:
    """Build (``table`` None) or update a kernel table from layer profiles' per-kernel times;
    returns it with the number of profiles matched and skipped (:mod:`edgekd.search.op_times`)."""
    from edgekd.search.op_times import match_profile, table_from_kernel_times

    precision = profile.runtime.precision
    for _spec, data in items:
        if str(data.get("precision", precision)) != precision:
            raise EdgekdError(f"layer profile of {data.get('model')} was measured at "
                              f"{data.get('precision')}, not {precision} as profile "
                              f"'{profile.name}' runs: profile the {precision} model")
    matched = [m for m in (match_profile(spec, data, precision) for spec, data in items) if m is not None]
    if not matched:
        raise EdgekdError("no layer profile matched its student kernel by kernel: profile "
                          "edgekd-exported students with 'python -m deploy profile'")
    table = table_from_kernel_times(matched, profile, base=table, source=source)
    return table, len(matched), len(items) - len(matched)


def write_commands(folder: Path, entries: dict[str, dict], batches: Sequence[int],
                   profile: "DeviceProfile") -> Path:
    """``commands.sh`` for the device: build engines (TensorRT) and bench every model. Every line
    completes under ``set -e`` on TensorRT 8.5 to 11.x: an int8 profile builds Q/DQ copies made
    here (``ID.int8.onnx``; a model without Q/DQ would need calibration images on the device), and
    an fp16 one gets ``ID.fp16.onnx`` beside each model, which ``deploy build --fp16`` builds on
    TensorRT 11 (no FP16 builder flag there)."""
    files = sorted(e["file"] for e in entries.values())
    lines = ["#!/bin/sh", "# run from this folder on the device, with the deploy kit on PYTHONPATH", "set -e"]
    from edgekd_deploy.backends import get_backend

    backend = get_backend(profile.runtime.backend)
    models = files
    if backend.build is not None:  # TensorRT: build each engine with the calibration's batch range
        precision = profile.runtime.precision
        sources = _precision_copies(folder, entries, precision)
        flag = {"fp16": " --fp16", "int8": " --int8", "fp32": ""}[precision]
        top = max(batches)
        models = [f.replace(".onnx", backend.suffixes[0]) for f in files]
        for file, source, engine in zip(files, sources, models):
            sample = "x".join(map(str, _input_of(entries, file)))
            lines.append(f"python3 -m deploy build {source} --out {engine} --min 1x{sample} "
                         f"--opt {top}x{sample} --max {top}x{sample}{flag}")
    for batch in batches:
        lines.append(f"python3 -m deploy bench {' '.join(models)} --batch {batch} "
                     "--min-seconds 0.5 --rounds 5 --threads 1 --no-spin --out .")
    return atomic_write_text(folder / "commands.sh", "\n".join(lines) + "\n")


def _precision_copies(folder: Path, entries: dict[str, dict], precision: str) -> list[str]:
    """The file each engine is built from: the Q/DQ copy for int8 (calibrated on standard-normal
    inputs: the calibration students are untrained and only timed), the FP32 file otherwise,
    with its FP16 copy beside it for fp16 (what TensorRT 11 builds)."""
    import numpy as np

    files = sorted(e["file"] for e in entries.values())
    if precision == "fp16":
        from edgekd.ship.fp16 import convert_fp16

        for file in files:
            convert_fp16(folder / file, folder / file.replace(".onnx", ".fp16.onnx"))
        return files
    if precision != "int8":
        return files
    from edgekd.ship.int8 import quantize_int8

    sources = []
    for file in files:
        rng = np.random.default_rng(0)
        calib = rng.standard_normal((64, *_input_of(entries, file))).astype(np.float32)
        out = folder / file.replace(".onnx", ".int8.onnx")
        quantize_int8(folder / file, out, calib, ([0.0], [1.0]))
        sources.append(out.name)
    return sources


def _input_of(entries: dict[str, dict], file: str) -> list[int]:
    return next(e["spec"]["input"] for e in entries.values() if e["file"] == file)


def measure_on_host(folder: Path, entries: dict[str, dict], batches: Sequence[int], *,
                    min_seconds: float = 0.5, rounds: int = 5, threads: int = 1, chunk: int = 25,
                    say: Callable[[str], None] = lambda _t: None) -> list[tuple[StudentSpec, int, float]]:
    """Time every exported student on this host under the protocol (module docstring)."""
    from edgekd.ship.measure import run_deploy

    files = sorted(e["file"] for e in entries.values())
    for batch in batches:
        for start in range(0, len(files), chunk):
            part = files[start:start + chunk]
            say(f"timing {len(part)} students at batch {batch} ({start + len(part)}/{len(files)})")
            run_deploy(["bench", *[str((folder / f).resolve()) for f in part], "--batch", str(batch),
                        "--min-seconds", str(min_seconds), "--rounds", str(rounds),
                        "--threads", str(threads), "--no-spin", "--out", str((folder / f"b{batch}").resolve())],
                       timeout=300 + 10 * len(part) * max(1.0, min_seconds) * max(1, batch / 8))
    return rows_from_folder(folder)


def fit_and_save(rows: list[tuple[StudentSpec, int, float]], profile: "DeviceProfile",
                 out: Path, *, device: str = "", source: str = "") -> KernelTable:
    table = fit_kernel_table(rows, profile, device=device, source=source)
    table.save(out)
    table.source = str(out)
    return table
