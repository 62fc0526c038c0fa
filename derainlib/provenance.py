"""Where and how a result was made: the commit, the machine, the versions and the wall time.

Every results table and every training run records this beside its numbers.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

from .paths import REPO_ROOT


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX): where it does not, torch emulates bf16
    and an autocast training step gets several times slower than fp32, not faster (see README)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without that (private) probe: read the CPU's flags
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels use here (e.g. ``AVX512``, ``AVX2``), ``+bf16`` when native."""
    import torch

    return torch.backends.cpu.get_cpu_capability() + ("+bf16" if cpu_has_native_bf16() else "")


def machine_label(machine: dict) -> str:
    """One line naming a provenance record's machine: its processor (with torch's CPU capability, in
    records that have it), and its GPU when one was used."""
    capability = f" ({machine['cpu_capability']})" if machine.get("cpu_capability") else ""
    return machine["processor"] + capability + (f" + {machine['cuda']}" if machine.get("cuda") else "")


def provenance(profile: str, parameters: dict, wall_time_s: float) -> dict:
    """Where and how a run was made: commit (``-dirty`` when code differs from it), machine, versions, time."""
    import torch

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        # A copy of the tree without .git (e.g. copied to a GPU machine with rsync) can be told its commit.
        commit = os.environ.get("DERAINLIB_COMMIT") or "unknown"
    # Changed outputs of earlier runs do not make the code dirty; anything else tracked does.
    elif git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!figures"):
        commit += "-dirty"
    return {
        "commit": commit,
        "profile": profile,
        "parameters": parameters,
        "machine": {"node": platform.node(), "processor": cpu_model(), "cpu_capability": cpu_capability(),
                    "cpus": os.cpu_count(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "wall_time_s": round(wall_time_s, 1),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
