"""``edgekd compress``: the whole pipeline (search, successive halving, export, measure,
report, bundle) into one run folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgekd.cli.base import HELP_EPILOG, MAX_BATCH, CompactCommand, default_of, verbose_option
from edgekd.cli.cli_options import (AUGMENT_HELP, AUGMENTS, DATA_OPTION_HELP, FAMILY_HELP, VAL_DATA_HELP, hint_options,
                                    merge_method_options, method_opt_option, method_option, normalize_option, parse_families,
                                    single_teacher_options)
from edgekd.cli.config_file import config_option
from edgekd.run.config import CompressConfig

__all__ = ["compress"]


def _default(name: str) -> Any:
    """The default of a CompressConfig field (the one place compress's defaults live)."""
    return default_of(CompressConfig, name)


@click.command(cls=CompactCommand, epilog=HELP_EPILOG)
@config_option
@click.option("--profile", "-p", default=None, metavar="NAME|FILE",
              help="Target device profile [host-cpu].")
@single_teacher_options
@click.option("--data", "-d", default=None, metavar="SPEC", help=DATA_OPTION_HELP)
@normalize_option(_default("normalize"))
@click.option("--val-data", default=None, metavar="SPEC", help=VAL_DATA_HELP)
@click.option("--max-macs", default=None, metavar="N", help="MACs budget per image, e.g. 1.5M [profile's].")
@click.option("--latency-ms", type=float, default=None, metavar="MS", help="Latency budget [profile's].")
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=None, metavar="N",
              help="Batch of the latency budget [profile's].")
@click.option("--family", "families", default=None, metavar="LIST", help=FAMILY_HELP,
              callback=lambda _ctx, _param, value: None if value is None else parse_families(value))
@click.option("--candidates", "-n", type=int, default=_default("candidates"), show_default=True, metavar="N",
              help="Students shortlisted.")
@click.option("--epochs", "-e", type=int, default=None, metavar="N",
              help="Epochs of the final training [from the data size].")
@click.option("--min-epochs", type=int, default=None, metavar="N",
              help="Epochs of the first rung [--epochs / --eta].")
@click.option("--hint-epochs", type=int, default=_default("hint_epochs"), show_default=True, metavar="N",
              help="Hint epochs, on top of --epochs.")
@hint_options
@click.option("--eta", type=int, default=_default("eta"), show_default=True, metavar="N",
              help="Keep the best 1/eta per rung.")
@click.option("--rungs", type=int, default=None, metavar="N", help="Number of rungs [until the finalists].")
@click.option("--finalists", type=int, default=_default("finalists"), show_default=True, metavar="N",
              help="Students trained fully.")
@method_option(compress=True, default=_default("method"),
               help_prefix="Method of the final rung: ")
@method_opt_option
@click.option("--rung-method", default=None, metavar="METHOD",
              help="Method of the selection rungs [kd for a hint method, else --method].")
@click.option("--no-depth-groups", is_flag=True, default=not _default("depth_groups"),
              help="Promote by accuracy alone, not the best shallow and deep students per rung.")
@click.option("--augment", type=click.Choice(AUGMENTS), default=None, metavar="MODE",
              help=AUGMENT_HELP + " [auto]")
@click.option("--teacher-views", type=click.IntRange(min=0), default=None, metavar="K",
              help="Teacher outputs cached on K augmented views; 0: none [8 on CPU, 0 on CUDA].")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
              default=_default("label_smoothing"), metavar="X",
              help="Method option label_smoothing of the hard-label term [0].")
@click.option("--ema", "ema", type=click.FloatRange(0, 1, max_open=True), default=_default("ema"),
              show_default=True, metavar="DECAY",
              help="EMA decay; 0: off.")
@click.option("--parity-samples", type=click.IntRange(min=1), default=_default("parity_samples"),
              show_default=True, metavar="N", help="ONNX parity images [256, or all].")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Kernel calibration file.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=_default("device"),
              show_default=True, help="Where trials train.")
@click.option("--baselines", is_flag=True, default=_default("baselines"),
              help="Also train the winner's architecture with scratch and kd, and --reference; keep "
                   "the best by validation.")
@click.option("--no-final-retrain", is_flag=True, default=not _default("final_retrain"),
              help="Ship the chosen arm, not its train+val retrain.")
@click.option("--reference", is_flag=True, default=False,
              help="Also train the torchvision models within the budget (resnet18, mobilenet_v3, ...).")
@click.option("--reference-models", callback=lambda _c, _p, v: tuple(v.split(",")) if v else None,
              default=None, metavar="NAMES",
              help="Only these (implies --reference).")
@click.option("--strategy", type=click.Choice(["halving", "supernet"]), default=_default("strategy"),
              show_default=True, metavar="NAME",
              help="halving (one by one) or supernet (one shared net).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=_default("executor"),
              show_default=True, help="Where trials run.")
@click.option("--ray-address", default=None, metavar="ADDR", help="Join this Ray cluster [a local one].")
@click.option("--ray-cpus", type=int, default=None, metavar="N", help="CPUs of the local Ray instance [all].")
@click.option("--gpus-per-trial", type=float, default=_default("gpus_per_trial"), show_default=True,
              metavar="N", help="GPUs per Ray trial.")
@click.option("--threads-per-trial", type=click.IntRange(min=1), default=None, metavar="N",
              help="torch threads (= Ray CPUs) per trial [1 on CPU, torch's default on CUDA].")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Run folder [runs/default, or runs/PROFILE-DATA-TEACHER; a rerun numbers it].")
@click.option("--resume", is_flag=True, default=_default("resume"),
              help="Continue the run in --out [latest].")
@click.option("--seed", type=int, default=_default("seed"), show_default=True, metavar="N")
@click.option("--max-train-samples", type=int, default=None, metavar="N",
              help="Train on at most this many images.")
@click.option("--batch-size", type=int, default=None, metavar="N", help="Training batch size [trainer's].")
@click.option("--measure-iters", type=int, default=_default("measure_iters"), show_default=True, metavar="N",
              help="Timed runs per model.")
@click.option("--no-bundle", is_flag=True, default=not _default("bundle"), help="Skip the device bundle.")
@click.option("--int8-tolerance", type=click.FloatRange(min=0), default=_default("int8_tolerance"),
              show_default=True, metavar="PTS",
              help="INT8 top-1 loss (points) before FP16 is bundled.")
@click.option("--no-progress", is_flag=True, default=not _default("progress"),
              help="Print nothing while it runs.")
@click.option("--yes", is_flag=True, default=_default("yes"),
              help="Run even a plan so large it looks like a typo.")
@verbose_option
def compress(max_macs: str | None, no_depth_groups: bool, no_bundle: bool, no_progress: bool,
             no_final_retrain: bool, **fields: Any) -> None:
    """Search, train, export, measure and report in one command.

    With no options: the shipped MNIST subset, its built-in teacher and the host-cpu
    profile, into runs/default (a rerun into runs/default2, ...; --resume continues one).
    """
    from edgekd.core.stack import check_stack

    check_stack()  # a broken torch/torchvision install: one line now, not a traceback later
    from edgekd.cli.config_file import recorded_options
    from edgekd.run.pipeline import compress as run_compress
    from edgekd.core.units import parse_count

    # every other option is a CompressConfig field of the same name (tests/test_config_defaults.py)
    merge_method_options(fields, ("label_smoothing",))  # T and alpha stay in method_options
    config = CompressConfig(
        **fields, max_macs=parse_count(max_macs) if max_macs is not None else None,
        depth_groups=not no_depth_groups, bundle=not no_bundle, progress=not no_progress,
        final_retrain=not no_final_retrain,
        command=["edgekd", *sys.argv[1:]],
        options=recorded_options(click.get_current_context().params))
    result = run_compress(config)
    click.echo(result.headline)
    click.echo(f"report: {result.report_html} (and {result.report_md.name}, summary.json)")
    if result.bundle is not None:
        click.echo(f"bundle: {result.bundle}")
    click.echo(f"run folder: {result.run_dir} ({'resumed' if result.resumed else 'new'}, "
               f"{result.seconds:.0f} s)")
