"""``edgekd compress``: the whole pipeline (search, successive halving, export, measure,
report, bundle) into one run folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgekd.cli.base import MAX_BATCH, default_of, verbose_option
from edgekd.cli.cli_options import (AUGMENT_HELP, AUGMENTS, DATA_OPTION_HELP, hint_options, merge_method_options,
                                    method_opt_option, method_option, single_teacher_options)
from edgekd.cli.config_file import config_option
from edgekd.run.config import DEFAULT_METHOD, DEFAULT_METHOD_WHY, CompressConfig

__all__ = ["compress"]


def _default(name: str) -> Any:
    """The default of a CompressConfig field (the one place compress's defaults live)."""
    return default_of(CompressConfig, name)


@click.command()
@config_option
@click.option("--profile", "-p", default=None, help="Device profile name or .toml path [host-cpu].")
@single_teacher_options
@click.option("--data", "-d", default=None, metavar="SPEC", help=DATA_OPTION_HELP)
@click.option("--max-macs", default=None, help="MACs budget per image, e.g. 1.5M [profile's].")
@click.option("--latency-ms", type=float, default=None, help="Latency budget in ms [profile's].")
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=None,
              help="Batch of the latency budget [profile's].")
@click.option("--candidates", "-n", type=int, default=_default("candidates"), show_default=True,
              help="Students shortlisted for successive halving.")
@click.option("--epochs", "-e", type=int, default=None,
              help="Epochs of the final training (the last rung) [from the data size: about 300k "
                   "training images seen on CPU, 1.5M on a GPU, 4..60 epochs: 30 for the embedded "
                   "default's 10k images, 6 for a 50k-image set on CPU and 30 on a GPU; printed].")
@click.option("--min-epochs", type=int, default=None,
              help="Epochs of the first rung [--epochs / --eta: long enough to rank deep students].")
@click.option("--hint-epochs", type=int, default=_default("hint_epochs"), show_default=True,
              help="FitNets stage-1 (hint) epochs of every trial of a hint method (fitnet, fitnet-dkd, "
                   "...), on top of its --epochs; it stops earlier when R^2 plateaus (--hint-patience).")
@hint_options
@click.option("--eta", type=int, default=_default("eta"), show_default=True, help="Keep the best 1/eta per rung.")
@click.option("--rungs", type=int, default=None, help="Number of rungs [until the finalists].")
@click.option("--finalists", type=int, default=_default("finalists"), show_default=True,
              help="Students of the last rung, trained fully from scratch (2: the best shallow and "
                   "the best deep one, see --no-depth-groups).")
@method_option(compress=True, default=_default("method"),
               help_prefix=f"Training method of the final rung (and of the search rungs, except a hint "
                           f"method such as fitnet, whose search rungs train kd; see --rung-method). "
                           f"Default {DEFAULT_METHOD}: {DEFAULT_METHOD_WHY} ")
@method_opt_option
@click.option("--rung-method", default=None, metavar="METHOD",
              help="Training method of the selection rungs [kd for a hint method, else --method].")
@click.option("--no-depth-groups", is_flag=True, default=not _default("depth_groups"),
              help="Promote by accuracy alone (default: every rung keeps the best shallow and the "
                   "best deep student, depth split at the shortlist's median).")
@click.option("--augment", type=click.Choice(AUGMENTS), default=None,
              help=AUGMENT_HELP + " [auto]")
@click.option("--teacher-views", type=click.IntRange(min=0), default=None,
              help="With augmentation: 0 = teacher on every batch; K = teacher outputs cached once per "
                   "run on K augmented views per image [8 on CPU, 0 on CUDA].")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
              default=_default("label_smoothing"),
              help="Method option label_smoothing of the hard-label term [0].")
@click.option("--ema", "ema", type=click.FloatRange(0, 1, max_open=True), default=_default("ema"),
              show_default=True, metavar="DECAY",
              help="EMA of the weights: validate, select and keep an exponential moving average of the "
                   "student's weights with this decay (e.g. 0.999; about the last 1/(1-DECAY) steps), "
                   "started after the hint stage. 0: off.")
@click.option("--parity-samples", type=click.IntRange(min=1), default=_default("parity_samples"), show_default=True,
              help="Images of the ONNX parity check (test images first, topped up from the training "
                   "split); checked before training.")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None,
              help="A calibration JSON of the target profile (from 'edgekd search --measure') for the "
                   "latency model; checked before training.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=_default("device"), show_default=True,
              help="Where trials train (and the teacher runs for them): auto = cuda when available "
                   "(AMP + channels_last there). Export and latency stay on this host's CPU.")
@click.option("--baselines", is_flag=True, default=_default("baselines"),
              help="Also train the winner with scratch/kd/fitnet (ablation; a hint --method such as "
                   "the default fitnet or fitnet-dkd is the fitnet arm).")
@click.option("--strategy", type=click.Choice(["halving", "supernet"]), default=_default("strategy"),
              show_default=True,
              help="halving: train candidates one by one; supernet: train one weight-sharing supernet "
                   "with KD, report its front, fine-tune the best.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=_default("executor"), show_default=True)
@click.option("--ray-address", default=None, help="Join this Ray cluster (else start a local one).")
@click.option("--ray-cpus", type=int, default=None, help="CPUs of the local Ray instance [all].")
@click.option("--gpus-per-trial", type=float, default=_default("gpus_per_trial"), show_default=True,
              help="GPUs each Ray trial asks for.")
@click.option("--threads-per-trial", type=click.IntRange(min=1), default=None,
              help="torch threads (= Ray CPUs) per trial [1 on CPU, where 2 made the epochs of "
                   "tiny students ~10x slower on a busy 2-core machine; torch's default on CUDA].")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Run folder [runs/default with no inputs given, else runs/PROFILE-DATA-TEACHER; "
                   "a rerun takes the next free runs/default2, runs/default3 ...].")
@click.option("--resume", is_flag=True, default=_default("resume"),
              help="Continue the run in --out (after a crash or kill) [without --out: the latest "
                   "numbered default folder].")
@click.option("--seed", type=int, default=_default("seed"), show_default=True)
@click.option("--max-train-samples", type=int, default=None, help="Train on at most this many images.")
@click.option("--batch-size", type=int, default=None, help="Training batch size [trainer's].")
@click.option("--measure-iters", type=int, default=_default("measure_iters"), show_default=True,
              help="Timed iterations per latency measurement.")
@click.option("--no-bundle", is_flag=True, default=not _default("bundle"), help="Skip the device bundle.")
@click.option("--int8-tolerance", type=click.FloatRange(min=0), default=_default("int8_tolerance"),
              show_default=True, help="For an int8 profile: the most top-1 points the INT8 model may "
                                      "lose against FP32 on the host before the bundle builds FP16.")
@click.option("--no-progress", is_flag=True, default=not _default("progress"),
              help="Print nothing during the search (default: a live view on a terminal, "
                   "else one line per trial).")
@click.option("--yes", is_flag=True, default=_default("yes"),
              help="Run even when the plan is absurdly large (see the warning it gives).")
@verbose_option
def compress(max_macs: str | None, no_depth_groups: bool, no_bundle: bool, no_progress: bool,
             **fields: Any) -> None:
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
        command=["edgekd", *sys.argv[1:]],
        options=recorded_options(click.get_current_context().params))
    result = run_compress(config)
    click.echo(result.headline)
    click.echo(f"report: {result.report_html} (and {result.report_md.name}, summary.json)")
    if result.bundle is not None:
        click.echo(f"bundle: {result.bundle}")
    click.echo(f"run folder: {result.run_dir} ({'resumed' if result.resumed else 'new'}, "
               f"{result.seconds:.0f} s)")
