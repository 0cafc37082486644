"""``edgekd search`` (enumerate, cost and shortlist students for a profile) and
``edgekd calibrate`` (time students and fit the kernel latency table)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import click

from edgekd.cli.base import default_of, verbose_option
from edgekd.cli.cli_options import FAMILY_HELP, parse_families
from edgekd.core.errors import EdgekdError
from edgekd.search.config import SearchConfig
from edgekd.search.families import calibrated_families
from edgekd.search.space import SpaceConfig

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.profiles import DeviceProfile
    from edgekd.search.kernel_model import KernelTable

__all__ = ["calibrate", "search"]


def _joined(values: Iterable[int], sep: str = ",") -> str:
    """A tuple default as the option's text: ``(3, 5)`` -> ``"3,5"``."""
    return sep.join(str(v) for v in values)


def _int_list(text: str, option: str) -> tuple[int, ...]:
    """``"3,5"`` -> ``(3, 5)``; anything else is a one-line error naming ``option``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise EdgekdError(f"{option} {text!r} is not a comma-separated list of integers: "
                          "write e.g. 3,5")
    return values


@click.command()
@click.option("--profile", "profile_name", default=default_of(SearchConfig, "profile"), show_default=True,
              help="Device profile: a shipped name (edgekd profiles list) or a .toml path.")
@click.option("--input", "input_text", default=_joined(default_of(SearchConfig, "input_shape"), "x"),
              show_default=True, help="Input shape CxHxW.")
@click.option("--classes", default=default_of(SearchConfig, "classes"), show_default=True,
              type=click.IntRange(min=1), help="Number of output classes.")
@click.option("--max-macs", default=None,
              help="MAC budget per sample, with K/M/G suffix (default: the profile's).")
@click.option("--latency-ms", default=None, type=float,
              help="Latency budget in ms at the profile's batch (default: the profile's).")
@click.option("--family", default=None, help=FAMILY_HELP)
@click.option("--max-depth", default=default_of(SpaceConfig, "max_depth"), type=click.IntRange(min=3),
              help="Deepest student to enumerate, in conv layers [{}; {} from {} px].".format(
                  *default_of(SpaceConfig, "depth_limits"), default_of(SpaceConfig, "scaled_from")))
@click.option("--kernel", "kernels", default=_joined(default_of(SpaceConfig, "kernels")), show_default=True,
              help="Conv kernel sizes to enumerate, comma-separated (e.g. 3,5).")
@click.option("--stem-stride", "stem_strides", default=_joined(default_of(SpaceConfig, "stem_strides")),
              show_default=True,
              help="Stem strides below 64 px, comma-separated: 2 halves the input first "
                   "(from 64 px stems are stride 2).")
@click.option("--shortlist", default=default_of(SearchConfig, "shortlist"), show_default=True,
              type=click.IntRange(min=1),
              help="How many students to shortlist for training (spread over depths).")
@click.option("--measure", is_flag=True, default=default_of(SearchConfig, "measure"),
              help="Measure the shortlisted students on this host (host-cpu profile only).")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None,
              help="Calibration JSON (from benchmarks/latency_predictor.py) to use instead of "
                   "the raw roofline prediction.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder for candidates.jsonl and search.json "
                   "[default: runs/search-PROFILE].")
@verbose_option
def search(profile_name: str, input_text: str, classes: int, max_macs: str | None,
           latency_ms: float | None, family: str | None, max_depth: int, kernels: str,
           stem_strides: str, shortlist: int, measure: bool,
           calibration: str | None, out_dir: str | None) -> None:
    """Enumerate thin, deep students that fit a device budget (MACs and latency), find the
    Pareto front over latency, parameters and depth, and shortlist students for training.
    Prints the shortlist and writes every feasible student to OUT/candidates.jsonl; each
    latency is labelled measured, calibrated or predicted.

    \b
    Example:
        edgekd search --profile host-cpu --input 1x28x28 --classes 10 --max-macs 2M --out runs/s
        edgekd search --profile jetson-orin-nano-8gb --input 3x32x32 --classes 100 \\
            --latency-ms 0.5 --family plain --shortlist 6
        edgekd search --max-macs 1.5M --measure --out runs/host
    """
    from pathlib import Path

    from edgekd.inputs.profiles import load_profile
    from edgekd.cli.views import format_search
    from edgekd.search.search import default_cost_cache, search_candidates
    from edgekd.ship.measure import measured_latency
    from edgekd.core.units import parse_count, parse_shape

    profile = load_profile(profile_name)
    space = SpaceConfig(families=parse_families(family), max_depth=max_depth,
                        kernels=_int_list(kernels, "--kernel"),
                        stem_strides=_int_list(stem_strides, "--stem-stride"))
    config = SearchConfig(profile=profile_name, input_shape=parse_shape(input_text), classes=classes,
                          max_macs=parse_count(max_macs) if max_macs is not None else None,
                          latency_ms=latency_ms, shortlist=shortlist, measure=measure,
                          calibration=calibration, space=space)
    out = Path(out_dir) if out_dir else Path("runs") / f"search-{profile.name}"
    result = search_candidates(
        profile, config.input_shape, config.classes, max_macs=config.max_macs,
        latency_ms=config.latency_ms, shortlist=config.shortlist,
        measure=config.measure,
        measurer=lambda spec, folder, batch: measured_latency(spec, folder, batch=batch),
        calibration=config.calibration, out_dir=out, space=space,
        progress=lambda text: click.echo(text, err=True), cost_cache=default_cost_cache())
    click.echo(format_search(result))


@click.command()
@click.option("--profile", "profile_name", default="host-cpu", show_default=True,
              help="Device profile the table is for: a shipped name or a .toml path.")
@click.option("--input", "input_text", default="3x32x32", show_default=True,
              help="Input shape CxHxW of the calibration students.")
@click.option("--classes", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--students", default=60, show_default=True, type=click.IntRange(min=4),
              help=f"How many students to measure ({', '.join(calibrated_families())}; MACs 0.3M-60M).")
@click.option("--batch", "batches", default="1,32", show_default=True,
              help="Batch sizes to measure, comma-separated.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Only write the students, index.json and commands.sh here, for a device.")
@click.option("--from", "from_dir", type=click.Path(exists=True), default=None,
              help="Fit from the measurements brought back into this exported folder, or "
                   "build / update the table from one 'python -m deploy profile' JSON "
                   "(per-kernel times).")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the kernel table [default: next to the profile].")
@click.option("--min-seconds", default=0.5, show_default=True, type=click.FloatRange(min=0.05),
              help="Host: time each student at least this long (interleaved rounds).")
@click.option("--work", "work_dir", type=click.Path(file_okay=False), default=None,
              help="Host: folder for the exported students and measurements [default: a "
                   "folder under the cache].")
@verbose_option
def calibrate(profile_name: str, input_text: str, classes: int, students: int, batches: str,
              export_dir: str | None, from_dir: str | None, table_path: str | None,
              min_seconds: float, work_dir: str | None) -> None:
    """Measure a set of students once per device and fit its kernel-level latency table;
    search and compress then use it automatically and label latencies *calibrated*.

    \b
    Example:
        edgekd calibrate --profile host-cpu
        edgekd calibrate --profile jetson-orin-nano-8gb --export calib/   # copy to the device,
        edgekd calibrate --profile jetson-orin-nano-8gb --from calib/     # run commands.sh, back
        edgekd calibrate --profile jetson-orin-nano-8gb --from calib/ID.profile.json
    """
    from pathlib import Path

    from edgekd.ship import calibrate as calib
    from edgekd.core.cache import cache_root
    from edgekd.search.kernel_model import default_table_path
    from edgekd.inputs.profiles import load_profile
    from edgekd.search.search import HOST_PROFILE
    from edgekd.core.units import parse_shape

    profile = load_profile(profile_name)
    batch_list = _int_list(batches, "--batch")
    out = Path(table_path) if table_path else default_table_path(profile)
    if from_dir is not None and not Path(from_dir).is_dir():  # one layer profile
        _calibrate_from_layer_profile(profile, Path(from_dir), out)
        return
    if from_dir is not None:
        rows = calib.rows_from_folder(Path(from_dir))
        source = f"measurements in {from_dir}"
    else:
        specs = calib.calibration_students(parse_shape(input_text), classes, students)
        if export_dir is not None:
            entries = calib.export_set(specs, Path(export_dir), max_batch=max(batch_list))
            commands = calib.write_commands(Path(export_dir), entries, batch_list, profile)
            click.echo(f"wrote {len(entries)} students, index.json and {commands}: run it on "
                       f"the device, copy the JSON files back, then "
                       f"edgekd calibrate --profile {profile_name} --from {export_dir}")
            return
        if profile.name != HOST_PROFILE:
            raise EdgekdError(f"calibrate measures on this host, but profile '{profile.name}' is "
                              "another device: use --export DIR, run it there, then --from DIR")
        folder = Path(work_dir) if work_dir else cache_root() / "calibration" / profile.name
        entries = calib.export_set(specs, folder, max_batch=max(batch_list))
        rows = calib.measure_on_host(folder, entries, batch_list, min_seconds=min_seconds,
                                     say=lambda text: click.echo(text, err=True))
        source = f"{len(rows)} host measurements"
    table = calib.fit_and_save(rows, profile, out, source=source)
    if from_dir is not None:
        table = _apply_folder_profiles(table, profile, Path(from_dir), out)
    click.echo(f"kernel table for {profile.name} ({profile.runtime.precision}): "
               f"{len(table.kernels)} kernel signatures from {len(rows)} measurements, "
               f"per-graph constants {', '.join(f'b{b} {c:.4f} ms' for b, c in table.constants.items())}")
    click.echo(f"wrote {out}")


def _apply_folder_profiles(table: "KernelTable", profile: "DeviceProfile", folder: Path,
                           out: Path) -> "KernelTable":
    """The per-kernel times of the layer profiles in ``folder`` on top of the whole-model fit."""
    from edgekd.ship import calibrate as calib

    profiles = calib.layer_profiles_from(folder)
    if not profiles:
        return table
    try:
        table, used, skipped = calib.apply_layer_profiles(table, profiles, profile,
                                                          source=f"layer profiles in {folder}")
    except EdgekdError as error:
        click.echo(f"layer profiles not used: {error}", err=True)
        return table
    table.save(out)
    click.echo(f"per-kernel times from {used} layer profiles ({skipped} did not match their "
               "student kernel by kernel)")
    return table


def _calibrate_from_layer_profile(profile: "DeviceProfile", path: Path, out: Path) -> None:
    """``calibrate --from PROFILE.json``: build the table at ``out`` from the per-kernel
    times of one ``python -m deploy profile`` JSON, or update the one already there."""
    from edgekd.search.kernel_model import KernelTable
    from edgekd.ship import calibrate as calib

    base = KernelTable.load(out).check_for(profile, str(out)) if out.is_file() else None
    table, _used, _skipped = calib.apply_layer_profiles(
        base, calib.layer_profiles_from(path), profile, source=f"layer profile {path}")
    table.save(out)
    click.echo(f"kernel table for {profile.name} ({profile.runtime.precision}): "
               f"{'updated' if base else 'built'} from the per-kernel times of {path}")
    click.echo(f"wrote {out}")
