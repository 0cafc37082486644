"""Read an ONNX file's header (IR version, opsets, ``metadata_props``) without the ``onnx``
package: the device may have only numpy and TensorRT.

An ONNX file is a serialized ``ModelProto`` (protocol buffers). Its top-level fields used
here are ``ir_version`` (1, varint), ``producer_name`` (2, string), ``graph`` (7, message:
skipped by its length), ``opset_import`` (8, repeated ``OperatorSetIdProto`` {domain=1,
version=2}) and ``metadata_props`` (14, repeated ``StringStringEntryProto`` {key=1,
value=2}). The wire format: each field starts with a varint key ``field << 3 | wire_type``;
wire type 0 is a varint, 1 is 8 bytes, 2 is a varint length + bytes, 5 is 4 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .errors import DeployError
from .files import loads_json

T = TypeVar("T")

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# The ``edgekd.*`` keys of an exported model's ``metadata_props``: the one list edgekd (which
# writes them; it imports them from here) and the kit (which reads them) share.
ID = "edgekd.id"                          # the student's id (trial or spec id)
SPEC = "edgekd.spec"                      # JSON StudentSpec
CLASSES = "edgekd.classes"                # JSON list of class names
INPUT_SHAPE = "edgekd.input_shape"        # JSON [C, H, W]
NORMALIZATION = "edgekd.normalization"    # JSON {"mean": [...], "std": [...]} (per channel)
ACCURACY = "edgekd.accuracy"              # test accuracy of the weights exported
PROFILE = "edgekd.profile"                # the device profile it was exported for
METHOD = "edgekd.method"                  # how it was trained (fitnet, kd, ...)
VERSION = "edgekd.version"                # edgekd's version
OPSET = "edgekd.opset"                    # the ai.onnx opset of the file
EXPORTER = "edgekd.exporter"              # which torch exporter wrote it
BATCH = "edgekd.batch"                    # JSON {"static": N} or {"min", "opt", "max"}
SIMPLIFIED = "edgekd.simplified"          # whether onnxsim ran
PARITY = "edgekd.parity"                  # JSON parity report against torch, or "not checked"
PRECISION = "edgekd.precision"            # "int8" for a Q/DQ model (else fp32)
QUANTIZATION = "edgekd.quantization"      # how a Q/DQ model was quantized
KEYS = (ID, SPEC, CLASSES, INPUT_SHAPE, NORMALIZATION, ACCURACY, PROFILE, METHOD, VERSION, OPSET,
        EXPORTER, BATCH, SIMPLIFIED, PARITY, PRECISION, QUANTIZATION)


def json_value(metadata: dict[str, str], key: str, default: object = None) -> object:
    """The JSON value stored under ``key`` (``default`` when absent or not valid JSON)."""
    raw = metadata.get(key)
    if raw is None:
        return default
    if not isinstance(raw, str):
        return raw
    try:
        return loads_json(raw)
    except ValueError:
        return default


def batch_of(metadata: dict[str, str]) -> dict[str, int]:
    """``edgekd.batch``: ``{"static": N}`` or ``{"min", "opt", "max"}``; {} when absent or damaged."""
    value = json_value(metadata, BATCH, {})
    return value if isinstance(value, dict) else {}


def normalization_of(metadata: dict[str, str], where: str = "the model"
                     ) -> tuple[list[float], list[float]] | None:
    """``(mean, std)`` from ``edgekd.normalization``, None when absent. Malformed values (not
    JSON, missing or unequal lists, a std that is zero, negative or not finite) are refused
    in one line: dividing by them would give wrong accuracies silently."""
    raw = metadata.get(NORMALIZATION)
    if not raw:
        return None
    fix = "re-export the model with edgekd, or fix its edgekd.normalization metadata"
    try:
        norm = loads_json(raw) if isinstance(raw, str) else raw
        mean = [float(v) for v in norm["mean"]]
        std = [float(v) for v in norm["std"]]
    except (ValueError, TypeError, KeyError):
        raise DeployError(f"{where}: edgekd.normalization is not {{\"mean\": [...], \"std\": "
                          f"[...]}} ({str(raw)[:40]!r}): {fix}") from None
    if not mean or len(mean) != len(std):
        raise DeployError(f"{where}: edgekd.normalization has {len(mean)} mean(s) and {len(std)} "
                          f"std(s): {fix}")
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
        raise DeployError(f"{where}: edgekd.normalization has a std that is zero, negative or not "
                          f"finite (std {std}, mean {mean}): {fix}")
    return mean, std


#: ``--normalize``'s named statistics, per channel of ``x / 255``: ``imagenet`` is what torchvision's
#: pretrained weights expect; ``none`` feeds pixels in 0..1 (mean 0, std 1). ``dataset`` (the
#: default) is computed on the data's train split by whoever holds the data.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZE_NAMES = ("dataset", "imagenet", "none")
NORMALIZE_HELP = ("How pixels are fed to the models, as the teacher was trained: dataset = per-channel "
                  "mean/std of the train split; imagenet = ImageNet's mean/std (torchvision's pretrained "
                  "weights); none = pixels in 0..1; or MEAN,STD (one value for every channel, in 0..1 "
                  "units) or M1,..,MC,S1,..,SC (C means, then C stds).")


def parse_normalize(text: str, channels: int) -> tuple[list[float], list[float]] | None:
    """``--normalize TEXT`` for ``channels``-channel images as ``(mean, std)``; None for
    ``dataset`` (the caller computes it). Refuses, in one line, a name or list that does not
    fit: imagenet on non-RGB images, a count other than 2 or 2*channels, a std <= 0."""
    name = text.strip().lower()
    if name == "dataset":
        return None
    if name == "none":
        return [0.0] * channels, [1.0] * channels
    if name == "imagenet":
        if channels != 3:
            raise DeployError(f"--normalize imagenet needs RGB images, the data has {channels} "
                              "channel(s): use dataset, none or MEAN,STD")
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    try:
        values = [float(v) for v in name.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 2 * channels):
        raise DeployError(f"--normalize {text!r} is not {', '.join(NORMALIZE_NAMES)}, MEAN,STD or "
                          f"{channels} means then {channels} stds (comma-separated, in 0..1 units)")
    if len(values) == 2:
        values = [values[0]] * channels + [values[1]] * channels
    mean, std = values[:channels], values[channels:]
    if not all(math.isfinite(v) for v in values) or not all(v > 0 for v in std):
        raise DeployError(f"--normalize {text!r}: every value must be finite and every std > 0")
    return mean, std


@dataclass(frozen=True)
class OnnxHeader:
    ir_version: int
    producer: str
    opsets: dict[str, int]
    metadata: dict[str, str] = field(default_factory=dict)

    def normalization(self) -> tuple[list[float], list[float]] | None:
        """``(mean, std)`` from ``edgekd.normalization`` metadata (:func:`normalization_of`)."""
        return normalization_of(self.metadata)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """Yield ``(field_number, wire_type, value)``; value is an int or a bytes slice."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == _LENGTH:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == _FIXED32:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def _pair(buf: bytes) -> dict[int, object]:
    return {number: value for number, _wire, value in _fields(buf)}


def parse_onnx_header(data: bytes) -> OnnxHeader:
    """Parse the top-level ``ModelProto`` fields; ValueError when ``data`` is not ONNX."""
    ir_version, producer, has_graph = 0, "", False
    opsets: dict[str, int] = {}
    metadata: dict[str, str] = {}
    for number, wire, value in _fields(data):
        if number == 1 and wire == _VARINT:
            ir_version = int(value)
        elif number == 2 and wire == _LENGTH:
            producer = bytes(value).decode("utf-8", "replace")
        elif number == 7 and wire == _LENGTH:
            has_graph = True
        elif number == 8 and wire == _LENGTH:
            entry = _pair(value)
            opsets[bytes(entry.get(1, b"")).decode()] = int(entry.get(2, 0))
        elif number == 14 and wire == _LENGTH:
            entry = _pair(value)
            metadata[bytes(entry.get(1, b"")).decode()] = bytes(entry.get(2, b"")).decode()
    if not ir_version or not has_graph:
        raise ValueError("no ir_version or graph")
    return OnnxHeader(ir_version, producer, opsets, metadata)


def parse_onnx_file(path: str | Path, parse: Callable[[bytes], T], expected: str) -> T:
    """``parse`` applied to the bytes of the ONNX file at ``path``; DeployError for a missing or
    non-ONNX file, naming ``expected`` (what the command takes) as the fix."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"model file '{path}' not found: check the path")
    try:
        return parse(path.read_bytes())
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise DeployError(f"'{path}' is not an ONNX model ({error}): pass {expected}") from None


def read_onnx_header(path: str | Path) -> OnnxHeader:
    """The header of the ONNX file at ``path``; DeployError for a missing or non-ONNX file."""
    return parse_onnx_file(path, parse_onnx_header,
                           "a .onnx file exported by 'edgekd export' or a TensorRT .engine")
