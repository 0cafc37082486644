"""Load a teacher classifier, check it against the data, fingerprint it; the built-in teacher.

Teacher sources accepted by :func:`load_teacher`:

(a)/(b) a **state_dict file** plus an architecture (``arch``): a torchvision model name
    (built with ``torchvision.models.get_model(name, weights=None, num_classes=K)``),
    ``"edgekd:builtin-cnn"`` (:class:`BuiltinCNN`), or, with ``trust_code``, a Python entry
    point ``"pkg.module:function"``. The weights are loaded with ``strict=True``: nothing is
    adapted silently, a mismatch is an error that lists what differs. Checkpoints that wrap
    the state_dict (``{"state_dict": ...}`` or ``{"model": ...}``) are unwrapped, and a
    ``module.`` prefix left by ``nn.DataParallel`` on every key is removed.
(c) a **TorchScript** file (``torch.jit.save``), recognised by its zip layout.
(d) a **torch.export** program (``torch.export.save``, usually ``.pt2``), only with
    ``trust_code=True``: torch's pt2 loader unpickles parts of the archive (its sample inputs
    fall back to ``torch.load(weights_only=False)``), so a crafted .pt2 runs code when loaded.
(e) a **Python entry point** ``"pkg.module:function"`` returning an ``nn.Module``, only
    with ``trust_code=True`` (importing it runs the user's code).

Files are read with ``torch.load(..., weights_only=True)``. A whole pickled module
(``torch.save(model)``) cannot be read that way; it is unpickled (``weights_only=False``,
which can run arbitrary code) only when ``trust_code`` is set.

Also read: edgekd's own files, which describe their architecture: the built-in teacher's
cache file and a student checkpoint (``edgekd.checkpoint/1``, e.g. for born-again
generations), so no ``arch`` is needed for them.

The built-in teacher (:func:`builtin_teacher`) is a wide, shallow CNN trained on the data
(by default the shipped MNIST subset) in about a minute on two CPU cores and cached in
``<cache>/teachers/builtin-cnn-<hash>.pt``, the hash covering the architecture, the data
fingerprint and the training recipe (see :mod:`edgekd.core.cache` for ``<cache>``).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import math
import os
import re
import sys
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from edgekd.core.cache import cache_root
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_torch_save, sha256_file, sha256_json
from edgekd.core.progress import StepBar, say

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.data import ImageDataset

BUILTIN = "builtin"
BUILTIN_ARCH = "edgekd:builtin-cnn"
BUILTIN_FORMAT = "edgekd.builtin-teacher/1"
STUDENT_FORMAT = "edgekd.checkpoint/1"
FINGERPRINT_ATTR = "edgekd_fingerprint"
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_REASON_CHARS = 160
TEACHER_HELP = ("omit it (or 'builtin') for the built-in teacher; a TorchScript file; a state_dict "
                "file with --arch; a torch.export (.pt2) file or 'pkg.module:function' with "
                "--trust-code")


# --------------------------------------------------------------------------- the built-in teacher
class BuiltinCNN(nn.Module):
    """The built-in teacher: a wide, shallow CNN.

    ``features`` is three blocks conv3x3 -> BatchNorm -> ReLU -> maxpool2 of widths
    (32, 64, 128), so a 28x28 input goes 28 -> 14 -> 7 -> 3; ``head`` is
    flatten -> linear(128*3*3, 256) -> ReLU -> dropout -> linear(256, classes).
    At 1x28x28 and 10 classes: 0.39M parameters, 7.7M multiply-accumulates. The automatic
    FitNets hint (:mod:`edgekd.distill.hints`, the middle activation) is ``features.1.2``,
    the 64-channel map of the middle block before its pooling.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 widths: Sequence[int] = (32, 64, 128), hidden: int = 256,
                 dropout: float = 0.25) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in input_shape)
        scale = 2 ** len(widths)
        if height < scale or width < scale:
            raise EdgekdError(f"the built-in teacher needs images of at least {scale}x{scale}, "
                              f"got {height}x{width}: use larger images or your own teacher")
        blocks = []
        for out_channels in widths:
            blocks.append(nn.Sequential(
                nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        flat = channels * (height // scale) * (width // scale)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.config = {"input_shape": [int(v) for v in input_shape], "num_classes": int(num_classes),
                       "widths": [int(w) for w in widths], "hidden": int(hidden),
                       "dropout": float(dropout)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class TeacherRecipe:
    """How the built-in teacher is trained: AdamW with a one-cycle learning-rate schedule
    (Smith & Topin 2019), cross-entropy, seeded shuffling and initialisation."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    max_train_samples: int | None = None


def builtin_teacher(dataset: "ImageDataset | None" = None, *, cache_dir: Path | None = None,
                    epochs: int | None = None, progress: bool = True,
                    max_train_samples: int | None = None) -> nn.Module:
    """The built-in teacher for ``dataset`` (default: the shipped MNIST subset), in eval mode.

    Loaded from ``<cache_dir>/teachers/builtin-cnn-<hash>.pt`` when present, else trained
    (:func:`train_builtin_teacher`) and saved there atomically. ``cache_dir`` defaults to
    :func:`edgekd.core.cache.cache_root`; ``epochs`` and ``max_train_samples`` override the recipe
    (tests use a tiny budget) and are part of the cache key.
    """
    from edgekd.inputs.data import load_dataset

    dataset = dataset if dataset is not None else load_dataset()
    recipe = TeacherRecipe(**{**asdict(TeacherRecipe()),
                              **({"epochs": epochs} if epochs is not None else {}),
                              "max_train_samples": max_train_samples})
    path = builtin_teacher_path(dataset, recipe, cache_dir=cache_dir)
    if path.is_file():
        try:
            return _model_from_payload(torch.load(path, map_location="cpu", weights_only=True), path)
        except (EdgekdError, RuntimeError, OSError, EOFError, ValueError, KeyError,
                zipfile.BadZipFile) as error:
            say(progress, f"built-in teacher cache {path} is unreadable ({error}); retraining")
    model, metrics = train_builtin_teacher(dataset, recipe, progress=progress)
    atomic_torch_save(path, {"format": BUILTIN_FORMAT, "arch": model.config,
                             "state_dict": model.state_dict(), "classes": list(dataset.classes),
                             "normalization": dataset.normalization.to_dict(),
                             "data_fingerprint": dataset.fingerprint(), "recipe": asdict(recipe),
                             "metrics": metrics})
    from edgekd.core import fmt

    say(progress, f"built-in teacher: test accuracy {fmt.percent(metrics['test_acc'])} "
                   f"({metrics['seconds']:.0f} s), cached in {path}")
    return model


def builtin_teacher_path(dataset: "ImageDataset", recipe: TeacherRecipe, *,
                         cache_dir: Path | None = None) -> Path:
    """Cache path keyed by the architecture, the data fingerprint and the recipe."""
    arch = BuiltinCNN(dataset.input_shape, dataset.num_classes).config
    key = sha256_json({"format": BUILTIN_FORMAT, "arch": arch, "data": dataset.fingerprint(),
                       "recipe": asdict(recipe)})
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "teachers" / f"builtin-cnn-{key[:16]}.pt"


def train_builtin_teacher(dataset: "ImageDataset", recipe: TeacherRecipe = TeacherRecipe(), *,
                          progress: bool = True) -> tuple[BuiltinCNN, dict[str, float]]:
    """Train :class:`BuiltinCNN` on the dataset's train split; returns (model in eval mode,
    metrics {test_acc, seconds, train_samples, epochs}). Deterministic for a given seed on a
    given machine (the global RNG state is restored afterwards)."""
    from edgekd.inputs.data import to_tensor

    start = time.perf_counter()
    x_train, y_train = dataset.x_train, dataset.y_train
    if recipe.max_train_samples is not None:
        x_train, y_train = x_train[:recipe.max_train_samples], y_train[:recipe.max_train_samples]
    inputs = to_tensor(x_train, dataset.normalization)
    targets = torch.from_numpy(y_train)
    steps_per_epoch = math.ceil(len(inputs) / recipe.batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = BuiltinCNN(dataset.input_shape, dataset.num_classes)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                      weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=max(1, recipe.epochs * steps_per_epoch))
        generator = torch.Generator().manual_seed(recipe.seed)
        model.train()
        # a live bar on a terminal; plain lines otherwise (pipes, CI logs): rich prints nothing
        # there until the end, which was minutes of silence
        live = progress and sys.stderr.isatty()
        say(progress and not live, f"training the built-in teacher: {recipe.epochs} epochs on "
                                    f"{len(inputs):,} images (once; it is cached)")
        with StepBar("training the built-in teacher", recipe.epochs * steps_per_epoch, enabled=live,
                     loss=True, transient=False) as bar:
            for _epoch in range(recipe.epochs):
                order = torch.randperm(len(inputs), generator=generator)
                for step in range(steps_per_epoch):
                    index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                    loss = nn.functional.cross_entropy(model(inputs[index]), targets[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    bar.update(loss=loss.item())
                say(progress and not live, f"built-in teacher: epoch {_epoch + 1}/{recipe.epochs}, "
                                            f"loss {loss.item():.4g}, "
                                            f"{time.perf_counter() - start:.0f} s")
    model.eval()
    metrics = {"test_acc": accuracy(model, dataset.x_test, dataset.y_test, dataset.normalization),
               "seconds": round(time.perf_counter() - start, 2), "train_samples": int(len(inputs)),
               "epochs": recipe.epochs}
    return model, metrics


def accuracy(model: nn.Module, x_uint8: np.ndarray, y: np.ndarray, norm: Any,
             batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on uint8 images."""
    from edgekd.inputs.data import teacher_logits

    logits = teacher_logits(model, x_uint8, norm, cache_dir=None, teacher_fp="", batch_size=batch_size)
    return float((logits.argmax(axis=1) == y).mean())


# --------------------------------------------------------------------------- loading
def load_teacher(source: str | None, *, arch: str | None = None, num_classes: int | None = None,
                 trust_code: bool = False, dataset: "ImageDataset | None" = None) -> nn.Module:
    """Load a teacher (see the module docstring for the formats) on the CPU in eval mode.

    ``num_classes`` (default: the dataset's) sizes the head of a model built from ``arch``.
    When ``dataset`` is given the teacher is checked against it (:func:`check_teacher`).
    The returned module carries its fingerprint in ``edgekd_fingerprint`` when it came from
    a file whose bytes identify it (TorchScript, torch.export).
    """
    if num_classes is None and dataset is not None:
        num_classes = dataset.num_classes
    input_shape = tuple(dataset.input_shape) if dataset is not None else None
    if source is None or source == BUILTIN:
        if arch is not None and arch != BUILTIN_ARCH:
            raise EdgekdError(f"--arch {arch} was given without --teacher: pass the weights file "
                              "with --teacher, or drop --arch to use the built-in teacher")
        model = builtin_teacher(dataset)
    elif _ENTRY_POINT.match(source) and not Path(source).exists():
        model = _call_entry_point(source, trust_code=trust_code)
    else:
        model = _load_file(Path(source).expanduser(), arch=arch, num_classes=num_classes,
                           input_shape=input_shape, trust_code=trust_code)
    model = model.to("cpu").eval()
    if dataset is not None:
        check_teacher(model, dataset.input_shape, dataset.num_classes)
    return model


def _load_file(path: Path, *, arch: str | None, num_classes: int | None,
               input_shape: tuple[int, ...] | None, trust_code: bool) -> nn.Module:
    if not path.is_file():
        raise EdgekdError(f"teacher '{path}': no such file; pass {TEACHER_HELP}")
    kind = file_kind(path)
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():  # torch.jit.load is deprecated upstream, not for users
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise EdgekdError(f"teacher '{path}': cannot load the TorchScript file "
                              f"({_short(error)}); re-save it with torch.jit.save") from None
        setattr(model, FINGERPRINT_ATTR, sha256_file(path))
        return model
    if kind == "export":
        if not trust_code:
            raise EdgekdError(
                f"teacher '{path}' is a torch.export program (.pt2), whose loader unpickles parts "
                "of the archive and so can run code hidden in it: pass --trust-code if you trust "
                "the file, or save a TorchScript file or model.state_dict() with --arch instead")
        return ExportedTeacher.load(path)
    payload = _torch_load(path, trust_code=trust_code)
    if isinstance(payload, nn.Module):  # only reachable with trust_code
        return payload
    if not isinstance(payload, dict):
        raise EdgekdError(f"teacher '{path}' holds a {type(payload).__name__}, not a model: save "
                          "model.state_dict(), a TorchScript file or a torch.export program")
    if payload.get("format") == STUDENT_FORMAT:
        from edgekd.core.checkpoint import load_student

        return load_student(path)[0]
    if payload.get("format") == BUILTIN_FORMAT:
        return _model_from_payload(payload, path)
    state = unwrap_state_dict(payload, path)
    if arch is None:
        raise EdgekdError(f"teacher '{path}' is a state_dict (weights only): pass --arch NAME, a "
                          f"torchvision model name such as resnet18, or {BUILTIN_ARCH}")
    model = build_arch(arch, num_classes=num_classes, input_shape=input_shape, trust_code=trust_code)
    load_weights(model, state, what=f"teacher '{path}'", arch=arch)
    return model


def file_kind(path: Path) -> str:
    """``"torchscript"``, ``"export"`` or ``"torch"`` (a torch.save file), from the zip layout:
    torch.export archives have ``<root>/archive_format``, TorchScript ones ``<root>/code/``."""
    if not zipfile.is_zipfile(path):
        return "torch"  # legacy (non-zip) torch.save, or garbage: torch.load tells
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "torch"
    if any(n.split("/", 1)[-1] == "archive_format" for n in names):
        return "export"
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    return "torch"


def _torch_load(path: Path, *, trust_code: bool) -> Any:
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = re.search(r"GLOBAL ([\w.]+)", str(error))
        if needed is None:  # not a pickle of Python objects: garbage or a foreign format
            raise EdgekdError(f"teacher '{path}' is not a readable PyTorch file (unknown content); "
                              f"pass {TEACHER_HELP}") from None
        if not trust_code:
            raise EdgekdError(
                f"teacher '{path}' is a pickled Python object (it needs {needed.group(1)}; e.g. "
                "torch.save(model)), which edgekd does not unpickle because that can run arbitrary "
                "code: save model.state_dict() and pass --arch, or save TorchScript/torch.export, "
                "or pass --trust-code if you trust the file") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise EdgekdError(f"teacher '{path}' is not a readable PyTorch file ({_short(error)}); "
                          f"pass {TEACHER_HELP}") from None
    try:  # trust_code: the user vouched for the file
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any failure of foreign code is the file's
        raise EdgekdError(f"teacher '{path}': unpickling failed ({_short(error)}); make the "
                          "classes it needs importable, or save a state_dict instead") from None


def unwrap_state_dict(payload: dict, path: Path | str) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: the dict itself, or its ``state_dict``/``model``
    entry; a ``module.`` prefix on every key (nn.DataParallel) is removed."""
    state: Any = payload
    for key in _WRAPPER_KEYS:
        if isinstance(payload.get(key), dict):
            state = payload[key]
            break
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kinds = sorted({type(v).__name__ for v in state.values()}) if state else ["nothing"]
        raise EdgekdError(f"teacher '{path}' is a dict with keys {sorted(payload)[:6]} holding "
                          f"{', '.join(kinds)}, not a state_dict of tensors: save model.state_dict()")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], *, what: str, arch: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with an error that says what differs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} is {_shape(state[k])} in the file but {_shape(expected[k])} in {arch}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({', '.join(unexpected[:3])})")
        parts += shapes[:3]
        raise EdgekdError(f"{what} does not match --arch {arch}: {'; '.join(parts)}; pass the "
                          "architecture (and class count) the weights were trained with")
    model.load_state_dict(state, strict=True)


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(v) for v in t.shape) or "scalar"


def build_arch(arch: str, *, num_classes: int | None, input_shape: Sequence[int] | None = None,
               trust_code: bool = False) -> nn.Module:
    """An untrained model for ``arch``: ``edgekd:builtin-cnn``, a torchvision model name, or
    (trust_code) an entry point ``pkg.module:function``."""
    if arch == BUILTIN_ARCH:
        return BuiltinCNN(input_shape or (1, 28, 28), num_classes or 10)
    if _ENTRY_POINT.match(arch):
        return _call_entry_point(arch, trust_code=trust_code)
    import torchvision

    names = torchvision.models.list_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names + [BUILTIN_ARCH], n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise EdgekdError(f"--arch '{arch}' is not a torchvision model or {BUILTIN_ARCH}: {hint}")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        return torchvision.models.get_model(arch, weights=None, **kwargs)
    except (TypeError, ValueError) as error:
        raise EdgekdError(f"--arch '{arch}' cannot be built with {kwargs} ({_short(error)}); "
                          "use another architecture or a TorchScript teacher") from None


def _call_entry_point(spec: str, *, trust_code: bool) -> nn.Module:
    if not trust_code:
        raise EdgekdError(f"teacher '{spec}' is Python code (an entry point); importing it runs that "
                          "code: pass --trust-code if you trust it")
    module_name, attr_path = spec.split(":", 1)
    cwd = os.getcwd()
    if cwd not in sys.path:  # `edgekd` (a console script) does not put the cwd on sys.path
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            target = getattr(target, attr)
    except (ImportError, AttributeError) as error:
        raise EdgekdError(f"entry point '{spec}' cannot be imported ({_short(error)}); check the "
                          "module path and that it is importable from the current directory") from None
    model = target if isinstance(target, nn.Module) else target()
    if not isinstance(model, nn.Module):
        raise EdgekdError(f"entry point '{spec}' returned a {type(model).__name__}, not a "
                          "torch.nn.Module: make it return the model")
    return model


def _model_from_payload(payload: dict, path: Path) -> nn.Module:
    """Rebuild :class:`BuiltinCNN` from its cache-file payload."""
    if payload.get("format") != BUILTIN_FORMAT:
        raise EdgekdError(f"'{path}' is not a built-in teacher file: delete it to retrain")
    model = BuiltinCNN(**payload["arch"])
    load_weights(model, payload["state_dict"], what=f"teacher '{path}'", arch=BUILTIN_ARCH)
    return model.eval()


class ExportedTeacher(nn.Module):
    """A torch.export program as a module.

    The program's graph is fixed at export time (an exported model has no train/eval mode:
    ``train()`` here only flips this wrapper's flag). When the batch size was exported as a
    constant, larger batches are run in chunks of that size (the last one padded).
    """

    def __init__(self, program: Any, fingerprint: str) -> None:
        super().__init__()
        # torch.export.unflatten restores the original module hierarchy (named submodules that
        # forward hooks, hint taps and per-layer costing can use); program.module() is one
        # flat graph. Fall back to it for programs unflatten cannot rebuild.
        try:
            self.program = torch.export.unflatten(program)
        except Exception:  # noqa: BLE001 - any unflatten failure: the flat module still runs
            self.program = program.module()
        setattr(self, FINGERPRINT_ATTR, fingerprint)
        inputs = [n for n in program.graph.nodes
                  if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
        value = inputs[0].meta.get("val") if len(inputs) == 1 else None
        first = value.shape[0] if value is not None and value.dim() > 0 else None
        self.static_batch: int | None = first if isinstance(first, int) else None

    @classmethod
    def load(cls, path: Path) -> "ExportedTeacher":
        import logging

        class _Keep(logging.Handler):  # torch logs the real error with a traceback, then
            def emit(self, record: logging.LogRecord) -> None:  # raises a vaguer one
                if record.exc_info and record.exc_info[1] is not None:
                    seen.append(record.exc_info[1])

        seen: list[BaseException] = []
        logger, keep = logging.getLogger("torch.export"), _Keep()
        propagate, logger.propagate = logger.propagate, False
        handlers, logger.handlers = logger.handlers, [keep]
        try:
            program = torch.export.load(str(path))
        except Exception as error:  # noqa: BLE001 - a corrupt/foreign archive
            raise EdgekdError(f"teacher '{path}': cannot load the torch.export program "
                              f"({_short(seen[0] if seen else error)}); re-save it with "
                              "torch.export.save") from None
        finally:
            logger.handlers, logger.propagate = handlers, propagate
        return cls(program, sha256_file(path))

    def train(self, mode: bool = True) -> "ExportedTeacher":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return in_static_batches(self.program, x, self.static_batch)


def in_static_batches(fn: Any, x: torch.Tensor, size: int | None) -> torch.Tensor:
    """``fn(x)`` for a graph exported at the constant batch ``size``: run in chunks of ``size``
    (the last one zero-padded) and concatenated; ``fn`` as is when ``size`` is None or fits."""
    if size is None or x.shape[0] == size:
        return fn(x)
    outputs = []
    for start in range(0, x.shape[0], size):
        chunk = x[start:start + size]
        pad = size - chunk.shape[0]
        if pad:
            chunk = torch.cat([chunk, chunk.new_zeros((pad, *chunk.shape[1:]))])
        outputs.append(fn(chunk)[:size - pad])
    return torch.cat(outputs)


# --------------------------------------------------------------------------- checks, fingerprints
def check_teacher(model: nn.Module, input_shape: Sequence[int], num_classes: int) -> None:
    """Run the model on a zero batch ``(2, C, H, W)``; raise :class:`EdgekdError` naming what
    does not match (input channels or size, output shape, class count)."""
    channels = int(input_shape[0])
    shape_text = "x".join(str(int(v)) for v in input_shape)
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != channels:
        raise EdgekdError(
            f"teacher does not accept input {shape_text}: its first convolution takes "
            f"{first_conv.in_channels} channels but the data has {channels}"
            f"{_channel_hint(first_conv.in_channels, channels)}")
    try:
        with torch.inference_mode():
            output = model(torch.zeros((2, *[int(v) for v in input_shape])))
    except Exception as error:  # noqa: BLE001 - any failure of the forward pass is the mismatch
        # TorchScript / torch.export teachers hide their layers: read the first conv's weight
        weight = next((p for p in model.parameters() if p.dim() == 4), None)
        if weight is not None and weight.shape[1] != channels:
            raise EdgekdError(
                f"teacher does not accept input {shape_text}: its first convolution takes "
                f"{weight.shape[1]} channels but the data has {channels}"
                f"{_channel_hint(int(weight.shape[1]), channels)}") from None
        raise EdgekdError(f"teacher does not accept input {shape_text}: {_short(error)}; use a "
                          "teacher trained on images of this size and channel count") from None
    if not isinstance(output, torch.Tensor):
        raise EdgekdError(f"teacher returns a {type(output).__name__}, not a tensor of logits: "
                          "wrap it so that forward() returns (batch, classes) logits")
    if output.dim() != 2 or output.shape[0] != 2:
        raise EdgekdError(f"teacher outputs shape {tuple(output.shape)} for a batch of 2: expected "
                          "(batch, classes) logits; use a classification model")
    if output.shape[1] != num_classes:
        raise EdgekdError(f"teacher outputs {output.shape[1]} classes but the data has {num_classes}; "
                          f"use a teacher trained on these {num_classes} classes, or check that "
                          "--data is the data the teacher was trained on")


def _channel_hint(teacher_channels: int, data_channels: int) -> str:
    if data_channels == 1 and teacher_channels == 3:
        return ("; the data is grayscale and the teacher expects RGB (like ImageNet models): "
                "convert the data to 3 channels (repeat the gray channel) or use a teacher "
                "trained on grayscale images")
    if data_channels == 3 and teacher_channels == 1:
        return ("; the data is RGB and the teacher expects grayscale: convert the data to "
                "grayscale or use a teacher trained on RGB images")
    return "; use a teacher trained on data with this many channels"


def model_fingerprint(model: nn.Module) -> str:
    """sha256 identifying a teacher: the file's sha256 for TorchScript/torch.export teachers
    (set at load time), else the hash of the state_dict (names, dtypes, shapes, bytes)."""
    known = getattr(model, FINGERPRINT_ATTR, None)
    if isinstance(known, str):
        return known
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _short(error: BaseException) -> str:
    """One short line from an exception; for TorchScript's multi-line interpreter errors, the
    last line (the underlying error) instead of the generic first one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        lines = [lines[-1].removeprefix("RuntimeError: ")]
    text = " ".join(" ".join(lines).split()) or type(error).__name__
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."
