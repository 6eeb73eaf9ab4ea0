"""What every bench JSON records about the machine it ran on, and alternated repeated timing.

Why: on a shared machine a single-shot ratio of two variants flips between runs (folded inference measured 0.74x
one run and 1.02x alternated), so each JSON says how many torch threads ran and how loaded the machine was, and
variants are timed in turns (A B A B ...) with every repeat kept, so a reader sees the spread.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

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
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def alternate(
    variants: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None] | None = None
) -> dict:
    """Time each variant `repeats` times in turns (A B A B ...), after one untimed warm-up call of each.

    Returns, per variant, every time in ms, the median and the spread (min, max); and, for every variant after the
    first, the ratio of its median to the first's with the range of the per-round ratios."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sync = sync or (lambda: None)
    for fn in variants.values():
        fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - t0) * 1000)
    out: dict = {
        name: {
            "ms": [round(t, 3) for t in ts],
            "median_ms": round(statistics.median(ts), 3),
            "min_ms": round(min(ts), 3),
            "max_ms": round(max(ts), 3),
        }
        for name, ts in times.items()
    }
    names = list(variants)
    base = times[names[0]]
    for name in names[1:]:
        rounds = [t / b for t, b in zip(times[name], base, strict=True)]
        out[name]["ratio_to_" + names[0]] = {
            "median": round(statistics.median(times[name]) / statistics.median(base), 3),
            "per_round_min": round(min(rounds), 3),
            "per_round_max": round(max(rounds), 3),
        }
    return out
