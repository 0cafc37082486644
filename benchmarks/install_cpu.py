"""Measure the CPU-only install route of the README in a fresh virtual environment.

    python benchmarks/install_cpu.py                      # PyTorch's CPU index (the README route)
    python benchmarks/install_cpu.py --torch "torch==2.13.0+cpu" --torch "torchvision==0.28.0"
    python benchmarks/install_cpu.py --default            # plain `pip install .` for comparison
    python benchmarks/install_cpu.py --torch "torch==2.13.0+cpu" --only-torch   # step 1 alone

Step 1 installs PyTorch's CPU build (``pip install torch torchvision --index-url
https://download.pytorch.org/whl/cpu``, or the ``--torch`` requirements given), step 2 runs
``pip install .`` from this checkout. Each step is timed (wall-clock, pip's cache disabled so
every wheel is downloaded or read again), then the virtual environment's size on disk is
taken, and the environment is checked: torch imports with no CUDA libraries present and
``edgekd --help`` runs. Writes benchmarks/results/install_cpu[-default].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _run(args: list[str], env: dict[str, str], check: bool = True) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0 and not check:
        return seconds, "FAILED: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def measure(torch_reqs: list[str], default: bool, only_torch: bool = False,
            check: bool = True) -> dict:
    work = Path(tempfile.mkdtemp(prefix="edgekd-install-"))
    venv = work / "venv"
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
    env.pop("PYTHONPATH", None)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        steps: dict[str, float] = {}
        if not default:
            index = [] if torch_reqs else ["--index-url", CPU_INDEX]
            steps["torch_cpu_s"], _ = _run(pip + (torch_reqs or ["torch", "torchvision"]) + index, env)
        if not only_torch:
            steps["edgekd_s"], _ = _run(pip + [str(REPO)], env)
        python = str(venv / "bin" / "python")
        _, info = _run([python, "-c", "import torch, importlib.metadata as m; "
                        "print(torch.__version__, torch.version.cuda, "
                        "sum(d.metadata['Name'].startswith('nvidia') for d in m.distributions()))"],
                       env)
        torch_v, cuda, nvidia = info.split()
        vision_v, works = "-", "not checked"
        if not only_torch:
            _, vision_v = _run([python, "-c", "import torchvision; print(torchvision.__version__)"],
                               env, check)
            _, works = _run([str(venv / "bin" / "edgekd"), "--help"], env, check)
            works = works if works.startswith("FAILED") else "edgekd --help runs"
        site = next((venv / "lib").glob("python*/site-packages"))
        return {
            "route": "default (pip install .)" if default else
                     "torch CPU build alone (step 1 only)" if only_torch else "cpu (torch CPU build first)",
            "torch_requirements": torch_reqs or (["torch", "torchvision", "--index-url", CPU_INDEX]
                                                 if not default else []),
            "torch": torch_v, "torchvision": vision_v.strip(), "torch_cuda": cuda,
            "check": works,
            "nvidia_packages": int(nvidia),
            "venv_bytes": _size(venv), "site_packages_bytes": _size(site),
            "seconds": {k: round(v, 1) for k, v in steps.items()},
            "total_s": round(sum(steps.values()), 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch", action="append", default=[],
                        help="a requirement for step 1 instead of PyTorch's CPU index (repeat)")
    parser.add_argument("--default", action="store_true", help="measure plain `pip install .`")
    parser.add_argument("--only-torch", action="store_true", help="measure step 1 alone")
    parser.add_argument("--no-check", action="store_true",
                        help="record (not stop at) a torchvision/edgekd import failure")
    args = parser.parse_args()
    started = time.time()
    result = measure(args.torch, args.default, args.only_torch, check=not args.no_check)
    result.update(machine=f"{platform.machine()} {os.cpu_count()} cores, Python "
                          f"{platform.python_version()}, {platform.platform()}",
                  command=" ".join(["python", "benchmarks/install_cpu.py", *sys.argv[1:]]),
                  wall_s=round(time.time() - started, 1),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)))
    stem = ("install_cpu-default" if args.default else
            "install_cpu-torch-only" if args.only_torch else
            "install_cpu-unchecked" if args.no_check else "install_cpu")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    gb = result["venv_bytes"] / 1e9
    md = [f"# Install size and time: {result['route']}", "",
          f"Command: `{result['command']}` ({result['date']}; {result['machine']}).", "",
          "| step | seconds |", "|---|---|"]
    md += [f"| {k.removesuffix('_s')} | {v} |" for k, v in result["seconds"].items()]
    md += ["", f"Virtual environment: {gb:.2f} GB on disk (site-packages "
               f"{result['site_packages_bytes'] / 1e9:.2f} GB); torch {result['torch']} "
               f"(CUDA {result['torch_cuda']}), torchvision {result['torchvision']}, "
               f"{result['nvidia_packages']} nvidia-* packages. pip's cache was off. "
               f"Check: {result['check']}.", ""]
    (RESULTS / f"{stem}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
