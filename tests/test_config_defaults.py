"""Issue 10.4: every default lives once, in its configuration dataclass; the CLI reads it.

The click options of ``edgekd train``, ``search`` and ``compress`` are introspected and each
default is compared with the field of TrainConfig, SearchConfig (its grid: SpaceConfig) or
CompressConfig that the option sets, so a default changed in one place and not the other
fails here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click
import pytest

from edgekd.cli.cli import cli
from edgekd.core.units import parse_shape
from edgekd.distill.config import TrainConfig
from edgekd.run.config import CompressConfig
from edgekd.search.config import SearchConfig
from edgekd.search.space import SpaceConfig


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


#: option name -> (dataclass, field, how the option's text becomes the field's value)
SEARCH_FIELDS: dict[str, tuple[type, str, Callable[[Any], Any]]] = {
    "profile_name": (SearchConfig, "profile", str),
    "input_text": (SearchConfig, "input_shape", parse_shape),
    "classes": (SearchConfig, "classes", int),
    "max_macs": (SearchConfig, "max_macs", lambda v: v),
    "latency_ms": (SearchConfig, "latency_ms", lambda v: v),
    "shortlist": (SearchConfig, "shortlist", int),
    "measure": (SearchConfig, "measure", bool),
    "calibration": (SearchConfig, "calibration", lambda v: v),
    "max_depth": (SpaceConfig, "max_depth", lambda v: v if v is None else int(v)),
    "kernels": (SpaceConfig, "kernels", _ints),
    "stem_strides": (SpaceConfig, "stem_strides", _ints),
}


def _field_default(config_class: type, name: str) -> Any:
    field = {f.name: f for f in dataclasses.fields(config_class)}[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _options(command: str) -> list[click.Option]:
    found = cli.commands[command].params
    return [p for p in found if isinstance(p, click.Option) and p.name not in ("verbose", "help")]


def _mapped(command: str, config_class: type) -> list[tuple[click.Option, type, str, Callable[[Any], Any]]]:
    """The options of ``command`` that set a field, with the field and the option -> field map."""
    names = {f.name for f in dataclasses.fields(config_class)}
    mapped = []
    for option in _options(command):
        if command == "search":
            if option.name in SEARCH_FIELDS:
                mapped.append((option, *SEARCH_FIELDS[option.name]))
        elif option.name in names:
            mapped.append((option, config_class, option.name, lambda v: v))
        elif option.name.startswith("no_") and option.name[3:] in names:  # --no-bundle: bundle=False
            mapped.append((option, config_class, option.name[3:], lambda v: not v))
    return mapped


@pytest.mark.parametrize("command, config_class, at_least", [
    ("train", TrainConfig, 20), ("compress", CompressConfig, 35), ("search", SearchConfig, 11)])
def test_the_cli_defaults_are_the_dataclasses(command: str, config_class: type, at_least: int) -> None:
    mapped = _mapped(command, config_class)
    assert len(mapped) >= at_least, [o.name for o, *_ in mapped]  # the mapping really covers the options
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for option, owner, name, to_field in mapped:
        expected = _field_default(owner, name)
        if option.multiple:  # a repeatable option (--method-opt): given nothing, the field's empty default
            assert expected in ((), {}, []), f"--{option.name} is repeatable but {owner.__name__}.{name} = {expected!r}"
            continue
        if owner is CompressConfig and expected is None and name in train_fields and option.default is not None:
            owner, expected = TrainConfig, _field_default(TrainConfig, name)  # None: the trainer's default
        assert to_field(option.default) == expected, (
            f"edgekd {command} --{option.name.replace('_', '-')} defaults to {option.default!r}, "
            f"{owner.__name__}.{name} to {expected!r}: take the CLI default from the dataclass")
        if option.default is not None and not option.is_flag and option.name != "config":
            assert option.show_default, f"edgekd {command} --{option.name}: show_default=True"


def test_every_train_option_is_a_train_config_field() -> None:
    """Each option of ``edgekd train`` that is about training maps to one TrainConfig field."""
    inputs = {"student", "search", "old_search", "teacher", "arch", "trust_code", "data", "image_size", "normalize", "val_data",
              "out_dir"}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {o.name for o in _options("train")} - inputs <= names


def test_every_compress_option_is_a_compress_config_field() -> None:
    """``edgekd compress`` passes its options to CompressConfig by name (``--no-X`` sets ``X``)."""
    names = {f.name for f in dataclasses.fields(CompressConfig)}
    for option in (o for o in _options("compress") if o.expose_value):  # not --config (read first)
        name = option.name[3:] if option.name.startswith("no_") else option.name
        assert name in names, f"edgekd compress --{option.name}: add a CompressConfig field {name!r}"


def test_the_cli_builds_the_configs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """What ``compress`` hands the pipeline is the CompressConfig of its options."""
    from click.testing import CliRunner

    import edgekd.run.pipeline as pipeline

    seen: list[CompressConfig] = []
    monkeypatch.setattr(pipeline, "compress", lambda config: seen.append(config) or 1 / 0)
    CliRunner().invoke(cli, ["compress", "--epochs", "4", "--max-macs", "2M", "--no-bundle", "--ema", "0.9",
                             "--out", str(tmp_path / "o")])
    (config,) = seen
    assert (config.epochs, config.max_macs, config.bundle, config.ema, config.progress) == (4, 2_000_000, False, 0.9, True)
    assert config.candidates == CompressConfig().candidates and config.options["epochs"] == 4


def test_a_changed_dataclass_default_reaches_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """default_of reads the field at the time the option is built, not a copy of it."""
    from edgekd.cli.base import default_of

    field = {f.name: f for f in dataclasses.fields(TrainConfig)}["epochs"]
    monkeypatch.setattr(field, "default", 77)
    assert default_of(TrainConfig, "epochs") == 77
    with pytest.raises(AttributeError):
        default_of(TrainConfig, "no_such_field")


def _all_options(group: click.Group = cli) -> list[tuple[str, click.Option]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", o) for sub, o in _all_options(command)]
        else:
            found += [(name, p) for p in command.params if isinstance(p, click.Option)]
    return found


def test_every_flag_has_an_explicit_boolean_default() -> None:
    """Click 8.3+ leaves a flag without ``default=`` at an UNSET sentinel, which is neither the
    dataclass's value nor a bool: every on/off flag states its default."""
    for command, option in _all_options():
        if option.is_flag and option.is_bool_flag and option.name != "help":
            assert isinstance(option.default, bool), f"edgekd {command} --{option.name}: default={option.default!r}"
