"""Shared click options for the teacher and the data, so every command spells them alike.

Usage in a command::

    @cli.command()
    @teacher_options
    @data_option
    @verbose_option
    def train(teacher, arch, trust_code, data, image_size, ...):
        dataset = resolve_data(data, image_size)
        teachers = resolve_teachers(teacher, arch, trust_code, dataset)

``teacher`` and ``arch`` arrive as tuples (both options can be repeated: several teachers
form an ensemble). Light: importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

from edgekd.core.errors import EdgekdError
from edgekd.search.families import default_families, family_names, get_family

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from edgekd.inputs.data import ImageDataset

TEACHER_OPTION_HELP = (
    "TorchScript, .pt2, state_dict (with --arch), edgekd checkpoint or pkg.module:fn "
    "[built-in CNN]. Repeat for an ensemble.")
ARCH_OPTION_HELP = (
    "A state_dict teacher's architecture: torchvision name (resnet18, ...), edgekd:builtin-cnn or "
    "pkg.module:fn. Once, or once per --teacher.")
TRUST_CODE_HELP = "Allow code that comes with the teacher (entry points, pickles): trusted files only."
DATA_OPTION_HELP = (
    "mnist-subset [default], a .npz, an image folder DIR/train/CLASS/* or torchvision:NAME:ROOT.")
#: ``--augment`` of train and compress: edgekd.distill.augment.AUGMENTS, repeated here so that
#: the CLI does not import torch to build its options (tests/test_augment.py checks they agree).
AUGMENTS = ("auto", "none", "shift", "crop-flip")
AUGMENT_HELP = "auto, none, shift or crop-flip; the teacher sees the same images."
IMAGE_SIZE_HELP = "Resize image-folder data to this size: N or HxW (default: the first image's size)."


def _parse_image_size(_ctx: click.Context, _param: click.Parameter, value: str | None
                      ) -> tuple[int, int] | None:
    if value is None:
        return None
    from edgekd.core.units import parse_shape

    try:
        size = parse_shape(value)
    except EdgekdError:
        raise click.BadParameter(f"'{value}' is not N or HxW with positive numbers, e.g. 32 or 32x48") from None
    if len(size) == 1:
        size = size * 2
    if len(size) != 2:
        raise click.BadParameter(f"'{value}' is not N or HxW with positive numbers, e.g. 32x48")
    return size  # type: ignore[return-value]


def _teacher_options(func: Callable[..., Any], *, multiple: bool) -> Callable[..., Any]:
    func = click.option("--trust-code", is_flag=True, default=False, help=TRUST_CODE_HELP)(func)
    func = click.option("--arch", "arch", multiple=multiple, default=None, metavar="ARCH",
                        help=ARCH_OPTION_HELP if multiple else ARCH_OPTION_HELP.split(" Once, or")[0])(func)
    return click.option("--teacher", "-t", "teacher", multiple=multiple, default=None, metavar="SOURCE",
                        help=TEACHER_OPTION_HELP if multiple
                        else TEACHER_OPTION_HELP.replace(" Repeat for an ensemble.", ""))(func)


def teacher_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--teacher`` (repeatable: an ensemble), ``--arch`` (repeatable) and ``--trust-code``;
    ``teacher`` and ``arch`` arrive as tuples."""
    return _teacher_options(func, multiple=True)


def single_teacher_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same flags for commands that take one teacher: ``teacher`` and ``arch`` arrive as
    ``str | None``."""
    return _teacher_options(func, multiple=False)


#: ``--val-data`` of ``train`` and ``compress``
VAL_DATA_HELP = ("Images the teacher never saw (any --data form): train on all of --data, "
                 "select on these.")


def data_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--data`` and ``--image-size``."""
    func = click.option("--image-size", callback=_parse_image_size, metavar="N|HxW",
                        help=IMAGE_SIZE_HELP)(func)
    return click.option("--data", "data", default=None, metavar="SPEC",
                        help=DATA_OPTION_HELP)(func)


def normalize_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--normalize`` (dataset | imagenet | none | MEAN,STD; checked when the data is loaded,
    which knows the channel count)."""
    return click.option("--normalize", default=default, show_default=True,
                        metavar="MODE", help="Pixels as the teacher saw them: dataset, imagenet, none (0..1) or "
                                                      "MEAN,STD (README).")


def resolve_data(data: str | None, image_size: tuple[int, int] | None = None,
                 normalize: str | None = None) -> "ImageDataset":
    """The data set named by ``--data`` / ``--image-size``, fed as ``--normalize`` says."""
    from edgekd.inputs.data import apply_normalize
    from edgekd.inputs.loaders import load_dataset

    return apply_normalize(load_dataset(data, image_size=image_size), normalize)


def pair_arches(teachers: tuple[str, ...], arches: tuple[str, ...]) -> list[tuple[str | None, str | None]]:
    """Pair each ``--teacher`` with its ``--arch`` (none, one for all, or one each);
    no ``--teacher`` means the built-in teacher."""
    sources: tuple[str | None, ...] = teachers or (None,)
    if len(arches) not in (0, 1, len(sources)):
        raise EdgekdError(f"got {len(arches)} --arch for {len(sources)} --teacher: give --arch once "
                          "for all teachers or once per teacher, in the same order")
    paired = list(arches) * len(sources) if len(arches) == 1 else list(arches) or [None] * len(sources)
    return list(zip(sources, paired))


def resolve_teachers(teachers: tuple[str, ...], arches: tuple[str, ...], trust_code: bool,
                     dataset: "ImageDataset") -> list[tuple["nn.Module", str]]:
    """Load every teacher (checked against ``dataset``); returns (model, fingerprint) pairs."""
    from edgekd.distill.builtin_teacher import load_teacher
    from edgekd.inputs.teachers import model_fingerprint

    loaded = []
    for source, arch in pair_arches(teachers, arches):
        model = load_teacher(source, arch=arch, trust_code=trust_code, dataset=dataset)
        loaded.append((model, model_fingerprint(model)))
    return loaded


# --------------------------------------------------------------------------- registries
class RegistryChoice(click.Choice):
    """A :class:`click.Choice` whose choices are read from a registry each time they are used,
    so that a method (or backend) registered after the CLI was imported is accepted."""

    def __init__(self, names: Callable[[], list[str]]) -> None:
        self._names = names
        super().__init__(names())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())

    @choices.setter
    def choices(self, _value: Any) -> None:
        pass  # click's __init__ sets it; the registry stays the source


class RegistryHelpOption(click.Option):
    """A click option whose help text is built when shown (``help_text()``), from a registry."""

    def __init__(self, *args: Any, help_text: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._help_text = help_text

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self._help_text()
        return super().get_help_record(ctx)


def method_option(*, compress: bool, default: str, help_prefix: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--method``: the names in :mod:`edgekd.distill.methods` (for ``compress``: those it can
    search with), listed in the help; what each does and its options: ``edgekd methods``."""
    from edgekd.distill.methods import method_names

    names = lambda: method_names(compress=compress)  # noqa: E731
    flags = ("--method", "-m") if not compress else ("--method",)
    return click.option(*flags, cls=RegistryHelpOption, type=RegistryChoice(names), default=default,
                        show_default=True, metavar="METHOD",
                        help_text=lambda: f"{help_prefix}{', '.join(names())} (edgekd methods).")


METHOD_OPT_HELP = ("An option of the method's loss (repeatable), e.g. dkd.beta=8; each method's "
                   "options: edgekd methods.")


def _parse_method_opts(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
                       ) -> dict[str, float]:
    parsed: dict[str, float] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"'{text}' is not NAME=VALUE, e.g. dkd.beta=8")
        try:
            parsed[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"'{text}': '{value}' is not a number") from None
    return parsed


def method_opt_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--method-opt NAME=VALUE`` (repeatable), arriving as ``method_options``: a dict."""
    return click.option("--method-opt", "method_options", multiple=True, metavar="NAME=VALUE",
                        callback=_parse_method_opts, help=METHOD_OPT_HELP)(command)


def merge_method_options(fields: dict[str, Any], names: tuple[str, ...] = ("T", "alpha", "label_smoothing")) -> None:
    """Move the options ``names`` given with ``--method-opt`` into their own fields (``T`` ->
    ``temperature``, ``alpha``, ``label_smoothing``), in place; giving one both ways with
    different values is an error."""
    from edgekd.distill.methods import OPTION_FIELDS

    options = dict(fields.get("method_options") or {})
    for name in names:
        attr = OPTION_FIELDS[name]
        if name in options:
            value = options.pop(name)
            if attr in fields and fields[attr] is not None and fields[attr] != value:
                raise EdgekdError(f"--method-opt {name}={value:g} contradicts --{attr.replace('_', '-')} "
                                  f"{fields[attr]:g}: give it once")
            fields[attr] = value
    fields["method_options"] = options


def hint_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """FitNets' hint stage and hint modes (``train`` and ``compress``): ``--hint-mode``,
    ``--hint-beta``, ``--hint-lr``, ``--hint-patience``, ``--hint-min-delta``, ``--hint-min-r2``. Defaults are
    :class:`edgekd.distill.config.TrainConfig`'s (torch-free), so they live in one place; the
    values arrive as keyword arguments of the same names."""
    from edgekd.distill.config import HINT_MODES, TrainConfig

    default = TrainConfig.__dataclass_fields__
    options = [
        click.option("--hint-mode", type=click.Choice(HINT_MODES), default=default["hint_mode"].default,
                     show_default=True, metavar="MODE",
                     help="single: one hint at the teacher's middle; multi: one per teacher stage; "
                          "joint: single, its loss kept during KD."),
        click.option("--hint-beta", type=click.FloatRange(min=0), default=default["hint_beta"].default,
                     show_default=True, metavar="X", help="Hint weight in KD (joint)."),
        click.option("--hint-lr", type=click.FloatRange(min=0, min_open=True), default=default["hint_lr"].default,
                     show_default=True, metavar="LR", help="Hint-stage Adam lr."),
        click.option("--hint-patience", type=click.IntRange(min=0), default=default["hint_patience"].default,
                     show_default=True, metavar="N",
                     help="End the hint stage after N epochs without R^2 gain; 0: never."),
        click.option("--hint-min-delta", type=click.FloatRange(min=0), default=default["hint_min_delta"].default,
                     show_default=True, metavar="X", help="R^2 gain that counts."),
        click.option("--hint-min-r2", type=click.FloatRange(-1, 1), default=default["hint_min_r2"].default,
                     show_default=True, metavar="X",
                     help="Stop (and undo) a hint stage whose R^2 after its first epoch is below X (-1: off)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


FAMILY_HELP = (f"Student families, comma-separated [{','.join(default_families())} below 64 px; then GPU: "
               f"{','.join(default_families('gpu'))}, CPU: {','.join(default_families('cpu'))}].")


def parse_families(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``--family a,b`` (or a list from a --config file) as a tuple of registered names (empty:
    the default for the device); an unknown name is one error line listing the known ones."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    names = tuple(str(f).strip() for f in items if str(f).strip())
    for name in names:
        get_family(name)
    if text and not names:
        raise EdgekdError(f"--family {text!r} names no family: give one or more of "
                          f"{', '.join(family_names())}")
    return names
