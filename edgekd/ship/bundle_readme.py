"""The bundle's README.md, per profile: which JetPack/TensorRT versions it is for, the exact
commands for the device's system python3, a ``trtexec`` equivalent of each build, what to send
back, and what has (and has not) been verified on hardware.

The version table is NVIDIA's (TensorRT per JetPack release). Two build routes follow from it:
TensorRT 8.5-10.x take the FP32 ``model.onnx`` with the FP16/INT8 builder flags; TensorRT 11.x
has no precision flags (strongly typed networks only), so it builds the FP16 ONNX made and
checked on the host (``model.fp16.onnx``) or the Q/DQ ``model.int8.onnx``.
pip ``tensorrt`` wheels are x86/SBSA builds, never for a Jetson: there the system python3 is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.backends import get_backend

if TYPE_CHECKING:
    from edgekd.inputs.profiles import DeviceProfile

#: JetPack -> TensorRT on each Jetson profile (NVIDIA's JetPack release notes); the kit supports TensorRT 8.5-11.x
JETSON_VERSIONS: dict[str, list[tuple[str, str]]] = {
    "jetson-xavier-nx": [("JetPack 5.1.x (its last JetPack; Python 3.8)", "8.5")],
    "jetson-orin-nano-8gb": [("JetPack 6.0", "8.6"), ("JetPack 6.1 / 6.2", "10.3"),
                             ("JetPack 7.2", "10.16")],
    "jetson-orin-nx-16gb": [("JetPack 6.0", "8.6"), ("JetPack 6.1 / 6.2", "10.3"),
                            ("JetPack 7.2", "10.16")],
    "jetson-agx-orin-64gb": [("JetPack 6.0", "8.6"), ("JetPack 6.1 / 6.2", "10.3"),
                             ("JetPack 7.2", "10.16"), ("JetPack 7.2.2+", "11.x")],
}
GPU_VERSIONS = [("x86-64 Linux, pip `tensorrt` 10.x or an NGC TensorRT container", "10.x"),
                ("x86-64 Linux, pip `tensorrt` (now 11.x)", "11.x")]


@dataclass(frozen=True)
class ReadmeInputs:
    """What the README needs to know about the bundle beyond the profile."""

    batch: int
    model_sha: str
    has_teacher: bool
    input_shape: tuple[int, ...]
    dynamic: bool
    run_dir: Path | None = None
    int8: bool = False             # the bundle carries Q/DQ *.int8.onnx files to build
    checks: tuple[str, ...] = ()   # host precision-check lines (fp16/int8 vs fp32)


def versions(profile: DeviceProfile) -> list[tuple[str, str]]:
    """(platform, TensorRT version) pairs this profile's bundle is meant for."""
    if profile.kind == "jetson":
        return JETSON_VERSIONS.get(profile.name, JETSON_VERSIONS["jetson-orin-nano-8gb"])
    return GPU_VERSIONS


def _needs_trt11(profile: DeviceProfile) -> bool:
    return any(trt.startswith("11") for _, trt in versions(profile))


def _models(info: ReadmeInputs) -> list[str]:
    return ["model"] + (["teacher"] if info.has_teacher else [])


def _build_plan(profile: DeviceProfile, info: ReadmeInputs, trt11: bool) -> list[tuple[str, str | None, str]]:
    """(source ONNX, --out or None, engine file) per model: TensorRT <= 10.x builds the FP32
    ONNX with the precision flags; 11.x (``trt11``) the host-made FP16 ONNX; int8 the Q/DQ one."""
    suffix = get_backend(profile.runtime.backend).suffixes[0]
    plan = []
    for name in _models(info):
        engine = f"{name}{suffix}"
        if info.int8:
            plan.append((f"{name}.int8.onnx", engine, engine))
        elif profile.runtime.precision == "fp16" and trt11:
            plan.append((f"{name}.fp16.onnx", engine, engine))
        else:
            plan.append((f"{name}.onnx", None, engine))
    return plan


def build_commands(profile: DeviceProfile, info: ReadmeInputs, trt11: bool = False) -> list[str]:
    """The build step of the profile's backend (deploy's backend table) per model; none for a
    backend that runs the ONNX file itself."""
    runtime = profile.runtime
    backend = get_backend(runtime.backend)
    if backend.build is None:
        return []
    return [backend.build(source, out, runtime.precision, runtime.workspace_mb)
            for source, out, _engine in _build_plan(profile, info, trt11)]


def trtexec_commands(profile: DeviceProfile, info: ReadmeInputs, trt11: bool) -> list[str]:
    """The ``trtexec`` equivalent of :func:`build_commands` (same source file, precision, pool)."""
    runtime = profile.runtime
    shape = "x".join(str(d) for d in (info.batch, *info.input_shape))
    shapes = f" --shapes=input:{shape}" if info.dynamic else ""
    if trt11:
        precision = " --stronglyTyped"
    else:
        precision = {"fp16": " --fp16", "int8": " --int8 --fp16", "fp32": ""}[runtime.precision]
    return [f"/usr/src/tensorrt/bin/trtexec --onnx={source} --saveEngine={engine}{precision}"
            f"{shapes} --memPoolSize=workspace:{runtime.workspace_mb} --timingCacheFile=timing.cache"
            for source, _out, engine in _build_plan(profile, info, trt11)]


def run_commands(profile: DeviceProfile, info: ReadmeInputs) -> list[str]:
    """bench / check / profile lines on the file the profile's backend runs."""
    suffix = get_backend(profile.runtime.backend).suffixes[0]
    lines = [f"python3 -m deploy bench {name}{suffix} --batch {info.batch} --warmup 50 "
             f"--iters 500 --out measurement-{name}.json" for name in _models(info)]
    lines.append(f"python3 -m deploy check model{suffix} --data val.npz --out check-model.json")
    lines.append(f"python3 -m deploy profile model{suffix} --batch {info.batch} "
                 f"--out profile-model.json")
    return lines


def _block(lines: list[str]) -> str:
    return "```\n" + "\n".join(lines) + "\n```"


def _trt_sections(profile: DeviceProfile, info: ReadmeInputs) -> str:
    table = "\n".join(f"| {platform} | {trt} |" for platform, trt in versions(profile))
    parts = [f"""## Versions

| Platform | TensorRT |
|---|---|
{table}

Use the TensorRT that comes with the platform: on a Jetson that is JetPack's **system python3**
(`sudo apt install python3-numpy` if numpy is missing; a venv must be made with
`python3 -m venv --system-site-packages venv` to see TensorRT). `pip install tensorrt` is never
for a Jetson (those wheels are x86/SBSA builds). No cuda-python is needed: the kit calls the
system `libcudart`; on JetPack 6 never `pip install cuda-python` (13.x needs an R580+ driver).
Check with `python3 -c "import tensorrt; print(tensorrt.__version__)"`.

## Build (on the device itself: an engine runs only with the TensorRT that built it)

TensorRT 8.5 to 10.x:

{_block(['cd bundle'] + build_commands(profile, info, False))}
"""]
    if _needs_trt11(profile) and profile.runtime.precision != "fp32":
        parts.append(f"""TensorRT 11.x (no FP16/INT8 builder flags: the precision is the ONNX file's):

{_block(['cd bundle'] + build_commands(profile, info, True))}
""")
    parts.append(f"""If `python3 -m deploy build` fails, `trtexec` builds the same engine. It writes no
`.engine.json`, so `bench` cannot check the TensorRT version nor record the precision (then
`edgekd report` accepts the measurement only with `--force`); send `trtexec`'s output too:

{_block(trtexec_commands(profile, info, False))}
""")
    if _needs_trt11(profile) and profile.runtime.precision != "fp32":
        parts.append(f"TensorRT 11.x:\n\n{_block(trtexec_commands(profile, info, True))}\n")
    return "\n".join(parts)


def _int8_note(profile: DeviceProfile) -> str:
    if profile.runtime.backend != "trt" or profile.runtime.precision == "int8":
        return ""
    return ("INT8 (optional; needs `onnx` and `onnxruntime` on the device to quantize): "
            "`python3 -m deploy build model.onnx --int8 --calib calib.npz --out model.int8.engine`.\n")


def render_readme(profile: DeviceProfile, info: ReadmeInputs) -> str:
    """The whole README.md of a bundle for ``profile``."""
    trt = profile.runtime.backend == "trt"
    needs = get_backend(profile.runtime.backend).needs
    run = str(info.run_dir) if info.run_dir else "runs/NAME"
    measured = " ".join(f"--measurements measurement-{name}.json" for name in _models(info))
    host = "\n".join(f"- {line}" for line in info.checks) or "- (fp32 only: no conversion to check)"
    trt_part = _trt_sections(profile, info) if trt else ""
    return f"""# edgekd device bundle — {profile.name}

{profile.description}

Everything here runs with Python 3, numpy and {needs}; no torch, no edgekd.
`model.onnx` has sha256 `{info.model_sha}`; the Measurement JSON carries it, which is how the
host matches device numbers to the run. Every command prints `error: ...` and exits 2 on bad input.

{trt_part}
## Measure and check

{_block(run_commands(profile, info))}

`check` prints the accuracy on `val.npz` and the top-1 agreement with the host's ONNX outputs
stored in it.
{_int8_note(profile)}
## Send back

{_block(["scp DEVICE:bundle/measurement-*.json DEVICE:bundle/check-model.json "
         "DEVICE:bundle/profile-model.json DEVICE:bundle/*.engine.json .",
         f"edgekd report {run} {measured}"])}

The run's profile is {profile.name} ({profile.runtime.backend}, {profile.runtime.precision}, batch
{info.batch}): measure with exactly these settings, so the figures stand for this target.

## What has been verified

On the host, with ONNX Runtime (CPU):
{host}

Not verified on hardware: no engine of this bundle has been built or run on a {profile.name};
the kit's TensorRT calls are checked against the real TensorRT 8.5, 8.6, 10.3, 10.16 and 11.4
Python bindings without a GPU, and its CUDA calls have run on a data-centre GPU only.
"""
