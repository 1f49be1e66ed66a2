"""What every benchmark prints beside its figures: the machine it ran on and how loaded it was.

Import it from a benchmark script run as ``python benchmarks/NAME.py`` (its folder is on ``sys.path``)::

    from _common import cpu_name, load_average, peak_rss_mb
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """The CPU's marketing name (lscpu, then /proc/cpuinfo), e.g. "AMD EPYC 9R14 96-Core Processor"."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_name() -> str:
    """The first CUDA device's name, or why there is none."""
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    except Exception:  # noqa: BLE001 - a broken driver must not stop the report
        return "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, "?" where the system has none (a shared machine shows here)."""
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MB.

    VmHWM belongs to this address space only: ru_maxrss would carry over the parent's peak through
    fork + exec (a parent that holds torch and a model would inflate its child's figure).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_pass_model(folder: str | os.PathLike, dest: Path) -> str:
    """`folder`, or a copy of it in `dest` with mirror averaging off, so a side-by-side timing runs one pass.

    Why: the bundled model's config turns on ``flip_average`` (two passes per image in ``predict``), while
    rembg, the ONNX file and the network-alone pass run one; comparing them needs the same work on both sides.
    """
    import json
    import shutil

    config = json.loads(Path(folder, "config.json").read_text())
    if not config.pop("flip_average", False):
        return str(folder)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(folder, "model.safetensors"), dest / "model.safetensors")
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    print(f"timing {folder} with flip_average off (one pass per image, as rembg and the network alone run)\n")
    return str(dest)
