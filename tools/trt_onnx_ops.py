"""Refresh deploy/trt_onnx_ops.json: per TensorRT version, the ONNX operators its ONNX parser
(onnx-tensorrt) accepts and the input forms it needs, for the host-side parser check
(deploy/opcheck.py) that runs without TensorRT.

How the table is made (run by hand; needs git and the ``onnx`` package):

    git clone https://github.com/onnx/onnx-tensorrt /tmp/onnx-tensorrt
    python tools/trt_onnx_ops.py /tmp/onnx-tensorrt > deploy/trt_onnx_ops.json

1. ``docs/operators.md`` is read at the release branches 8.5-GA, 8.6-GA and 10.1-GA (the
   commits are recorded). Each row gives the operator, Y/N, and a restriction text; an operator
   missing from a version's table is unsupported there.
2. Restrictions of the form "`name` must be an initializer / a constant tensor / a build-time
   constant / resolvable to a constant" become ``constant_inputs`` (the input's index from the
   ONNX operator schema); "`name` must be zero/0" become ``zero_inputs``.
3. ``ignored_inputs`` (8.5, 8.6): the importer in ``builtin_op_importers.cpp`` at 8.5-GA/8.6-GA
   passes a reduction's axes input to ``reduceTensor`` only for ``ReduceSum``; every other
   ``Reduce*`` reads the ``axes`` attribute alone and reduces over every axis when it is absent,
   so the opset-18 form (axes as input) builds the wrong network.
4. 10.3 and 11.0 are the 10.1-GA table plus the changes named in ``DELTAS``, each with its
   source: onnx-tensorrt ``docs/Changelog.md`` (10.2 to 10.15), ``docs/operators.md`` as of the
   TensorRT 10.15 GA release, and the TensorRT 11.0-11.5 release notes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import onnx.defs

REPO = "onnx/onnx-tensorrt"
FILE = "docs/operators.md"
REDUCTIONS_WITHOUT_AXES_INPUT = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                                 "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
                                 "ReduceSumSquare")
BASES = {  # version -> (release branch, opset range from the file's header / ModelImporter.cpp)
    "8.5": ("8.5-GA", (7, 17)),
    "8.6": ("8.6-GA", (7, 17)),
    "10.1": ("10.1-GA", (9, 20)),
}
# (version, derived from, opsets, supported added, constant inputs dropped, source)
DELTAS = (
    ("10.3", "10.1", (9, 20), (), ("Slice",),
     "docs/Changelog.md: 10.2 GA (GRU/Squeeze importer changes), 10.3 GA (tensor axes inputs "
     "for Slice)"),
    ("11.0", "10.3", (9, 24),
     ("Attention", "BlackmanWindow", "DFT", "HammingWindow", "HannWindow", "RMSNormalization",
      "RotaryEmbedding", "STFT", "Swish", "TensorScatter"),
     ("Pad",),
     "docs/Changelog.md 10.4 GA (tensor axes for Pad; Blackman/Hamming/Hann windows), 10.5 GA "
     "(STFT), 10.15 GA (RotaryEmbedding, RMSNormalization, TensorScatter); docs/operators.md "
     "at TensorRT 10.15 GA (opset 9 to 24, Attention); TensorRT 11.0 release notes (Swish), "
     "11.2 (DFT); 11.5 raises the opset to 25 (not used here: the table stays at 24)"),
)
_CONSTANT = re.compile(r"must be (?:an initializer|initializers|a constant tensor|"
                       r"a build-time constant|resolvable to a constant)")
_ZERO = re.compile(r"`(\w+)` must be (?:zero|0)\b")


def operators_md(repo: Path, ref: str) -> tuple[str, str]:
    """(text of docs/operators.md at ``ref``, the commit)."""
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", f"{ref}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    text = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{FILE}"], check=True,
                          capture_output=True, text=True).stdout
    return text, commit


def _input_index(op: str, name: str, opset: int) -> int | None:
    try:
        schema = onnx.defs.get_schema(op, max_inclusive_version=opset)
    except Exception:  # noqa: BLE001 - not an ai.onnx operator
        return None
    names = [i.name for i in schema.inputs]
    return names.index(name) if name in names else None


def parse_table(text: str, opset: int) -> dict:
    """The operator rows of one operators.md: supported, unsupported, restrictions and the
    input forms derived from them."""
    supported, unsupported, restrictions = [], [], {}
    constant_inputs: dict[str, dict[str, str]] = {}
    zero_inputs: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"[A-Z][A-Za-z0-9]*", cells[0]) or cells[0] == "Operator":
            continue
        op, flag = cells[0], cells[1]
        (supported if flag.startswith("Y") else unsupported).append(op)
        note = cells[3] if len(cells) > 3 else ""
        if note:
            restrictions[op] = note
        for sentence in note.split(". "):
            match = _CONSTANT.search(sentence)
            for name in re.findall(r"`(\w+)`", sentence[:match.start()] if match else ""):
                index = _input_index(op, name, opset)
                if index is not None:
                    constant_inputs.setdefault(op, {})[str(index)] = name
        for name in _ZERO.findall(note):
            index = _input_index(op, name, opset)
            if index is not None:
                zero_inputs.setdefault(op, {})[str(index)] = name
    return {"supported": sorted(supported), "unsupported": sorted(unsupported),
            "constant_inputs": constant_inputs, "zero_inputs": zero_inputs,
            "ignored_inputs": {}, "restrictions": restrictions}


def build(repo: Path) -> dict:
    versions: dict[str, dict] = {}
    for version, (ref, opsets) in BASES.items():
        text, commit = operators_md(repo, ref)
        entry = parse_table(text, opsets[1])
        entry = {"source": {"repo": REPO, "ref": ref, "commit": commit, "file": FILE},
                 "opsets": list(opsets), **entry}
        if version.startswith("8."):
            entry["ignored_inputs"] = {op: {"1": "axes"} for op in REDUCTIONS_WITHOUT_AXES_INPUT}
            entry["source"]["ignored_inputs"] = (f"{REPO} {ref} builtin_op_importers.cpp "
                                                 "(Reduce* importers, reduceTensor)")
        versions[version] = entry
    for version, base, opsets, added, freed, source in DELTAS:
        entry = json.loads(json.dumps(versions[base]))
        entry["opsets"] = list(opsets)
        entry["supported"] = sorted(set(entry["supported"]) | set(added))
        entry["unsupported"] = sorted(set(entry["unsupported"]) - set(added))
        for op in freed:
            entry["constant_inputs"].pop(op, None)
            entry["restrictions"].pop(op, None)
        entry["source"] = {**entry["source"], "changes": source}
        versions[version] = entry
    del versions["10.1"]  # a base only: 10.3 is the oldest TensorRT 10 a profile names
    return {"format": "edgekd.trt-onnx-ops/1", "versions": versions}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/trt_onnx_ops.py PATH_TO_ONNX_TENSORRT_GIT > deploy/trt_onnx_ops.json")
    print(json.dumps(build(Path(sys.argv[1])), indent=1, sort_keys=True))
