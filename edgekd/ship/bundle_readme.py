"""The bundle's README.md, per profile: which JetPack/TensorRT versions it is for, the exact
commands for the device's system python3, a ``trtexec`` equivalent of each build, what to send
back, and what has (and has not) been verified on hardware.

The version table is NVIDIA's (TensorRT per JetPack release), with each JetPack's CUDA runtime
(:mod:`deploy.cuda_platforms`). ``python3 -m deploy build`` takes one command on every version:
TensorRT 8.5-10.x build the FP32 ``model.onnx`` with the FP16/INT8 builder flags; TensorRT 11.x has
no precision flags (strongly typed networks only), so ``--fp16`` there builds the FP16 ONNX made
and checked on the host (``model.fp16.onnx``, see ``deploy.build.fp16_source``), and INT8 is the
Q/DQ ``model.int8.onnx`` everywhere. The ``trtexec`` fallback differs per version and is given
per version, with the dynamic batch's min/opt/max shapes. pip ``tensorrt`` wheels are x86/SBSA
builds, never for a Jetson (there JetPack's python3-libnvinfer is used), and ship no trtexec.

Each device code block carries an HTML comment naming its step and the TensorRT versions it is
for; the test suite runs every such block against a fake ``python3 -m deploy`` (the kit over a
fake TensorRT of that version) and a fake ``trtexec`` (tests/test_device_scripts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd_deploy.backends import get_backend
from edgekd_deploy.cuda_platforms import JETPACK5, JETPACK60, JETPACK61, JETPACK7, CudaPlatform

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
#: the CUDA runtime of each JetPack named in JETSON_VERSIONS
_PLATFORM: dict[str, CudaPlatform] = {
    "JetPack 5.1.x (its last JetPack; Python 3.8)": JETPACK5, "JetPack 6.0": JETPACK60,
    "JetPack 6.1 / 6.2": JETPACK61, "JetPack 7.2": JETPACK7, "JetPack 7.2.2+": JETPACK7,
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
    batch_range: tuple[int, int, int] | None = None  # a dynamic batch's min, opt, max
    fallback: str = ""             # why the default engine is not the profile's precision


def versions(profile: DeviceProfile) -> list[tuple[str, str]]:
    """(platform, TensorRT version) pairs this profile's bundle is meant for."""
    if profile.kind == "jetson":
        return JETSON_VERSIONS.get(profile.name, JETSON_VERSIONS["jetson-orin-nano-8gb"])
    return GPU_VERSIONS


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


def _shape(batch: int, info: ReadmeInputs) -> str:
    return "x".join(str(d) for d in (batch, *info.input_shape))


def trtexec_commands(profile: DeviceProfile, info: ReadmeInputs, trt11: bool) -> list[str]:
    """The ``trtexec`` equivalent of :func:`build_commands` (same source file, precision, pool and,
    for a dynamic batch, the min/opt/max shapes ``deploy build`` takes from the model's metadata).
    ``trtexec`` is looked up on PATH; the README's first line adds /usr/src/tensorrt/bin, where
    JetPack and NVIDIA's deb/tar packages put it."""
    runtime = profile.runtime
    shapes = ""
    if info.dynamic:
        low, opt, high = info.batch_range or (info.batch, info.batch, info.batch)
        shapes = (f" --minShapes=input:{_shape(low, info)} --optShapes=input:{_shape(opt, info)}"
                  f" --maxShapes=input:{_shape(high, info)}")
    if trt11:
        precision = " --stronglyTyped"
    else:
        precision = {"fp16": " --fp16", "int8": " --int8 --fp16", "fp32": ""}[runtime.precision]
    plan = _build_plan(profile, info, trt11)
    stale = " ".join(f"{engine}.json" for _source, _out, engine in plan)  # a deploy build's sidecars
    return ["export PATH=\"$PATH:/usr/src/tensorrt/bin\"", f"rm -f {stale}"] + [
        f"trtexec --onnx={source} --saveEngine={engine}{precision}{shapes} "
        f"--memPoolSize=workspace:{runtime.workspace_mb} --timingCacheFile=timing.cache"
        for source, _out, engine in plan]


def dla_commands(profile: DeviceProfile, info: ReadmeInputs) -> list[str]:
    """An FP16 engine of the student on DLA core 0 and its timing, where the profile has DLAs, the
    bundle an FP16 target and the export a static batch (the DLA takes no dynamic shapes)."""
    if (profile.runtime.backend != "trt" or profile.hardware.dla_cores < 1 or info.dynamic
            or profile.runtime.precision != "fp16" or info.int8):
        return []
    return [f"python3 -m deploy build model.onnx --fp16 --dla 0 --out model.dla.engine "
            f"--workspace-mb {profile.runtime.workspace_mb}",
            f"python3 -m deploy bench model.dla.engine --batch {info.batch} --warmup 50 --iters 500 "
            "--out dla-model.json"]


def run_commands(profile: DeviceProfile, info: ReadmeInputs) -> list[str]:
    """bench / check / profile lines on the file the profile's backend runs."""
    suffix = get_backend(profile.runtime.backend).suffixes[0]
    lines = [f"python3 -m deploy bench {name}{suffix} --batch {info.batch} --warmup 50 "
             f"--iters 500 --out measurement-{name}.json" for name in _models(info)]
    lines.append(f"python3 -m deploy check model{suffix} --data val.npz --out check-model.json")
    lines.append(f"python3 -m deploy profile model{suffix} --batch {info.batch} "
                 f"--out profile-model.json")
    return lines


def _block(lines: list[str], step: str = "", on: list[str] | None = None) -> str:
    """A fenced code block; ``step`` and ``on`` (the TensorRT versions it is for) go in an HTML
    comment above it, which tests/test_device_scripts.py reads to run the block against fakes."""
    tag = f"<!-- step: {step}; tensorrt: {' '.join(on or [])} -->\n" if step else ""
    return tag + "```\n" + "\n".join(lines) + "\n```"


def _install(profile: DeviceProfile) -> str:
    """How TensorRT's Python bindings and the CUDA runtime are found on this kind of device."""
    if profile.kind == "jetson":
        cuda = "; ".join(f"{p.name}: CUDA {p.cuda}, `{p.folder}/{p.libcudart}`"
                         for p in dict.fromkeys(_PLATFORM[platform] for platform, _ in versions(profile)))
        return f"""Use JetPack's **system python3**: TensorRT's Python bindings come from JetPack's own
packages. If `python3 -c "import tensorrt; print(tensorrt.__version__)"` fails, install them with
`sudo apt install python3-libnvinfer` (and `sudo apt install python3-numpy` if numpy is missing); a venv
must be made with `python3 -m venv --system-site-packages venv` to see them. `pip install tensorrt` is
never for a Jetson (those wheels are x86/SBSA builds).

The kit calls the system CUDA runtime (`libcudart`), no cuda-python needed ({cuda}); if it is not
found, `export DEPLOY_CUDART=` that path. Never `pip install cuda-python` 13.x on JetPack 5 or 6 (it
needs an R580+ driver).

`trtexec` (the fallback below) is in `/usr/src/tensorrt/bin`, not on PATH; the commands add it."""
    return """Install TensorRT for the driver's CUDA (`nvidia-smi` shows it): `pip install tensorrt` (the
x86-64/SBSA wheels) or NVIDIA's TensorRT container. The kit calls the system CUDA runtime
(`libcudart.so.12` for a CUDA 12 driver, `libcudart.so.13` for CUDA 13 / R580+); if it is not
found, `export DEPLOY_CUDART=/path/to/libcudart.so.N`, or install the cuda-python of the driver's CUDA
major version (never cuda-python 13.x with a CUDA 12 driver).

`trtexec` (the fallback below) comes with NVIDIA's TensorRT containers and deb/tar packages (on PATH,
or in `/usr/src/tensorrt/bin`, which the commands add). The pip `tensorrt` wheels ship **no**
trtexec: with a pip install, build with `python3 -m deploy build` (check with `command -v trtexec`)."""


def _trt_sections(profile: DeviceProfile, info: ReadmeInputs) -> str:
    table = "\n".join(f"| {platform} | {trt} | {_PLATFORM[platform].cuda} ({_PLATFORM[platform].libcudart}) |"
                      if platform in _PLATFORM else f"| {platform} | {trt} | the driver's |"
                      for platform, trt in versions(profile))
    every = [trt for _, trt in versions(profile)]
    weak = [trt for trt in every if not trt.startswith("11")]
    strong = [trt for trt in every if trt.startswith("11")]
    parts = [f"""## Versions

| Platform | TensorRT | CUDA runtime |
|---|---|---|
{table}

{_install(profile)}

## Build (on the device itself: an engine runs only with the TensorRT that built it)

One command per model for every TensorRT above (8.5 to 11.x). TensorRT 11 has no FP16/INT8 builder
flags (the precision is the ONNX file's): there `--fp16` builds `model.fp16.onnx`, the FP16 ONNX made
and checked on the host, and `--int8` builds the Q/DQ model as it is.

{_block(['cd bundle'] + build_commands(profile, info), 'build', every)}
"""]
    dla = dla_commands(profile, info)
    if dla:
        parts.append(f"""Optional, the student on a DLA core (FP16; layers the DLA lacks fall back to the GPU). The
report uses the GPU engine: `dla-model.json` is for your comparison.

{_block(dla, 'dla', [trt for trt in every if not trt.startswith("11") or profile.name == "jetson-agx-orin-64gb"])}
""")
    parts.append(f"""If `python3 -m deploy build` fails, `trtexec` builds the same engine. It writes no
`.engine.json` (the commands remove a stale one), so `bench` cannot check the TensorRT version nor record the precision (then
`edgekd report` accepts the measurement only with `--force`); send `trtexec`'s output too.
""")
    if weak:
        parts.append(f"TensorRT {', '.join(weak)}:\n\n{_block(trtexec_commands(profile, info, False), 'trtexec', weak)}\n")
    if strong:
        parts.append(f"TensorRT 11.x:\n\n{_block(trtexec_commands(profile, info, True), 'trtexec', strong)}\n")
    return "\n".join(parts)


def _int8_note(profile: DeviceProfile, info: ReadmeInputs) -> str:
    if profile.runtime.backend != "trt" or info.int8:
        return ""
    return ("INT8 (optional; needs `onnx` and `onnxruntime` on the device to quantize): "
            "`python3 -m deploy build model.onnx --int8 --calib calib.npz --out model.int8.engine`.\n")


def _verified(profile: DeviceProfile, info: ReadmeInputs) -> str:
    host = "\n".join(f"- {line}" for line in info.checks) or "- (fp32 only: no conversion to check)"
    if profile.runtime.backend != "trt":
        return f"Run on the host, with ONNX Runtime (CPU):\n{host}\n"
    every = ", ".join(trt for _, trt in versions(profile))
    return f"""Run on the host, with ONNX Runtime (CPU):
{host}

Only checked, not run on hardware: every device command above (build, DLA, trtexec, measure) ran in
edgekd's test suite for TensorRT {every} against a fake `python3 -m deploy` (this kit itself over a
fake TensorRT with that version's real Python API names, and a fake CUDA) and a fake `trtexec` that
checks its arguments, so each step completes; the kit's TensorRT calls are checked against the real
TensorRT 8.5, 8.6, 10.3, 10.16 and 11.4 Python bindings without a GPU.

Never run on hardware: no engine of this bundle, nor any engine edgekd makes, has been built or run by
a real TensorRT on a GPU or a {profile.name}; accuracy and speed on the device are what `check` and
`bench` above measure. The kit's CUDA calls ran once on a data-centre GPU (an H200, no TensorRT).
"""


def render_readme(profile: DeviceProfile, info: ReadmeInputs) -> str:
    """The whole README.md of a bundle for ``profile``."""
    trt = profile.runtime.backend == "trt"
    needs = get_backend(profile.runtime.backend).needs
    run = str(info.run_dir) if info.run_dir else "runs/NAME"
    measured = " ".join(f"--measurements measurement-{name}.json" for name in _models(info))
    trt_part = _trt_sections(profile, info) if trt else ""
    every = [trt_version for _, trt_version in versions(profile)] if trt else []
    fallback = f"\n**{info.fallback}**\n" if info.fallback else ""
    return f"""# edgekd device bundle — {profile.name}

{profile.description}

Everything here runs with Python 3, numpy and {needs}; no torch, no edgekd.
`model.onnx` has sha256 `{info.model_sha}`; the Measurement JSON carries it, which is how the
host matches device numbers to the run. Every command prints `error: ...` and exits 2 on bad input.
{fallback}
{trt_part}
## Measure and check

{_block(run_commands(profile, info), 'measure' if trt else '', every)}

`check` prints the accuracy on `val.npz` and the top-1 agreement with the host's ONNX outputs
stored in it.
{_int8_note(profile, info)}
## Send back

{_block(["scp DEVICE:bundle/measurement-*.json DEVICE:bundle/check-model.json "
         "DEVICE:bundle/profile-model.json" + (" DEVICE:bundle/*.engine.json" if trt else "") + " .",
         f"edgekd report {run} {measured}"])}

The run's profile is {profile.name} ({profile.runtime.backend}, {profile.runtime.precision}, batch
{info.batch}): measure with exactly these settings, so the figures stand for this target.

## What was run, and what was only checked

{_verified(profile, info)}"""
