"""What every bench JSON records about the machine it ran on.

Why: on a shared machine a single-shot ratio of two variants flips between runs (folded inference measured 0.74x
one run and 1.02x alternated), so each JSON says how many torch threads ran and how loaded the machine was; the
variants themselves are timed in turns with every repeat kept (bench/training.py `alternated_ms`,
`inference_spread`).
"""

from __future__ import annotations

import os
import platform

import torch


def environment() -> dict:
    """torch threads, the 1/5/15-minute load averages and the CPU count, at the moment of the call."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on this platform
        load = None
    return {
        "torch_threads": torch.get_num_threads(),
        "load_average": load,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
