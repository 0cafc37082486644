"""The exported graph in the form every supported TensorRT parses: global average pooling as
``GlobalAveragePool`` and the ai.onnx opset lowered to the one asked for (17 by default).

Why: the dynamo exporter writes opset 18, where ``ReduceMean`` takes its axes as an input.
TensorRT 8.5/8.6's ONNX importer reads a reduction's axes only from the attribute (the opset-17
form; onnx-tensorrt 8.5-GA/8.6-GA ``builtin_op_importers.cpp``, ``ReduceMean`` ->
``reduceTensor`` without the axes input), so it reduces over every axis, the output is
``[1, 1, 1, 1]`` and the reshape to ``[N, C]`` fails. Its operator table ends at opset 17
(``docs/operators.md``), while TensorRT 10 and 11 parse opsets 9 and up. So:

1. :func:`global_average_pools`: a ``ReduceMean`` over every spatial axis (2 .. rank-1) of a
   tensor of rank >= 3, with constant axes, becomes ``GlobalAveragePool`` (followed by
   ``Flatten(axis=1)`` when ``keepdims=0``): the same numbers, one node every version maps to
   one pooling layer, whatever the opset.
2. :func:`lower_opset`: ``onnx.version_converter`` to the target opset; a reduction's
   ``noop_with_empty_axes`` attribute (new in 18; the converter keeps it) is dropped when it
   is 0 (the default) and refused when it is 1 (no opset-17 equivalent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# opset-18 reductions whose axes moved from an attribute to an input (ReduceSum moved at 13)
REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
              "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")


def ai_onnx_opset(proto: "onnx.ModelProto") -> int:
    """The model's ai.onnx opset (0 when it imports none)."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _constants(proto: "onnx.ModelProto") -> dict[str, list[int]]:
    """Integer values of every initializer and ``Constant`` node output (for axes inputs)."""
    from onnx import numpy_helper

    values = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    out: dict[str, list[int]] = {}
    for name, tensor in values.items():
        if tensor.data_type in (6, 7):  # INT32, INT64
            out[name] = [int(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
    return out


def _ranks(proto: "onnx.ModelProto") -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: len(v.type.tensor_type.shape.dim) for v in infos
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}


def _reduce_axes(node: "onnx.NodeProto", constants: dict[str, list[int]]) -> list[int] | None:
    for attribute in node.attribute:
        if attribute.name == "axes":
            return list(attribute.ints)
    if len(node.input) > 1 and node.input[1]:
        return constants.get(node.input[1])
    return None


def _attr(node: "onnx.NodeProto", name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def global_average_pools(proto: "onnx.ModelProto") -> int:
    """Replace, in place, every ``ReduceMean`` over all spatial axes with ``GlobalAveragePool``
    (see the module docstring); returns how many were replaced."""
    from onnx import helper

    constants, ranks = _constants(proto), _ranks(proto)
    nodes, replaced = [], 0
    for node in proto.graph.node:
        rank = ranks.get(node.input[0], 0) if node.input else 0
        axes = _reduce_axes(node, constants) if node.op_type == "ReduceMean" and not node.domain else None
        if axes is None or rank < 3 or sorted(a % rank for a in axes) != list(range(2, rank)):
            nodes.append(node)
            continue
        name = node.name or node.output[0]
        if _attr(node, "keepdims", 1):
            nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]],
                                          name=f"{name}_gap"))
        else:
            pooled = f"{node.output[0]}_pooled"
            nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]], [pooled],
                                          name=f"{name}_gap"))
            nodes.append(helper.make_node("Flatten", [pooled], [node.output[0]], axis=1,
                                          name=f"{name}_flatten"))
        replaced += 1
    if replaced:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        _drop_unused_initializers(proto)
    return replaced


def _drop_unused_initializers(proto: "onnx.ModelProto") -> None:
    used = {name for node in proto.graph.node for name in node.input}
    used |= {o.name for o in proto.graph.output}
    keep = [t for t in proto.graph.initializer if t.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


def lower_opset(proto: "onnx.ModelProto", target: int) -> "onnx.ModelProto":
    """``proto`` converted to ai.onnx opset ``target`` (unchanged when it is already there or
    lower); :class:`EdgekdError` naming the reason when the conversion is impossible."""
    import onnx

    current = ai_onnx_opset(proto)
    if not current or current <= target:
        return proto
    try:
        lowered = onnx.version_converter.convert_version(proto, target)
    except Exception as error:  # noqa: BLE001 - the converter raises bare RuntimeErrors
        first = str(error).strip().splitlines()[-1][:160] if str(error).strip() else type(error).__name__
        raise EdgekdError(f"cannot lower the ONNX from opset {current} to {target} ({first})") from None
    if target < 18:
        for node in lowered.graph.node:
            if node.op_type in REDUCTIONS and not node.domain:
                kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
                if len(kept) != len(node.attribute) and _attr(node, "noop_with_empty_axes", 0):
                    raise EdgekdError(f"node '{node.name}' ({node.op_type}) uses "
                                      f"noop_with_empty_axes=1, which opset {target} cannot express")
                del node.attribute[:]
                node.attribute.extend(kept)
    return lowered


def for_tensorrt(proto: "onnx.ModelProto", opset: int) -> "onnx.ModelProto":
    """The graph every supported TensorRT parses: :func:`global_average_pools`, then
    :func:`lower_opset` to ``opset``."""
    global_average_pools(proto)
    return lower_opset(proto, opset)
