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

The built-in teacher (source omitted or ``"builtin"``) is :class:`BuiltinCNN`
(:mod:`edgekd.inputs.builtin_teacher`: architecture, recipe, cache file). Training it is the
distill stage's job, so :func:`load_teacher` takes it from its ``builtin`` argument;
:func:`edgekd.distill.builtin_teacher.load_teacher` passes the one that trains it through
the trainer (or reads it from the cache).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import os
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

from edgekd.core.checkpoint import load_weights
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import sha256_file
from edgekd.inputs.builtin_teacher import (BUILTIN, BUILTIN_ARCH, BUILTIN_FORMAT, BuiltinCNN,  # noqa: F401
                                           model_from_payload)

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.data import ImageDataset

STUDENT_FORMAT = "edgekd.checkpoint/1"
FINGERPRINT_ATTR = "edgekd_fingerprint"
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_REASON_CHARS = 160
TEACHER_HELP = ("omit it (or 'builtin') for the built-in teacher; a TorchScript file; a state_dict "
                "file with --arch; a torch.export (.pt2) file or 'pkg.module:function' with "
                "--trust-code")


# --------------------------------------------------------------------------- loading
def load_teacher(source: str | None, *, arch: str | None = None, num_classes: int | None = None,
                 trust_code: bool = False, dataset: "ImageDataset | None" = None,
                 builtin: "Callable[[ImageDataset | None], nn.Module] | None" = None) -> nn.Module:
    """Load a teacher (see the module docstring for the formats) on the CPU in eval mode.

    ``builtin(dataset)`` gives the built-in teacher (source None or ``"builtin"``); callers
    pass :func:`edgekd.distill.builtin_teacher.builtin_teacher`, or use
    :func:`edgekd.distill.builtin_teacher.load_teacher`, which does.

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
        if builtin is None:
            raise ValueError("the built-in teacher is trained in the distill stage: call "
                             "edgekd.distill.builtin_teacher.load_teacher")
        model = builtin(dataset)
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
        return model_from_payload(payload, path)
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
