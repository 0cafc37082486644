"""What ``edgekd train`` and ``edgekd layers`` do; they return data, the CLI prints it
(:mod:`edgekd.cli.train_view`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import iter_jsonl, loads_json
from edgekd.core.runfolder import CANDIDATES_JSONL, SPEC_JSON

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekd.distill.config import TrainConfig, TrainResult
    from edgekd.distill.hints import LayerInfo
    from edgekd.inputs.data import ImageDataset
    from edgekd.search.space import StudentSpec

DEFAULT_CANDIDATES = Path(CANDIDATES_JSONL)


def resolve_student_spec(student: str, search: Path | None = None) -> StudentSpec:
    """A StudentSpec from ``student``: a spec JSON file, or an id in a candidates.jsonl
    (see :func:`candidate_files`)."""
    from edgekd.search.space import StudentSpec

    path = Path(student).expanduser()
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise EdgekdError(f"student spec '{path}': no such file; pass a spec JSON file or a "
                              "candidate id from 'edgekd search'")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise EdgekdError(f"student spec '{path}' cannot be read ({error}): pass a JSON file") from None
        data = _json_or_error(text, path)
        if isinstance(data, dict) and "spec" in data and "stages" not in data:
            data = data["spec"]  # a candidates.jsonl record saved as a file
        return StudentSpec.from_dict(data)
    files = candidate_files(search)
    if not files:
        raise EdgekdError(f"student '{student}' is not a file and no candidates.jsonl was found "
                          "(./candidates.jsonl, runs/*/candidates.jsonl): pass a spec .json, run "
                          "'edgekd search' first, or pass --search RUN_FOLDER")
    for source in files:
        try:
            for record in iter_jsonl(source):
                if str(record.get("id", "")) == student:
                    return StudentSpec.from_dict(record["spec"])
        except (json.JSONDecodeError, KeyError, AttributeError) as error:
            raise EdgekdError(f"candidates file '{source}' is malformed ({error}): regenerate it "
                              "with 'edgekd search'") from None
    where = f"'{files[0]}'" + (f" (or {len(files) - 1} other candidates file(s))" if len(files) > 1 else "")
    raise EdgekdError(f"student id '{student}' is not in {where}: pick an id from 'edgekd search' "
                      "(its first column), pass --search RUN_FOLDER, or pass a spec .json")


def candidate_files(search: Path | None = None) -> list[Path]:
    """The candidates.jsonl files to look a student id up in: ``--search`` (a run folder that
    ``edgekd search`` or ``compress`` wrote, or the file itself); without it
    ./candidates.jsonl and every runs/*/candidates.jsonl, newest first (so an id printed by
    ``edgekd search``, which writes runs/search-PROFILE/, is found with no option)."""
    if search is not None:
        path = Path(search).expanduser()
        found = path / CANDIDATES_JSONL if path.is_dir() else path
        if not found.is_file():
            raise EdgekdError(f"--search {path}: no candidates.jsonl there: pass the folder "
                              "'edgekd search' or 'edgekd compress' wrote (e.g. "
                              "runs/search-host-cpu) or a candidates.jsonl")
        return [found]
    runs = sorted(Path("runs").glob("*/candidates.jsonl"), key=lambda p: p.stat().st_mtime,
                  reverse=True)
    return ([DEFAULT_CANDIDATES] if DEFAULT_CANDIDATES.is_file() else []) + runs


def _json_or_error(text: str, path: Path) -> Any:
    try:
        return loads_json(text)
    except ValueError as error:
        detail = str(error).removeprefix("invalid JSON: ")
        raise EdgekdError(f"student spec '{path}' is not valid JSON ({detail}): fix the file") from None


def run_train(*, spec: StudentSpec, teachers: list[tuple[nn.Module, str]], dataset: ImageDataset,
              config: TrainConfig, out_dir: Path, progress: bool = True) -> TrainResult:
    """Train ``spec`` from ``(teacher, fingerprint)`` pairs into ``out_dir`` (spec.json too)."""
    from edgekd.distill.methods import get_method
    from edgekd.distill.trainer import train_student
    from edgekd.core.fileio import atomic_write_json

    out_dir = Path(out_dir)
    atomic_write_json(out_dir / SPEC_JSON, spec.to_dict())
    uses = get_method(config.method).uses_teacher
    models = [m for m, _ in teachers] if uses else []
    fps = [fp for _, fp in teachers] if uses else []
    return train_student(spec, models, dataset, config, out_dir, teacher_fps=fps, progress=progress)


@dataclass
class LayerListing:
    """``edgekd layers`` output: the model's description, its layers, the marks (node -> what
    training uses it for: the pair(s) of ``--hint-mode``) and a closing note."""

    title: str
    layers: list[LayerInfo]
    marks: dict[str, str]
    note: str
    pairs: list[str] = field(default_factory=list)


def list_model_layers(model_arg: str, *, search: Path | None, arch: str | None, trust_code: bool,
                      data: str | None, teacher: str | None = None, student: str | None = None,
                      hint_mode: str = "single") -> LayerListing:
    """Layers of a student (a ``.json`` spec, or a 12-hex-digit candidate id looked up by
    :func:`candidate_files`) or else a teacher (any ``--teacher`` source, checked on ``data``),
    with the (hint, guided) pair(s) that fitnet training pairs for ``hint_mode``
    (:func:`edgekd.distill.pairing.hint_pairs`) marked: a student is paired with ``teacher``
    (default: the built-in one), a teacher with ``student`` (none given: nothing is marked)."""
    from edgekd.distill.builtin_teacher import load_teacher
    from edgekd.distill.hints import list_layers
    from edgekd.distill.pairing import hint_pairs
    from edgekd.inputs.loaders import load_dataset
    from edgekd.search.space import build

    stages = "all" if hint_mode == "multi" else "one"
    if _is_spec(model_arg):
        spec = resolve_student_spec(model_arg, search)
        model = build(spec).eval()
        dataset = load_dataset(data)
        the_teacher = load_teacher(teacher, arch=arch, trust_code=trust_code, dataset=dataset)
        pairs = hint_pairs(the_teacher, model, tuple(spec.input), stages=stages)
        marks = {p.guided_layer: f"guided {i}" for i, p in enumerate(pairs, 1)}
        return LayerListing(f"student {spec.id} ({spec.describe()})", list_layers(model, tuple(spec.input)), marks,
                            f"--hint-mode {hint_mode} with teacher {teacher or 'builtin'}; override with "
                            "--guided-layer/--hint-layer in 'edgekd train'", _pair_lines(pairs))
    dataset = load_dataset(data)
    model = load_teacher(model_arg, arch=arch, trust_code=trust_code, dataset=dataset)
    layers = list_layers(model, tuple(dataset.input_shape))
    title = f"teacher {model_arg} on input {list(dataset.input_shape)}"
    if student is None:
        return LayerListing(title, layers, {}, "give --student SPEC|ID to mark the hint layer(s) that "
                            "training pairs with that student (pairing depends on both networks)")
    spec = resolve_student_spec(student, search)
    pairs = hint_pairs(model, build(spec).eval(), tuple(dataset.input_shape), stages=stages)
    marks = {p.hint_layer: f"hint {i}" for i, p in enumerate(pairs, 1)}
    return LayerListing(title, layers, marks, f"--hint-mode {hint_mode} with student {spec.id}; override with "
                        "--hint-layer/--guided-layer in 'edgekd train'", _pair_lines(pairs))


def _is_spec(model_arg: str) -> bool:
    return model_arg.endswith(".json") or (
        re.fullmatch(r"[0-9a-f]{12}", model_arg) is not None and not Path(model_arg).exists())


def _pair_lines(pairs: list[Any]) -> list[str]:
    """``pair 1: hint NODE (CxHxW) <- guided NODE (CxHxW)``, one line per pair."""
    shape = lambda s: "x".join(str(v) for v in s)  # noqa: E731
    return [f"pair {i}: hint {p.hint_layer} ({shape(p.hint_shape)}) <- guided {p.guided_layer} "
            f"({shape(p.guided_shape)})" for i, p in enumerate(pairs, 1)]
