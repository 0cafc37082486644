"""``python -m deploy build | bench | profile | check | opcheck`` — the torch-free deploy kit's CLI.

Runs with only numpy plus onnxruntime (ORT backend) or TensorRT 8.5-11.x and the system CUDA
runtime (TRT backend; cuda-python only where no libcudart is found): no torch, no edgekd, no
click. Bad input prints one line ``error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from .backends import BACKENDS, backend_names
from .errors import DeployError
from .units import parse_shape

INT8_ROUTE = (
    "INT8 uses explicit quantization (Q/DQ): with --calib, the ONNX model is first quantized "
    "by ONNX Runtime's quantize_static (QDQ format, symmetric int8 activations and per-channel "
    "weights, the form TensorRT's explicit-quantization path reads) using the calibration "
    "images, then built with the INT8 and FP16 flags (TensorRT 8.x/10.x) or as a strongly "
    "typed network (TensorRT 11.x, which has no precision flags); a model that already has Q/DQ nodes (e.g. the "
    "bundle's model.int8.onnx) needs no --calib. Why: TensorRT 10 deprecates and 11 removes the "
    "implicit IInt8EntropyCalibrator2 route, and a Q/DQ model can be checked with ONNX Runtime on the "
    "host before it reaches the device. Quantizing here needs 'onnx' and 'onnxruntime'.")


def _shape(text: str) -> tuple[int, ...]:
    try:
        return parse_shape(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape '{text}': write it as 1x1x28x28") from None


def _suffixes() -> str:
    """``trt: .engine/.plan/.trt`` for every backend that claims a suffix other than .onnx."""
    return "; ".join(f"{b.name}: {'/'.join(b.suffixes)}" for b in BACKENDS.values()
                     if set(b.suffixes) - {".onnx"})


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description="edgekd's on-device kit: build TensorRT engines, benchmark, profile and "
                    "check ONNX models or engines. Needs numpy plus onnxruntime and/or "
                    "TensorRT 8.5-11.x with the CUDA runtime (the system libcudart, else "
                    "cuda-python); never torch.",
        epilog="Example: python -m deploy build model.onnx --fp16 && "
               "python -m deploy bench model.engine --batch 1 --out m.json")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_build(sub)
    _add_timing(sub)
    _add_check(sub)
    _add_opcheck(sub)
    return parser


def _add_build(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    b = sub.add_parser("build", help="build a TensorRT engine from an ONNX model",
                       description="Build model.engine (+ model.engine.json) with the TensorRT "
                                   "builder (8.5-11.x). --fp16 on TensorRT 11 needs an FP16 ONNX "
                                   "(11 has no FP16 builder flag). " + INT8_ROUTE,
                       epilog="Example: python -m deploy build model.onnx --fp16 "
                              "--timing-cache timing.cache")
    b.add_argument("model", help="the ONNX model")
    b.add_argument("--out", help="engine path (default: MODEL with suffix .engine)")
    b.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    b.add_argument("--int8", action="store_true", help="INT8 (explicit Q/DQ; see above)")
    b.add_argument("--calib", help="calibration .npz (uint8 images 'x') for --int8")
    b.add_argument("--workspace-mb", type=_positive, default=1024,
                   help="builder workspace memory pool limit in MiB (default 1024)")
    b.add_argument("--timing-cache", help="timing cache file: loaded if present, saved after")
    b.add_argument("--dla", type=int, default=None, metavar="CORE",
                   help="build for DLA core N (Jetson Xavier/Orin) with GPU fallback; needs a "
                        "static batch and --fp16 (on TensorRT <= 10 not --int8: its DLA runs "
                        "no Q/DQ models)")
    b.add_argument("--min", type=_shape, help="min input shape for a dynamic batch, e.g. 1x1x28x28")
    b.add_argument("--opt", type=_shape, help="optimal input shape, e.g. 8x1x28x28")
    b.add_argument("--max", type=_shape, help="max input shape, e.g. 32x1x28x28")


def _add_timing(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``bench`` and ``profile``: the same runner options, bench times several models."""
    for name, text in (("bench", "time a model -> Measurement JSON"),
                       ("profile", "per-layer times -> profile JSON")):
        p = sub.add_parser(name, help=text, description=text + ".",
                           epilog=f"Example: python -m deploy {name} model.onnx --batch 1 "
                                  f"--out {name}.json")
        if name == "bench":
            p.add_argument("model", nargs="+", help="one or more .onnx models (ONNX Runtime) or "
                           ".engine files (TensorRT); several are timed interleaved (--min-seconds)")
            p.add_argument("--min-seconds", type=float, default=None,
                           help="time each model for at least this long, in --rounds rounds "
                                "interleaved across the models (default for several models: 0.5)")
            p.add_argument("--rounds", type=_positive, default=5)
            p.add_argument("--no-spin", action="store_true",
                           help="ONNX Runtime: idle intra-op threads sleep instead of spinning")
        else:
            p.add_argument("model", help="an .onnx model (ONNX Runtime) or an .engine (TensorRT)")
        p.add_argument("--backend", choices=backend_names(),
                       help=f"default: by the file's suffix ({_suffixes()}), ort otherwise")
        p.add_argument("--provider", choices=("cpu", "cuda"), default="cpu",
                       help="ONNX Runtime execution provider (default cpu)")
        p.add_argument("--threads", type=int, default=0,
                       help="ONNX Runtime intra-op threads (0 = one per core)")
        p.add_argument("--batch", type=_positive, default=1)
        p.add_argument("--warmup", type=int, default=10 if name == "bench" else 5)
        p.add_argument("--iters", type=_positive, default=50 if name == "bench" else 20)
        p.add_argument("--out", help="JSON file to write (default: derived from the model name)")


def _add_check(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    c = sub.add_parser("check", help="accuracy on labelled data + agreement with the ONNX outputs",
                       description="Run the model on --data (uint8 images, normalised with the "
                                   "model's own metadata, or float32 already normalised) and "
                                   "print accuracy and agreement with reference logits (the "
                                   "npz's 'logits', or --reference MODEL.onnx run by ONNX Runtime).",
                       epilog="Example: python -m deploy check model.engine --data val.npz")
    c.add_argument("model")
    c.add_argument("--data", required=True, help=".npz with 'x' (N,C,H,W) and 'y'; optional 'logits'")
    c.add_argument("--backend", choices=backend_names())
    c.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    c.add_argument("--batch", type=_positive, default=None,
                   help="batch size (default: the model's fixed batch, else 64)")
    c.add_argument("--reference", help="ONNX model whose outputs are the reference")
    c.add_argument("--out", help="write the check result as JSON here")


def _add_opcheck(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    o = sub.add_parser("opcheck", help="will TensorRT's ONNX parser take this model? (no GPU needed)",
                       description="Compare the model's opset, operators and input forms with "
                                   "the ONNX parser of each TensorRT version (operator tables "
                                   "from onnx-tensorrt's docs/operators.md, in "
                                   "deploy/trt_onnx_ops.json). Exit status 2 when a version "
                                   "cannot parse it.",
                       epilog="Example: python -m deploy opcheck model.onnx --tensorrt 8.5")
    o.add_argument("model", help="the ONNX model")
    o.add_argument("--tensorrt", action="append", metavar="VERSION",
                   help="a TensorRT version, e.g. 8.5 or 10.3 (repeatable; default: the installed "
                        "TensorRT, else every version with a table)")


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    COMMANDS[args.command](args)
    return 0


def _bench(args: argparse.Namespace) -> None:
    from .bench import bench, default_out, format_line
    from .files import write_json

    if len(args.model) == 1 and args.min_seconds is None:
        measurement = bench(args.model[0], backend=args.backend, batch=args.batch,
                            warmup=args.warmup, iters=args.iters, provider=args.provider,
                            threads=args.threads)
        out = write_json(Path(args.out) if args.out else default_out(measurement), measurement)
        print(format_line(measurement))
        print(f"wrote {out}")
        return
    from .bench import bench_interleaved

    results = bench_interleaved(
        args.model, backend=args.backend, batch=args.batch, warmup=args.warmup,
        min_seconds=0.5 if args.min_seconds is None else args.min_seconds,
        rounds=args.rounds, provider=args.provider, threads=args.threads,
        spinning=not args.no_spin, min_iters=args.iters)
    folder = Path(args.out) if args.out else Path(".")
    for measurement in results:
        out = write_json(folder / default_out(measurement), measurement)
        print(format_line(measurement))
        print(f"wrote {out}")


def _profile(args: argparse.Namespace) -> None:
    from .files import write_json
    from .profile import format_table, profile

    result = profile(args.model, backend=args.backend, batch=args.batch, warmup=args.warmup,
                     iters=args.iters, provider=args.provider, threads=args.threads)
    out = Path(args.out) if args.out else Path(f"{Path(args.model).stem}.{result['backend']}.profile.json")
    write_json(out, result)
    print(format_table(result))
    print(f"wrote {out}")


def _check(args: argparse.Namespace) -> None:
    from .check import check, format_check
    from .files import write_json

    result = check(args.model, args.data, backend=args.backend, provider=args.provider,
                   batch=args.batch, reference=args.reference)
    print(format_check(result))
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")


def _build(args: argparse.Namespace) -> None:
    from .build import BuildOptions, build_engine

    options = BuildOptions(fp16=args.fp16, int8=args.int8, calib=args.calib,
                           workspace_mb=args.workspace_mb, timing_cache=args.timing_cache,
                           dla_core=args.dla, min_shape=args.min, opt_shape=args.opt,
                           max_shape=args.max)
    engine = build_engine(args.model, args.out, options)
    print(f"wrote {engine} (+ {engine.name}.json)")


def _opcheck(args: argparse.Namespace) -> None:
    from . import opcheck

    versions = args.tensorrt or opcheck.installed_or_all()
    failing = []
    for version in versions:
        problems = opcheck.check_model(args.model, version)
        print(f"TensorRT {version}: {'parses' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem.line()}")
        failing += [version] if problems else []
    if failing:
        raise DeployError(f"'{Path(args.model).name}' will not build on TensorRT "
                          f"{', '.join(failing)}: see the lines above")


#: errno values of a write the disk or folder does not take (one line, not a traceback)
_FILE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
                errno.ENOTDIR, errno.EISDIR}

#: subcommand -> what it does with the parsed arguments
COMMANDS = {"bench": _bench, "profile": _profile, "check": _check, "build": _build,
            "opcheck": _opcheck}


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        if error.errno not in _FILE_ERRNOS:
            raise
        where = f" '{error.filename}'" if error.filename else ""
        print(f"error: cannot write{where} ({error.strerror}): free space, or pass an --out in a "
              "folder you can write to (not below a file)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
