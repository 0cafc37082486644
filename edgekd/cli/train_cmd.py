"""``edgekd train`` (one student from a teacher, any method) and ``edgekd layers`` (the
layers of a model, for ``--hint-layer``/``--guided-layer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli.base import HELP_EPILOG, CompactCommand, default_of, verbose_option
from edgekd.cli.cli_options import (ARCH_OPTION_HELP, AUGMENT_HELP, AUGMENTS, TRUST_CODE_HELP, VAL_DATA_HELP, data_option,
                                    hint_options, merge_method_options, method_opt_option, method_option,
                                    normalize_option, teacher_options)
from edgekd.distill.config import HINT_MODES, OPTIMIZERS, TrainConfig
from edgekd.run.config import CompressConfig

__all__ = ["layers", "search_options", "train"]


def _default(name: str) -> Any:
    """The default of a TrainConfig field (the one place training defaults live)."""
    return default_of(TrainConfig, name)


_SEARCH_HELP = ("Where to look a student id up: a search or compress folder, or its "
                "candidates.jsonl [./candidates.jsonl, then runs/*/, newest first].")


def search_options(command: Any) -> Any:
    """``--search RUN`` (and ``--candidates``, its old name, hidden: in ``compress``
    --candidates is a number, so the file option got its own name)."""
    command = click.option("--candidates", "old_search", hidden=True, default=None,
                           type=click.Path(path_type=Path))(command)
    return click.option("--search", "search", metavar="RUN|FILE", default=None,
                        type=click.Path(path_type=Path), help=_SEARCH_HELP)(command)


@click.command(cls=CompactCommand, epilog=HELP_EPILOG)
@click.option("--student", "-s", required=True, metavar="SPEC|ID",
              help="A student spec JSON, or an id from 'edgekd search' (with --search).")
@search_options
@teacher_options
@data_option
@normalize_option(default_of(CompressConfig, "normalize"))
@click.option("--val-data", default=None, metavar="SPEC", help=VAL_DATA_HELP + " (--val-fraction is then unused.)")
@method_option(compress=False, default=_default("method"))
@click.option("--epochs", "-e", metavar="N", type=click.IntRange(min=1), default=_default("epochs"), show_default=True,
              help="Epochs on labels/logits (a hint stage comes on top).")
@click.option("--hint-epochs", metavar="N", type=click.IntRange(min=0), default=_default("hint_epochs"), show_default=True,
              help="Hint epochs (at most), on top of --epochs; 0 only with --hint-mode joint.")
@hint_options
@method_opt_option
@click.option("--temperature", "-T", metavar="X", type=click.FloatRange(min=0, min_open=True), default=_default("temperature"),
              help="Method option T: the softmax temperature [the method's: kd 4, lskd 2, ...].")
@click.option("--alpha", metavar="X", type=click.FloatRange(0, 1), default=_default("alpha"),
              help="Method option alpha: kd's weight of the hard labels, a*CE + (1-a)*T^2*KL [0.1].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_default("optimizer"),
              show_default=True)
@click.option("--lr", metavar="X", type=click.FloatRange(min=0, min_open=True), default=_default("lr"),
              help="Peak learning rate, down to --lr-floor x it [sgd 0.1, adamw 0.002].")
@click.option("--weight-decay", metavar="X", type=click.FloatRange(min=0), default=_default("weight_decay"),
              show_default=True)
@click.option("--batch-size", metavar="N", type=click.IntRange(min=1), default=_default("batch_size"),
              show_default=True)
@click.option("--seed", metavar="N", type=int, default=_default("seed"), show_default=True)
@click.option("--val-fraction", metavar="X", type=click.FloatRange(0, 1, max_open=True), default=_default("val_fraction"),
              show_default=True,
              help="Share of the training images held out to select the best epoch.")
@click.option("--generations", metavar="N", type=click.IntRange(min=1), default=_default("generations"), show_default=True,
              help="ban: number of born-again generations.")
@click.option("--hint-layer", metavar="NODE", default=_default("hint_layer"),
              help="Teacher node for the hint [the stage end nearest its middle]; see edgekd layers.")
@click.option("--guided-layer", metavar="NODE", default=_default("guided_layer"),
              help="Student node for the guided layer [paired with the hint]; see edgekd layers.")
@click.option("--ensemble", type=click.Choice(["logits", "probs"]), default=_default("ensemble"),
              show_default=True,
              help="How several --teacher are averaged.")
@click.option("--max-train-samples", metavar="N", type=click.IntRange(min=1), default=_default("max_train_samples"),
              help="Train on at most this many images (a seeded subset).")
@click.option("--augment", type=click.Choice(AUGMENTS), default=_default("augment"), show_default=True,
              is_flag=False, flag_value="auto", metavar="MODE", help=AUGMENT_HELP)
@click.option("--teacher-views", metavar="N", type=click.IntRange(min=0), default=_default("teacher_views"),
              show_default=True,
              help="Teacher outputs cached on K augmented views; 0: teacher on every batch.")
@click.option("--warmup-epochs", metavar="X", type=click.FloatRange(min=0), default=_default("warmup_epochs"),
              show_default=True,
              help="Linear learning-rate warm-up (at most a fifth of each stage), then a cosine.")
@click.option("--lr-floor", metavar="X", type=click.FloatRange(0, 1), default=_default("lr_floor"), show_default=True,
              help="The cosine ends at this fraction of --lr.")
@click.option("--label-smoothing", metavar="X", type=click.FloatRange(0, 1, max_open=True),
              default=_default("label_smoothing"),
              help="Method option label_smoothing, of the hard-label term [0].")
@click.option("--ema", "ema", type=click.FloatRange(0, 1, max_open=True), default=_default("ema"),
              show_default=True, metavar="DECAY",
              help="EMA decay; 0: off.")
@click.option("--device", metavar="DEVICE", default=_default("device"), show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--out", "-o", "out_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/train"), show_default=True,
              help="Output folder; rerun the command to resume.")
@verbose_option
def train(student: str, search: Path | None, old_search: Path | None, teacher: tuple[str, ...],
          arch: tuple[str, ...], trust_code: bool, data: str | None, image_size: tuple[int, int] | None,
          normalize: str, val_data: str | None, out_dir: Path, **training: Any) -> None:
    """Train one student from a teacher (scratch, kd, fitnet, ... see --method).

    Writes OUT/checkpoint.pt (self-describing), OUT/metrics.jsonl and OUT/result.json; the
    same command again continues from the checkpoint. Teacher and data default to the
    built-in ones.

    \b
    Examples:
        edgekd train --student spec.json --method fitnet --epochs 6 --out runs/fitnet
        edgekd train --student 3f2a9c1b0d4e --search runs/search-host-cpu \\
            --teacher teacher.pt --arch resnet18 --data data.npz --method kd
    """
    from edgekd.core.stack import check_stack

    check_stack()  # a broken torch/torchvision install: one line now, not a traceback later
    from edgekd.cli.cli_options import resolve_data, resolve_teachers
    from edgekd.cli.train_view import format_result
    from edgekd.distill.commands import resolve_student_spec, run_train
    from edgekd.distill.methods import get_method

    spec = resolve_student_spec(student, search or old_search)  # check the cheap inputs first
    # every other option is a TrainConfig field of the same name (tests/test_config_defaults.py)
    merge_method_options(training)
    config = TrainConfig(**training)
    dataset = resolve_data(data, image_size, normalize)
    teachers = resolve_teachers(teacher, arch, trust_code, dataset) if get_method(config.method).uses_teacher else []
    if val_data:  # after the teachers: a built-in teacher trains on the training images only
        from edgekd.inputs.data import with_validation

        dataset = with_validation(dataset, resolve_data(val_data, image_size), val_data)
    result = run_train(spec=spec, teachers=teachers, dataset=dataset, config=config, out_dir=out_dir,
                       progress=True)
    click.echo(format_result(result))


@click.command()
@click.argument("model", metavar="MODEL")
@search_options
@click.option("--teacher", default=None, metavar="SOURCE",
              help="MODEL is a student: the teacher it is paired with [builtin].")
@click.option("--student", default=None, metavar="SPEC.json|ID",
              help="MODEL is a teacher: the student it is paired with (none: nothing is marked).")
@click.option("--hint-mode", type=click.Choice(HINT_MODES), default=_default("hint_mode"), show_default=True,
              help="Mark the pair(s) of this hint mode (multi: one per teacher stage).")
@click.option("--arch", default=None, metavar="ARCH", help=ARCH_OPTION_HELP.split(" Once, or")[0])
@click.option("--trust-code", is_flag=True, default=False, help=TRUST_CODE_HELP)
@click.option("--data", default=None, metavar="SPEC",
              help="Data that fixes a teacher's input shape and classes [mnist-subset].")
@verbose_option
def layers(model: str, search: Path | None, old_search: Path | None, teacher: str | None, student: str | None,
           hint_mode: str, arch: str | None, trust_code: bool, data: str | None) -> None:
    """List a model's tappable layers and mark the hint pair(s) fitnet training uses.

    MODEL is a student (a spec .json, or a candidate id looked up with --search) or a
    teacher (any --teacher source: builtin, a TorchScript/state_dict file with --arch, ...).
    The marks are the pairs training makes (a teacher stage end and the student node of its
    resolution, edgekd.distill.pairing): a student is paired with --teacher, a teacher with
    --student. --hint-layer/--guided-layer in 'edgekd train' take these node names.

    \b
    Example:
        edgekd layers spec.json                       # paired with the built-in teacher
        edgekd layers spec.json --hint-mode multi
        edgekd layers builtin --student spec.json
        edgekd layers resnet18-weights.pt --arch resnet18 --data torchvision:CIFAR10:~/data
    """
    from edgekd.cli.train_view import print_layers
    from edgekd.distill.commands import list_model_layers

    print_layers(list_model_layers(model, search=search or old_search, arch=arch, trust_code=trust_code,
                                   data=data, teacher=teacher, student=student, hint_mode=hint_mode))
