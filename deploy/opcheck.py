"""Will TensorRT's ONNX parser take this model? Checked on the host, without TensorRT.

The data is ``trt_onnx_ops.json`` next to this file: per TensorRT version, the operators
onnx-tensorrt's ``docs/operators.md`` lists as supported at that release, the opset range, and
the input forms its importer needs (each entry names its repository, branch, commit and file;
``tools/trt_onnx_ops.py`` rebuilds it). A model is checked node by node:

* the ai.onnx opset lies in the version's range (8.5/8.6: 7..17; 10.3: 9..20; 11.x: 9..24);
* every operator is an ai.onnx operator the version supports (other domains need a plugin);
* ``ignored_inputs``: an input this version's importer never reads (8.x ``ReduceMean`` and the
  other reductions but ``ReduceSum`` read their axes only from the attribute, so the opset-18
  form reduces over every axis) must be absent;
* ``constant_inputs``: an input the importer needs as an initializer (or ``Constant``) is one;
* ``zero_inputs``: a zero point that must be zero (Q/DQ on every version) is all zeros.

Versions are matched by major version to the closest table at or below them (10.16 -> 10.3,
11.5 -> 11.0); a major version without a table (9.x, 12.x) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import DeployError
from .onnxgraph import Graph, read_graph

TABLE_FILE = "trt_onnx_ops.json"  # package data of deploy (read through importlib.resources)
REEXPORT = ("re-export it with a current edgekd, e.g. 'edgekd export RUN --out DIR --bundle' "
            "(opset 17 with GlobalAveragePool, which TensorRT 8.5 to 11 parse)")


@dataclass(frozen=True)
class Problem:
    """One reason the parser of TensorRT ``version`` would reject (or misread) the model."""

    version: str
    op: str
    node: str
    why: str
    fix: str

    def line(self) -> str:
        where = f"{self.op} node '{self.node}'" if self.node else self.op
        return f"TensorRT {self.version}: {where} {self.why}: {self.fix}"


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The per-version operator tables (``trt_onnx_ops.json``)."""
    try:
        data = json.loads(resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DeployError(f"the parser table deploy/{TABLE_FILE} cannot be read ({error}): copy "
                          "the deploy kit again (the .json ships with the .py files)") from None
    return data["versions"]


def _key(version: str) -> tuple[int, int]:
    parts = [int(p) for p in str(version).split(".")[:2] if p.isdigit()]
    if not parts:
        raise DeployError(f"TensorRT version {version!r} is not a version number: use e.g. 8.5, 10.3 or 11.4.1")
    return parts[0], parts[1] if len(parts) > 1 else 0


def table_version(version: str) -> str:
    """The table that describes TensorRT ``version`` (see the module docstring)."""
    want = _key(version)
    same_major = sorted((_key(k), k) for k in table() if _key(k)[0] == want[0])
    if not same_major:
        raise DeployError(f"no ONNX operator table for TensorRT {version}: the parser check knows "
                          f"{', '.join(supported_versions())}")
    at_or_below = [k for key, k in same_major if key <= want]
    return at_or_below[-1] if at_or_below else same_major[0][1]


def supported_versions() -> list[str]:
    return sorted(table(), key=_key)


def supported_operators(version: str) -> frozenset[str]:
    """The ai.onnx operators TensorRT ``version``'s ONNX parser imports."""
    return frozenset(table()[table_version(version)]["supported"])


def _node_problems(graph: Graph, version: str, entry: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    supported = set(entry["supported"])
    ref = entry["source"]["ref"]
    for node in graph.nodes:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            problems.append(Problem(version, f"{node.domain}.{op}", node.name,
                                    "is not an ai.onnx operator (TensorRT needs a plugin for it)",
                                    "export without custom-domain operators"))
            continue
        if op not in supported:
            listed = "lists it as unsupported" if op in entry["unsupported"] else "does not list it"
            problems.append(Problem(version, op, node.name,
                                    f"has no importer in its ONNX parser (onnx-tensorrt {ref} "
                                    f"docs/operators.md {listed})",
                                    "replace the layer that exports it, or target a TensorRT that "
                                    "supports it"))
            continue
        for index, name in entry["ignored_inputs"].get(op, {}).items():
            if len(node.inputs) > int(index) and node.inputs[int(index)]:
                problems.append(Problem(version, op, node.name,
                                        f"gives its {name} as an input (the opset-18 form), which "
                                        "its importer ignores (it would reduce over every axis)",
                                        REEXPORT))
        for index, name in entry["constant_inputs"].get(op, {}).items():
            i = int(index)
            if len(node.inputs) > i and node.inputs[i] and node.inputs[i] not in graph.constants:
                problems.append(Problem(version, op, node.name,
                                        f"computes its {name} input at run time, and its parser "
                                        "needs an initializer",
                                        "export with constant folding (edgekd export does)"))
        for index, name in entry["zero_inputs"].get(op, {}).items():
            i = int(index)
            if len(node.inputs) > i and node.inputs[i] and graph.constants.get(node.inputs[i]) is not True:
                problems.append(Problem(version, op, node.name,
                                        f"has a non-zero or computed {name} (its parser needs zero)",
                                        "quantize symmetrically (edgekd's INT8 copies are)"))
    return problems


def check_graph(graph: Graph, version: str) -> list[Problem]:
    """Every reason TensorRT ``version``'s ONNX parser would reject or misread ``graph``."""
    key = table_version(version)
    entry = table()[key]
    low, high = entry["opsets"]
    opset = graph.opset
    if not opset:
        return [Problem(version, "model", "", "imports no ai.onnx opset", REEXPORT)]
    problems = []
    if not low <= opset <= high:
        problems.append(Problem(version, f"opset {opset}", "",
                                f"is outside the opsets {low}..{high} its ONNX parser supports "
                                f"(onnx-tensorrt {entry['source']['ref']} docs/operators.md)",
                                REEXPORT))
    return problems + _node_problems(graph, version, entry)


def check_model(path: str | Path, version: str) -> list[Problem]:
    """:func:`check_graph` of the ONNX file at ``path``."""
    return check_graph(read_graph(path), version)


def require_parsable(path: str | Path, version: str) -> None:
    """Raise one DeployError line (the first problem, and how many more) unless TensorRT
    ``version``'s ONNX parser takes the model at ``path``."""
    problems = check_model(path, version)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DeployError(f"'{Path(path).name}' will not build: {problems[0].line()}{more}")


def installed_or_all() -> list[str]:
    """The installed TensorRT's version, else every version with a table."""
    try:
        import tensorrt  # noqa: PLC0415 - optional on the host
    except ImportError:
        return supported_versions()
    return [str(tensorrt.__version__)]
