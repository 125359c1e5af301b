"""Which accelerator this process can use."""

from __future__ import annotations

import platform
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def describe_device() -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` on a GPU node, ``cpu`` elsewhere."""
    info = environment_report()
    if info["cuda_available"]:
        return f"cuda:0 ({info['cuda_device']})"
    return "cpu"


def environment_report() -> dict:
    """Facts about this worker's Python and torch, for the worker-check job."""
    report: dict = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": None,
        "cuda_available": False,
        "cuda_device": None,
        "cuda_memory_gib": None,
        "bf16_supported": False,
    }
    try:
        import torch
    except ImportError:
        return report
    report["torch"] = torch.__version__
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report.update(
            cuda_available=True,
            cuda_device=props.name,
            cuda_memory_gib=round(props.total_memory / 2**30, 1),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
        )
    return report
