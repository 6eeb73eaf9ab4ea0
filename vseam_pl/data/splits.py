"""Deterministic by-image train/val/test splits and the stratified low-data subsample.

Split rule: an image goes to ``train``/``val``/``test`` by ``u = sha256(f"{salt}:{image_id}")[:8] / 2**64`` against the
cumulative ``split_ratios`` (default 0.8/0.1/0.1): ``u < r_train`` -> train, ``u < r_train + r_val`` -> val, else test.
All questions about one image land in one split, so the splits are disjoint by image, identical on every machine and
every run, and independent of file order. Changing ``salt`` draws a different (equally valid) split.

Subsample rule (``fraction`` < 1, training split only): records are grouped into strata by (category, answer); the
total ``round(N * fraction)`` is shared between strata by largest remainder, and each stratum keeps the records with
the smallest ``sha256(f"{seed}:{key}")``. Same seed -> same records; another seed -> another draw; label balance kept.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence

SPLITS: tuple[str, ...] = ("train", "val", "test")


def unit_hash(text: str) -> float:
    """A stable pseudo-uniform number in [0, 1) (Python's `hash` is salted per process, so not usable here)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"split_ratios must be three non-negative numbers (train, val, test) summing to 1, got {ratios}"
        )
    return (float(ratios[0]), float(ratios[1]), float(ratios[2]))


def split_of(image_id: str, ratios: Sequence[float] = (0.8, 0.1, 0.1), salt: str = "vseam") -> str:
    """The split an image belongs to (see the module docstring)."""
    u = unit_hash(f"{salt}:{image_id}")
    train, val, _ = ratios
    return "train" if u < train else "val" if u < train + val else "test"


def stratified_sample(items: Iterable[tuple[str, Hashable]], fraction: float, seed: int) -> frozenset[str]:
    """Keys of a ``fraction`` subsample of ``(key, stratum)`` items, proportional per stratum (see module docstring)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    strata: dict[Hashable, list[str]] = defaultdict(list)
    for key, stratum in items:
        strata[stratum].append(key)
    n = sum(len(keys) for keys in strata.values())
    total = round(n * fraction)
    quotas = {s: len(keys) * fraction for s, keys in strata.items()}
    take = {s: math.floor(q) for s, q in quotas.items()}
    by_remainder = sorted(strata, key=lambda s: (-(quotas[s] - take[s]), unit_hash(f"{seed}:stratum:{s!r}")))
    for s in by_remainder[: max(0, total - sum(take.values()))]:
        take[s] += 1
    chosen: set[str] = set()
    for s, keys in strata.items():
        chosen.update(sorted(keys, key=lambda k: unit_hash(f"{seed}:{k}"))[: take[s]])
    return frozenset(chosen)
