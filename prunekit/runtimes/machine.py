"""Facts about the machine a measurement runs on (recorded in profiles and check.json)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform fallback elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_name(device: str = "cuda:0") -> str:
    """The name of a CUDA device, or '' where there is none."""
    import torch

    if not torch.cuda.is_available():
        return ""
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return str(torch.cuda.get_device_name(index))


def machine_info() -> dict[str, Any]:
    """CPU, cores, Python and the installed runtime versions, for a measurement's record."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return info
