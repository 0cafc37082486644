"""Which student families the profile's TensorRT can build: a family variant whose ONNX
operators (``Family.onnx_ops``) are not all in the operator table of the ONNX parser of the
profile's TensorRT (``runtime.tensorrt``; ``deploy/trt_onnx_ops.json``, from onnx-tensorrt's
``docs/operators.md``) is not enumerated for that profile. The bundle's parser check
(:mod:`deploy.opcheck`) still checks every exported model, input forms and opset included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from edgekd.core.errors import EdgekdError
from edgekd.search.families import get_family

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.profiles import DeviceProfile


@dataclass
class ParserFilter:
    """``keep(family, variant)`` for :func:`edgekd.search.grid.enumerate_specs`; what it
    dropped, with the operators the parser lacks, is kept in ``skipped``."""

    tensorrt: str
    supported: frozenset[str]
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def keep(self, family: str, variant: dict[str, Any]) -> bool:
        declared = get_family(family).onnx_ops
        missing = sorted(declared(variant) - self.supported) if declared is not None else []
        if missing:
            label = family + "".join(f" {k}={v}" for k, v in sorted(variant.items()))
            self.skipped[label] = missing
        return not missing

    def describe(self) -> str:
        """One line per skipped family variant (empty when none was)."""
        return "; ".join(f"{label} skipped: TensorRT {self.tensorrt}'s ONNX parser has no "
                         f"{', '.join(ops)}" for label, ops in self.skipped.items())


def report_skipped(parser: ParserFilter | None, say: Callable[[str], None], enumerated: int) -> None:
    """Say which family variants ``parser`` left out; refuse when that left nothing to search."""
    if parser is None or not parser.skipped:
        return
    say(parser.describe())
    if not enumerated:
        raise EdgekdError(f"no student left to search: {parser.describe()}: search other "
                          "families (--family) or target a newer TensorRT")


def parser_filter(profile: "DeviceProfile") -> ParserFilter | None:
    """The filter for a TensorRT profile that names its version; None otherwise."""
    version = profile.runtime.tensorrt
    if profile.runtime.backend != "trt" or not version:
        return None
    from edgekd_deploy.opcheck import supported_operators

    return ParserFilter(version, supported_operators(version))
