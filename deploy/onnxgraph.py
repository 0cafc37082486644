"""Read an ONNX graph's nodes and constants without the ``onnx`` package (the device may have
only numpy and TensorRT), for the parser check in :mod:`deploy.opcheck`.

Protocol-buffer fields read (``onnx.proto``; the wire format is in :mod:`deploy.onnxmeta`):
``ModelProto.graph`` = 7; ``GraphProto``: ``node`` = 1, ``initializer`` = 5,
``sparse_initializer`` = 15; ``NodeProto``: ``input`` = 1, ``output`` = 2, ``name`` = 3,
``op_type`` = 4, ``attribute`` = 5, ``domain`` = 7; ``AttributeProto``: ``name`` = 1,
``t`` = 5 (tensor), ``g`` = 6 (graph), ``graphs`` = 11; ``TensorProto``: ``float_data`` = 4,
``int32_data`` = 5, ``int64_data`` = 7, ``name`` = 8, ``raw_data`` = 9, ``double_data`` = 10,
``uint64_data`` = 11, ``data_location`` = 14 (1 = external). Nodes of subgraphs (``If``,
``Loop``, ``Scan`` bodies) are listed with the main graph's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .onnxmeta import _LENGTH, OnnxHeader, _fields, parse_onnx_file, parse_onnx_header

_DATA_FIELDS = (4, 5, 7, 9, 10, 11)  # every field a tensor's values can be stored in


@dataclass(frozen=True)
class Node:
    op_type: str
    domain: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class Graph:
    """Every node (subgraphs included) and the constant tensors: initializers and ``Constant``
    outputs, each mapped to whether all its values are zero (None: stored externally)."""

    header: OnnxHeader
    nodes: tuple[Node, ...]
    constants: dict[str, bool | None] = field(default_factory=dict)

    @property
    def opset(self) -> int:
        """The ai.onnx opset (0 when the model imports none)."""
        return self.header.opsets.get("", self.header.opsets.get("ai.onnx", 0))


def _text(value: object) -> str:
    return bytes(value).decode("utf-8", "replace")


def _tensor(buf: bytes) -> tuple[str, bool | None]:
    """(name, all values zero?) of a TensorProto; None when the values live in another file."""
    name, zero, external = "", True, False
    for number, wire, value in _fields(buf):
        if number == 8 and wire == _LENGTH:
            name = _text(value)
        elif number == 14 and wire == 0:
            external = int(value) == 1
        elif number in _DATA_FIELDS:
            nonzero = bool(value) if isinstance(value, int) else any(bytes(value))
            zero = zero and not nonzero
    return name, (None if external else zero)


def _node(buf: bytes, nodes: list[Node], constants: dict[str, bool | None]) -> None:
    inputs, outputs, attributes = [], [], []
    name = op_type = domain = ""
    value_zero: bool | None = True
    for number, wire, value in _fields(buf):
        if wire != _LENGTH:
            continue
        if number == 1:
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 3:
            name = _text(value)
        elif number == 4:
            op_type = _text(value)
        elif number == 7:
            domain = _text(value)
        elif number == 5:
            attr_name, zero = _attribute(value, nodes, constants)
            attributes.append(attr_name)
            value_zero = zero if attr_name == "value" else value_zero
    nodes.append(Node(op_type, domain, name, tuple(inputs), tuple(outputs), tuple(attributes)))
    if op_type == "Constant" and domain in ("", "ai.onnx") and outputs:
        constants[outputs[0]] = value_zero if "value" in attributes else None


def _attribute(buf: bytes, nodes: list[Node], constants: dict[str, bool | None]) -> tuple[str, bool | None]:
    """(attribute name, all-zero flag of its tensor); subgraphs are read into ``nodes``."""
    name, zero = "", None
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _LENGTH:
            name = _text(value)
        elif number == 5 and wire == _LENGTH:
            zero = _tensor(value)[1]
        elif number in (6, 11) and wire == _LENGTH:
            _graph(value, nodes, constants)
    return name, zero


def _graph(buf: bytes, nodes: list[Node], constants: dict[str, bool | None]) -> None:
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _LENGTH:
            _node(value, nodes, constants)
        elif number == 5 and wire == _LENGTH:
            tensor_name, zero = _tensor(value)
            constants[tensor_name] = zero
        elif number == 15 and wire == _LENGTH:
            # SparseTensorProto {values = 1, indices = 2, dims = 3}: named by its values tensor
            values = next((v for n, w, v in _fields(value) if n == 1 and w == _LENGTH), b"")
            constants[_tensor(values)[0]] = None


def parse_graph(data: bytes) -> Graph:
    """The nodes and constants of a serialized ModelProto; ValueError when it is not ONNX."""
    header = parse_onnx_header(data)
    nodes: list[Node] = []
    constants: dict[str, bool | None] = {}
    for number, wire, value in _fields(data):
        if number == 7 and wire == _LENGTH:
            _graph(value, nodes, constants)
    return Graph(header, tuple(nodes), constants)


def read_graph(path: str | Path) -> Graph:
    """The graph of the ONNX file at ``path``; DeployError for a missing or non-ONNX file."""
    return parse_onnx_file(path, parse_graph, "a .onnx file exported by 'edgekd export'")
