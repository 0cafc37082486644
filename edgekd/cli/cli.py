"""The ``edgekd`` command line. Thin: parse, call one function, print.

Every command accepts ``--verbose``. A user error (:class:`edgekd.core.errors.EdgekdError`)
prints one line ``error: ...`` and exits with status 2; with ``--verbose`` the traceback
is shown too. Heavy libraries are imported inside the commands, so ``edgekd --help`` is fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
import traceback
from typing import Any, Callable

import click

from edgekd import __version__
from edgekd.cli.cli_options import (ARCH_OPTION_HELP, AUGMENT_HELP, AUGMENTS, DATA_OPTION_HELP,
                                   TRUST_CODE_HELP, data_option, method_option, single_teacher_options,
                                   teacher_options)
from edgekd.cli.config_file import config_option
from edgekd.core.errors import EdgekdError, disk_error


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().meta["edgekd.verbose"] = True
    return value


def verbose_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--verbose`` (show tracebacks and debug output) to a command."""
    return click.option(
        "--verbose", "-v", is_flag=True, expose_value=False, is_eager=True,
        callback=_set_verbose, help="Show tracebacks and debug output.",
    )(func)


def is_verbose(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("edgekd.verbose"))


#: The largest batch an option accepts: larger ones only exhaust memory (1e12 images).
MAX_BATCH = 65536


class EdgekdGroup(click.Group):
    """A click group that turns :class:`EdgekdError` into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgekdError as error:
            if is_verbose(ctx):
                traceback.print_exc()
            click.secho(f"error: {error}", fg="red", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:
            disk = disk_error(error)
            if disk is None:
                raise
            if is_verbose(ctx):
                traceback.print_exc()
            click.secho(f"error: {disk}", fg="red", err=True)
            ctx.exit(disk.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted: finished work is saved; rerun with --resume to continue",
                        fg="yellow", err=True)
            ctx.exit(130)


@click.group(cls=EdgekdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="edgekd")
@verbose_option
def cli() -> None:
    """edgekd: compress a trained classifier into a thin, deep student for an edge device.

    \b
    The main job, on the embedded default (MNIST subset, built-in teacher, host CPU):
        edgekd compress
    On your own teacher, data and device:
        edgekd compress --profile jetson-orin-nano-8gb --teacher teacher.pt \\
            --arch resnet18 --data data.npz --latency-ms 0.5 --out runs/orin

    Stages can also be run one by one: search, train, export, report.
    """


# --------------------------------------------------------------------------- profiles
@cli.group(cls=EdgekdGroup)
def profiles() -> None:
    """List and inspect device profiles (profiles/*.toml).

    \b
    Examples:
        edgekd profiles list
        edgekd profiles show jetson-orin-nano-8gb
        edgekd profiles show ./my-device.toml
    """


def _print_view(view: Any) -> None:
    """Print a profile view: JSON text as is, a rich renderable through a wide-enough console."""
    if isinstance(view, str):
        click.echo(view)
    else:
        from edgekd.cli.profile_view import make_console

        make_console().print(view)


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as a JSON list.")
@verbose_option
def profiles_list(as_json: bool) -> None:
    """Print a table of the shipped device profiles: peak FP32/FP16/INT8 throughput, memory
    bandwidth, default budget (latency at a batch, MACs per sample) and runtime.

    \b
    Example:
        edgekd profiles list
        edgekd profiles list --json > profiles.json
    """
    from edgekd.cli.profile_view import list_profiles

    _print_view(list_profiles(as_json=as_json))


@profiles.command("show")
@click.argument("name_or_path")
@click.option("--json", "as_json", is_flag=True,
              help="Print the profile as JSON (a .json file of it is a profile too).")
@click.option("--toml", "as_toml", is_flag=True,
              help="Print the profile's TOML file as written: copy it to make your own.")
@verbose_option
def profiles_show(name_or_path: str, as_json: bool, as_toml: bool) -> None:
    """Print one profile (a shipped NAME or a PATH to a .toml or .json file): hardware,
    default budget and runtime. A user file is validated exactly like the shipped ones.

    \b
    Example:
        edgekd profiles show jetson-orin-nano-8gb
        edgekd profiles show t4 --toml > my-device.toml    # then edit it, pass --profile my-device.toml
        edgekd profiles show ./my-device.toml --json
    """
    from edgekd.cli.profile_view import show_profile
    from edgekd.inputs.profiles import profile_text

    if as_json and as_toml:
        raise EdgekdError("--json and --toml both given: pick one")
    if as_toml:
        click.echo(profile_text(name_or_path), nl=False)
        return
    _print_view(show_profile(name_or_path, as_json=as_json))


# --------------------------------------------------------------------------- search
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


@cli.command()
@click.option("--profile", "profile_name", default="host-cpu", show_default=True,
              help="Device profile: a shipped name (edgekd profiles list) or a .toml path.")
@click.option("--input", "input_text", default="1x28x28", show_default=True,
              help="Input shape CxHxW.")
@click.option("--classes", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of output classes.")
@click.option("--max-macs", default=None,
              help="MAC budget per sample, with K/M/G suffix (default: the profile's).")
@click.option("--latency-ms", default=None, type=float,
              help="Latency budget in ms at the profile's batch (default: the profile's).")
@click.option("--family", default=None,
              help="Student families, comma-separated [default: "
                   "the registry's defaults, plain,residual]; see edgekd.search.families.")
@click.option("--max-depth", default=19, show_default=True, type=click.IntRange(min=3),
              help="Deepest student to enumerate, in conv layers.")
@click.option("--kernel", "kernels", default="3", show_default=True,
              help="Conv kernel sizes to enumerate, comma-separated (e.g. 3,5).")
@click.option("--stem-stride", "stem_strides", default="1", show_default=True,
              help="Stem strides to enumerate, comma-separated: 2 halves a 32x32+ input "
                   "before the first stage.")
@click.option("--shortlist", default=8, show_default=True, type=click.IntRange(min=1),
              help="How many students to shortlist for training (spread over depths).")
@click.option("--measure", is_flag=True,
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
    from edgekd.search.search import default_cost_cache, format_search, search_candidates
    from edgekd.ship.measure import measured_latency
    from edgekd.search.space import SpaceConfig
    from edgekd.core.units import parse_count, parse_shape

    profile = load_profile(profile_name)
    from edgekd.search.families import default_families

    families = (tuple(f.strip() for f in family.split(",") if f.strip()) if family
                else default_families())
    space = SpaceConfig(families=families, max_depth=max_depth,
                        kernels=_int_list(kernels, "--kernel"),
                        stem_strides=_int_list(stem_strides, "--stem-stride"))
    out = Path(out_dir) if out_dir else Path("runs") / f"search-{profile.name}"
    result = search_candidates(
        profile, parse_shape(input_text), classes,
        max_macs=parse_count(max_macs) if max_macs is not None else None,
        latency_ms=latency_ms, families=families, shortlist=shortlist, measure=measure,
        measurer=lambda spec, folder, batch: measured_latency(spec, folder, batch=batch),
        calibration=calibration, out_dir=out, space=space,
        progress=lambda text: click.echo(text, err=True), cost_cache=default_cost_cache())
    click.echo(format_search(result))


# --------------------------------------------------------------------------- calibrate
@cli.command()
@click.option("--profile", "profile_name", default="host-cpu", show_default=True,
              help="Device profile the table is for: a shipped name or a .toml path.")
@click.option("--input", "input_text", default="3x32x32", show_default=True,
              help="Input shape CxHxW of the calibration students.")
@click.option("--classes", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--students", default=60, show_default=True, type=click.IntRange(min=4),
              help="How many students to measure (all four families, MACs 0.3M-60M).")
@click.option("--batch", "batches", default="1,32", show_default=True,
              help="Batch sizes to measure, comma-separated.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Only write the students, index.json and commands.sh here, for a device.")
@click.option("--from", "from_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Fit from the measurements brought back into this exported folder.")
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
    click.echo(f"kernel table for {profile.name} ({profile.runtime.precision}): "
               f"{len(table.kernels)} kernel signatures from {len(rows)} measurements, "
               f"per-graph constants {', '.join(f'b{b} {c:.4f} ms' for b, c in table.constants.items())}")
    click.echo(f"wrote {out}")


# --------------------------------------------------------------------------- train
_SEARCH_HELP = ("Where to look a student id up: the folder 'edgekd search' or 'edgekd compress' "
                "wrote, or its candidates.jsonl [./candidates.jsonl, then runs/*/, newest first].")


def search_options(command: Any) -> Any:
    """``--search RUN`` (and ``--candidates``, its old name, hidden: in ``compress``
    --candidates is a number, so the file option got its own name)."""
    command = click.option("--candidates", "old_search", hidden=True, default=None,
                           type=click.Path(path_type=Path))(command)
    return click.option("--search", "search", metavar="RUN|FILE", default=None,
                        type=click.Path(path_type=Path), help=_SEARCH_HELP)(command)


@cli.command()
@click.option("--student", "-s", required=True, metavar="SPEC.json|ID",
              help="The student: a spec JSON file, or an id printed by 'edgekd search' (see --search).")
@search_options
@teacher_options
@data_option
@method_option(compress=False, default="fitnet")
@click.option("--epochs", "-e", type=click.IntRange(min=1), default=10, show_default=True,
              help="Epochs trained on labels/logits (fitnet: the hint stage comes on top).")
@click.option("--hint-epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="fitnet: at most this many hint-stage (stage 1) epochs, ON TOP of --epochs; "
                   "the stage stops earlier when the regressor's R^2 plateaus (own Adam, lr 5e-3).")
@click.option("--temperature", "-T", type=click.FloatRange(min=0, min_open=True), default=4.0,
              show_default=True, help="KD temperature.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="KD weight of the hard labels: a*CE + (1-a)*T^2*KL.")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate (cosine to 0) [sgd 0.05, adamw 0.002].")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=5e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of the training images held out to select the best epoch.")
@click.option("--generations", type=click.IntRange(min=1), default=3, show_default=True,
              help="ban: number of born-again generations.")
@click.option("--hint-layer", default=None, help="Teacher node for the hint [middle activation]; see 'edgekd layers'.")
@click.option("--guided-layer", default=None, help="Student node for the guided layer [spec's middle block].")
@click.option("--ensemble", type=click.Choice(["logits", "probs"]), default="logits", show_default=True,
              help="How several --teacher are averaged.")
@click.option("--max-train-samples", type=click.IntRange(min=1), default=None,
              help="Train on at most this many images (a seeded subset).")
@click.option("--augment", type=click.Choice(AUGMENTS), default="none", show_default=True,
              is_flag=False, flag_value="auto", help=AUGMENT_HELP + " A bare --augment means auto.")
@click.option("--teacher-views", type=click.IntRange(min=0), default=0, show_default=True,
              help="With augmentation: 0 = run the teacher on every batch; K = cache its outputs on K "
                   "augmented views per image (drawn once) and serve one of them per step.")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Linear learning-rate warm-up (at most a fifth of the run), then a cosine.")
@click.option("--lr-floor", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="The cosine ends at this fraction of --lr.")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="Label smoothing of the hard-label cross-entropy.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/train"), show_default=True,
              help="Output folder (checkpoint.pt, metrics.jsonl, result.json); rerun to resume.")
@verbose_option
def train(student: str, search: Path | None, old_search: Path | None, teacher: tuple[str, ...], arch: tuple[str, ...],
          trust_code: bool, data: str | None, image_size: tuple[int, int] | None, method: str,
          epochs: int, hint_epochs: int, temperature: float, alpha: float, optimizer: str,
          lr: float | None, weight_decay: float, batch_size: int, seed: int, val_fraction: float,
          generations: int, hint_layer: str | None, guided_layer: str | None, ensemble: str,
          max_train_samples: int | None, augment: str, teacher_views: int, warmup_epochs: float,
          lr_floor: float, label_smoothing: float, device: str, out_dir: Path) -> None:
    """Train one student from a teacher (scratch, kd, fitnet, mimic, ban, ... see --method).

    Writes a self-describing OUT/checkpoint.pt (spec, classes, normalisation, method,
    metrics), OUT/metrics.jsonl (one line per epoch) and OUT/result.json. Running the same
    command again continues from the checkpoint (a larger --epochs trains more); a finished
    run is not retrained. Teacher and data default to the built-in ones.

    \b
    Example:
        edgekd train --student spec.json --method fitnet --epochs 6 --out runs/fitnet
        edgekd train --student 3f2a9c1b0d4e --search runs/search-host-cpu \\
            --teacher teacher.pt --arch resnet18 --data data.npz --method kd
    """
    from edgekd.cli.cli_options import resolve_data, resolve_teachers
    from edgekd.cli.train_view import format_result
    from edgekd.distill.commands import resolve_student_spec, run_train
    from edgekd.distill.methods import get_method
    from edgekd.distill.trainer import TrainConfig

    spec = resolve_student_spec(student, search or old_search)  # check the cheap inputs first
    config = TrainConfig(method=method, epochs=epochs, hint_epochs=hint_epochs, temperature=temperature,
                         alpha=alpha, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                         batch_size=batch_size, seed=seed, val_fraction=val_fraction,
                         generations=generations, hint_layer=hint_layer, guided_layer=guided_layer,
                         ensemble=ensemble, max_train_samples=max_train_samples, augment=augment,
                         teacher_views=teacher_views, warmup_epochs=warmup_epochs, lr_floor=lr_floor,
                         label_smoothing=label_smoothing, device=device)
    dataset = resolve_data(data, image_size)
    teachers = resolve_teachers(teacher, arch, trust_code, dataset) if get_method(method).uses_teacher else []
    result = run_train(spec=spec, teachers=teachers, dataset=dataset, config=config, out_dir=out_dir,
                       progress=True)
    click.echo(format_result(result))


@cli.command()
@click.argument("model", metavar="MODEL")
@search_options
@click.option("--arch", default=None, metavar="ARCH", help=ARCH_OPTION_HELP.split(" Give it once")[0])
@click.option("--trust-code", is_flag=True, help=TRUST_CODE_HELP)
@click.option("--data", default=None, metavar="SPEC",
              help="Data that fixes a teacher's input shape and classes [mnist-subset].")
@verbose_option
def layers(model: str, search: Path | None, old_search: Path | None, arch: str | None, trust_code: bool,
           data: str | None) -> None:
    """List a model's tappable layers (for --hint-layer / --guided-layer).

    MODEL is a student (a spec .json, or a candidate id looked up with --search) or a
    teacher (any --teacher source: builtin, a TorchScript/state_dict file with --arch, ...).
    Prints every node with its output shape and marks the automatic choice: the teacher's
    hint layer or the student's guided layer (FitNets: the middle of the network).

    \b
    Example:
        edgekd layers builtin
        edgekd layers resnet18-weights.pt --arch resnet18 --data torchvision:CIFAR10:~/data
        edgekd layers spec.json
    """
    from edgekd.cli.train_view import print_layers
    from edgekd.distill.commands import list_model_layers

    print_layers(list_model_layers(model, search=search or old_search, arch=arch, trust_code=trust_code,
                                   data=data))


# --------------------------------------------------------------------------- export
def _parse_dynamic_batch(_ctx: click.Context, _param: click.Parameter, value: str | None
                         ) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        low, opt, high = (int(p) for p in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not MIN,OPT,MAX, e.g. 1,8,32") from None
    if not 1 <= low <= opt <= high:
        raise click.BadParameter(f"'{value}': need 1 <= MIN <= OPT <= MAX, e.g. 1,8,32")
    return low, opt, high


@cli.command()
@click.argument("target", metavar="CHECKPOINT_OR_RUN", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for ID.onnx (and bundle/ with --bundle).")
@click.option("--bundle", is_flag=True,
              help="Also write OUT/bundle: model.onnx, the deploy kit, profile.toml, calib.npz, "
                   "val.npz and a README with the commands to run on the device.")
@click.option("--profile", "profile_name", default=None,
              help="Target device profile (name or .toml) [default: the run's profile].")
@click.option("--dynamic-batch", callback=_parse_dynamic_batch, default=None, metavar="MIN,OPT,MAX",
              help="Export a dynamic batch dimension (TensorRT optimisation profile MIN/OPT/MAX) "
                   "instead of the static batch.")
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=None,
              help="Static batch [default: the profile's budget batch, else 1].")
@click.option("--simplify", is_flag=True,
              help="Simplify with onnxslim; kept only if parity still holds.")
@click.option("--int8", is_flag=True,
              help="Also write OUT/ID.int8.onnx (Q/DQ, per-channel weights, calibrated on the "
                   "training images) and ID.int8.json with its ONNX Runtime accuracy next to FP32.")
@click.option("--data", default=None,
              help="Data for the parity check and the bundle's npz files "
                   "[default: the run's data, else mnist-subset].")
@verbose_option
def export(target: Path, out_dir: Path, bundle: bool, profile_name: str | None,
           dynamic_batch: tuple[int, int, int] | None, batch: int | None, simplify: bool,
           int8: bool, data: str | None) -> None:
    """Export a trained student to ONNX (opset 18, onnx.checker, parity with PyTorch on 256
    real test samples: max |logit difference| <= 1e-4 and 100% top-1 agreement), with its
    spec, classes, input shape, normalisation, accuracy and profile in the model metadata.
    CHECKPOINT_OR_RUN is a student checkpoint.pt or a run folder (its best trial). With
    --bundle, also write the folder to copy to the device.

    \b
    Example:
        edgekd export runs/orin --out exported --bundle
        edgekd export runs/orin/trials/t03/checkpoint.pt --out exported \\
            --profile jetson-orin-nano-8gb --dynamic-batch 1,8,32 --simplify --bundle
        edgekd export runs/orin --out exported --int8
    """
    from edgekd.core import fmt
    from edgekd.ship.export_target import export_target

    result = export_target(target, out_dir, bundle=bundle, profile=profile_name,
                           dynamic_batch=dynamic_batch, simplify=simplify, data=data, batch=batch,
                           int8=int8)
    click.echo(f"exported {result.model_id} -> {result.onnx}")
    if result.parity:
        p = result.parity
        click.echo(f"parity: max |logit difference| {p['max_abs_diff']:.3g} (limit {p['atol']:g}), "
                   f"top-1 agreement {fmt.percent(p['top1_agreement'])} on {p['samples']} samples")
    if result.int8:
        click.echo(f"int8 -> {result.onnx.with_name(result.int8['onnx'])}: {result.int8['line']}")
        if result.int8.get("recorded_in"):
            click.echo(f"int8: recorded in {result.int8['recorded_in']} ('edgekd report' shows it)")
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.bundle:
        click.echo(f"bundle -> {result.bundle} (copy it to the device; see {result.bundle / 'README.md'})")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=1, show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="ONNX Runtime intra-op threads (0 = one per core).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the Measurement JSON here.")
@click.option("--data", "data", default=None, metavar="SPEC",
              help="Also measure top-1 accuracy on this data set's test split: a .npz with "
                   "x_test/y_test, an image folder DIR/test/<class>/, or 'mnist-subset' "
                   "[default: no accuracy].")
@verbose_option
def measure(model: Path, batch: int, iters: int, warmup: int, threads: int,
            out_file: Path | None, data: str | None) -> None:
    """Measure an ONNX model's latency on this host through the deploy kit
    (python -m deploy bench in a subprocess: the same timing code as on the device)
    and print the Measurement: median, p90, p99, min, mean, std in ms and throughput.
    With --data, top-1 accuracy on the data's test split too (deploy check's ONNX Runtime
    path, normalised with the model's metadata; no torch), on one line with the latency and
    as "accuracy" in the JSON.

    \b
    Example:
        edgekd measure exported/t03.onnx --batch 1 --iters 200 --out host.json
        edgekd measure exported/t03.onnx --data mnist-subset --out host.json
    """
    from rich.console import Console
    from rich.table import Table

    from edgekd.core.fileio import atomic_write_json
    from edgekd.ship.measure import measure_onnx, measurement_rows, summary_line, data_accuracy

    accuracy = data_accuracy(model, data) if data is not None else None  # fails before timing
    result = measure_onnx(model, batch=batch, warmup=warmup, iters=iters, out=out_file,
                          threads=threads)
    if accuracy is not None:
        result["accuracy"] = accuracy
        if out_file:
            atomic_write_json(out_file, result)
    table = Table(title=f"{result['model']} on this host", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in measurement_rows(result):
        table.add_row(name, value)
    Console().print(table)
    if accuracy is not None:
        click.echo(summary_line(result))
    if out_file:
        click.echo(f"wrote {out_file}")


# --------------------------------------------------------------------------- report
@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--measurements", "-m", "measurements", multiple=True,
              type=click.Path(path_type=Path),
              help="Measurement JSON from 'python -m deploy bench' on the device (repeatable).")
@click.option("--force", is_flag=True,
              help="Merge measurements whose device, backend, precision or batch is not the run "
                   "profile's (labelled 'measured, forced' in the report).")
@verbose_option
def report(run_dir: Path, measurements: tuple[Path, ...], force: bool) -> None:
    """Rebuild a run's report (summary.json, report.md, report.html, plots) from its files,
    merging latencies measured on the target device.

    \b
    Example:
        edgekd report runs/default
        edgekd report runs/orin --measurements orin-bench/*.json
    """
    from edgekd.report.merge import merge_lines
    from edgekd.report.report import headline, write_report

    merged: list = []
    summary = write_report(run_dir, measurements, force=force, merged=merged)
    for line in merge_lines(merged, bool(summary["search"].get("target_is_host"))):
        click.echo(line)
    click.echo(headline(summary))
    click.echo(f"report: {run_dir / 'report' / 'report.html'} (and report.md, summary.json)")


# --------------------------------------------------------------------------- compress
@cli.command()
@config_option
@click.option("--profile", "-p", default=None, help="Device profile name or .toml path [host-cpu].")
@single_teacher_options
@click.option("--data", "-d", default=None, metavar="SPEC", help=DATA_OPTION_HELP)
@click.option("--max-macs", default=None, help="MACs budget per image, e.g. 1.5M [profile's].")
@click.option("--latency-ms", type=float, default=None, help="Latency budget in ms [profile's].")
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=None,
              help="Batch of the latency budget [profile's].")
@click.option("--candidates", "-n", type=int, default=6, show_default=True,
              help="Students shortlisted for successive halving.")
@click.option("--epochs", "-e", type=int, default=None,
              help="Epochs of the final training (the last rung) [from the data size: about 150k "
                   "training images seen, 4..60 epochs; 6 for the embedded default; printed].")
@click.option("--min-epochs", type=int, default=None,
              help="Epochs of the first rung [--epochs / --eta: long enough to rank deep students].")
@click.option("--hint-epochs", type=int, default=1, show_default=True,
              help="FitNets stage-1 (hint) epochs of every fitnet trial, on top of its --epochs.")
@click.option("--eta", type=int, default=3, show_default=True, help="Keep the best 1/eta per rung.")
@click.option("--rungs", type=int, default=None, help="Number of rungs [until the finalists].")
@click.option("--finalists", type=int, default=2, show_default=True,
              help="Students of the last rung, trained fully from scratch (2: the best shallow and "
                   "the best deep one, see --no-depth-groups).")
@method_option(compress=True, default="fitnet",
               help_prefix="Training method of the final rung (and of the search rungs, except a hint "
                           "method such as fitnet, whose search rungs train kd; see --rung-method). ")
@click.option("--rung-method", default=None, metavar="METHOD",
              help="Training method of the selection rungs [kd for --method fitnet, else --method].")
@click.option("--no-depth-groups", is_flag=True,
              help="Promote by accuracy alone (default: every rung keeps the best shallow and the "
                   "best deep student, depth split at the shortlist's median).")
@click.option("--augment", type=click.Choice(AUGMENTS), default=None,
              help=AUGMENT_HELP + " [auto; none for the embedded default, a few-minute demo]")
@click.option("--teacher-views", type=click.IntRange(min=0), default=None,
              help="With augmentation: 0 = teacher on every batch; K = teacher outputs cached once per "
                   "run on K augmented views per image [8 on CPU, 0 on CUDA].")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="Label smoothing of the hard-label term.")
@click.option("--parity-samples", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images of the ONNX parity check (test images first, topped up from the training "
                   "split); checked before training.")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None,
              help="A calibration JSON of the target profile (from 'edgekd search --measure') for the "
                   "latency model; checked before training.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where trials train (and the teacher runs for them): auto = cuda when available "
                   "(AMP + channels_last there). Export and latency stay on this host's CPU.")
@click.option("--baselines", is_flag=True, help="Also train the winner with scratch/kd/fitnet (ablation).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Join this Ray cluster (else start a local one).")
@click.option("--ray-cpus", type=int, default=None, help="CPUs of the local Ray instance [all].")
@click.option("--gpus-per-trial", type=float, default=0.0, show_default=True,
              help="GPUs each Ray trial asks for.")
@click.option("--threads-per-trial", type=click.IntRange(min=1), default=None,
              help="torch threads (= Ray CPUs) per trial [local: all cores; ray: 1].")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Run folder [runs/default with no inputs given, else runs/PROFILE-DATA-TEACHER; "
                   "a rerun takes the next free runs/default2, runs/default3 ...].")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out (after a crash or kill) [without --out: the latest "
                   "numbered default folder].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-train-samples", type=int, default=None, help="Train on at most this many images.")
@click.option("--batch-size", type=int, default=None, help="Training batch size [trainer's].")
@click.option("--measure-iters", type=int, default=500, show_default=True,
              help="Timed iterations per latency measurement.")
@click.option("--no-bundle", is_flag=True, help="Skip the device bundle.")
@click.option("--no-progress", is_flag=True,
              help="Print nothing during the search (default: a live view on a terminal, "
                   "else one line per trial).")
@click.option("--yes", is_flag=True,
              help="Run even when the plan is absurdly large (see the warning it gives).")
@verbose_option
def compress(profile: str | None, teacher: str | None, arch: str | None, trust_code: bool,
             data: str | None, max_macs: str | None, latency_ms: float | None, batch: int | None,
             candidates: int, epochs: int | None, min_epochs: int | None, hint_epochs: int, eta: int,
             rungs: int | None,
             finalists: int, method: str, rung_method: str | None, no_depth_groups: bool,
             augment: str | None, teacher_views: int | None, label_smoothing: float, parity_samples: int,
             calibration: str | None, device: str,
             baselines: bool, executor: str,
             ray_address: str | None, ray_cpus: int | None, gpus_per_trial: float,
             threads_per_trial: int | None, out: Path | None, resume: bool, seed: int,
             max_train_samples: int | None,
             batch_size: int | None, measure_iters: int, no_bundle: bool,
             no_progress: bool, yes: bool) -> None:
    """Search, train (successive halving), export, measure and report in one command.

    With no options it runs the embedded default: the shipped MNIST subset, the built-in
    teacher and the host-cpu profile with a 0.05 ms latency budget, into runs/default.
    Rerun with --resume after a crash.

    \b
    Example:
        edgekd compress
        edgekd compress --resume
        edgekd compress --profile jetson-orin-nano-8gb --teacher teacher.pt --arch resnet18 \\
            --data data.npz --latency-ms 0.5 --baselines --out runs/orin
        edgekd compress --executor ray --ray-address auto --candidates 27 --epochs 9
        edgekd compress --config job.toml --epochs 12      # the file's options, --epochs overridden
        edgekd compress --config runs/default/run.json     # the same run again, in a new folder
    """
    from edgekd.cli.config_file import recorded_options
    from edgekd.run.pipeline import CompressConfig, compress as run_compress
    from edgekd.core.units import parse_count

    config = CompressConfig(
        profile=profile, teacher=teacher, arch=arch, trust_code=trust_code, data=data,
        max_macs=parse_count(max_macs) if max_macs is not None else None,
        latency_ms=latency_ms, batch=batch, candidates=candidates, epochs=epochs,
        min_epochs=min_epochs, hint_epochs=hint_epochs, eta=eta, rungs=rungs, finalists=finalists, method=method,
        rung_method=rung_method, depth_groups=not no_depth_groups, augment=augment,
        teacher_views=teacher_views, label_smoothing=label_smoothing, device=device,
        parity_samples=parity_samples, calibration=calibration,
        baselines=baselines, executor=executor, ray_address=ray_address, ray_cpus=ray_cpus,
        gpus_per_trial=gpus_per_trial, threads_per_trial=threads_per_trial, out=out,
        resume=resume, seed=seed,
        max_train_samples=max_train_samples, batch_size=batch_size, measure_iters=measure_iters,
        bundle=not no_bundle, progress=not no_progress, yes=yes,
        command=["edgekd", *sys.argv[1:]],
        options=recorded_options(click.get_current_context().params))
    result = run_compress(config)
    click.echo(result.headline)
    click.echo(f"report: {result.report_html} (and {result.report_md.name}, summary.json)")
    if result.bundle is not None:
        click.echo(f"bundle: {result.bundle}")
    click.echo(f"run folder: {result.run_dir} ({'resumed' if result.resumed else 'new'}, "
               f"{result.seconds:.0f} s)")


from edgekd.cli.predict_cmd import predict  # noqa: E402 - needs the group's helpers above

cli.add_command(predict)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="edgekd")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
