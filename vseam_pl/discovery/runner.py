"""The discovery driver: filter, shard, score chunk by chunk with atomic checkpoints, all-reduce, write outputs.

Pairs are split across DDP ranks (`items[rank::world]`); each rank sums its examples' effects (see
:class:`.scores.Accumulator`) and the sums are all-reduced, so any number of processes gives the scores of one.
After every chunk of `pair_batch` pairs a rank writes its partial sums to `<out>/partial/rank<r>-of-<w>.pt`
(atomically); with `resume=True` a restarted run skips the chunks recorded there.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..distributed import all_reduce_sum, dist_info
from ..interventions import ABLATION_MODES
from ..io import write_atomic, write_json
from ..pairs import PairItem, pair_digest
from ..plotting import save_png
from ..records import ImagePair
from ..vlm import VLM
from .atp import NODES
from .data import group_keys
from .items import chunks, dataset_means, prepare_items, replay_prefix_ok, vseam_filter
from .methods import METHODS, foreign_settings, get_method
from .overlap import overlap_analysis
from .patching import (
    DIRECTIONS,
    NORMALIZATIONS,
    EditEffectWarning,
    edit_effect_warnings,
    normalise,
)
from .plots import heatmap, layer_profiles, overlap_plot, profile_plot
from .release import PROTOCOLS
from .scores import TOP_K, Accumulator, HeadScores

#: sink(tag, matplotlib figure), called for every figure written (e.g. to log it to TensorBoard).
FigureSink = Callable[[str, Any], None]


@dataclass
class DiscoveryConfig:
    """What to compute. `batch_size`: intervened rows per forward; `pair_batch`: pairs per chunk (checkpoint unit).

    `protocol`: `default` (vseam-pl's own scoring) or `release` (the V-SEAM release's, ablation only: see
    :mod:`.ablation` and `docs/fidelity.md`). `instruction`: appended to each question; None = the protocol's own
    (`DEFAULT_INSTRUCTION`, or the release's per family), "" = none. `patching_norm` (patching, attribution):
    `sum` divides summed effects by the summed edit effect LD_clean - LD_edited, `per_pair` averages each pair's
    ratio, `none` reports the unnormalised mean effect; a warning is raised when a normaliser is <= 0 or its mean
    below `min_edit_effect` (nats).
    """

    method: str = "ablation"
    """how heads are scored: ablation, patching, attribution or atp_star"""
    ablation_mode: str = field(default="mean_others", metadata={"choices": ABLATION_MODES})
    """ablation: what replaces the head's output"""
    ablation_image: str = field(default="clean", metadata={"choices": ("clean", "edited")})
    """ablation: which image of each pair is scored"""
    direction: str = field(default="clean_to_edited", metadata={"choices": DIRECTIONS})
    """patching direction"""
    batch_size: int = 64
    """intervened rows per forward"""
    pair_batch: int = 4
    """pairs per chunk (the checkpoint unit)"""
    top_k: int = TOP_K
    """heads listed (and, for init scales, moved) per sign"""
    filter: bool = False
    """keep pairs right on clean and wrong on edited (V-SEAM)"""
    instruction: str | None = None
    """appended to each question ('' for none; default: the protocol's own)"""
    protocol: str = field(default="default", metadata={"choices": PROTOCOLS})
    """default: vseam-pl's scoring; release: the V-SEAM release's (ablation, set_ablation)"""
    patching_norm: str = field(default="sum", metadata={"choices": NORMALIZATIONS})
    """patching/attribution: sum (divide by the summed edit effect), per_pair, none (unnormalised)"""
    min_edit_effect: float = 0.1
    """warn when the mean edit effect LD_clean - LD_edited (nats) is below this"""
    atp_nodes: str = field(default="head", metadata={"choices": NODES})
    """atp_star: head outputs or q/k/v nodes"""

    def validate(self) -> None:
        get_method(self.method)  # a registered method, or a ValueError naming them
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; expected one of {PROTOCOLS}")
        if self.patching_norm not in NORMALIZATIONS:
            raise ValueError(
                f"unknown patching normalisation {self.patching_norm!r}; expected one of {NORMALIZATIONS}"
            )
        if self.protocol == "release":
            release_only = {
                "method": tuple(name for name, m in METHODS.items() if m.release),
                "ablation_mode": ("mean_others", "zero"),
                "ablation_image": ("clean",),
                "filter": (False,),
            }
            for key, allowed in release_only.items():
                if getattr(self, key) not in allowed:
                    raise ValueError(
                        f"protocol 'release' scores heads as the release does (single-head ablation, "
                        f"mean_others or zero, clean image, no pair filter): {key}="
                        f"{getattr(self, key)!r} is not part of it"
                    )
        if self.ablation_mode not in ABLATION_MODES:
            raise ValueError(
                f"unknown ablation mode {self.ablation_mode!r}; expected one of {ABLATION_MODES}"
            )
        if self.ablation_image not in ("clean", "edited"):
            raise ValueError(f"ablation_image must be 'clean' or 'edited', got {self.ablation_image!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown patching direction {self.direction!r}; expected one of {DIRECTIONS}")
        if self.atp_nodes not in NODES:
            raise ValueError(f"unknown AtP* node set {self.atp_nodes!r}; expected one of {NODES}")
        if self.batch_size < 1 or self.pair_batch < 1 or self.top_k < 1:
            raise ValueError("batch_size, pair_batch and top_k must be >= 1")
        if self.min_edit_effect < 0:
            raise ValueError(f"min_edit_effect must be >= 0 (nats), got {self.min_edit_effect}")


class DiscoveryInterrupted(RuntimeError):
    """Raised by `stop_after_chunks` (fault injection for resume tests) after the partial results were saved."""


@dataclass
class DiscoveryResult:
    scores: HeadScores
    filter_report: dict[str, Any] | None
    chunks_computed: int  # by this process in this call (0 when everything was resumed)
    outputs: dict[str, Path] = field(default_factory=dict)


def fingerprint(
    vlm: VLM, items: Sequence[PairItem], cfg: DiscoveryConfig, rank: int, world: int
) -> dict[str, Any]:
    """What must match for partial results to be resumed, by part (so a mismatch can say what changed): the model,
    the method's settings (batch_size only changes float rounding: not included), the sharding, and a digest of
    every pair's contents and image bytes (`pair_digest`), in order."""
    skip = {"batch_size", "top_k", *foreign_settings(cfg.method)}
    semantic = {k: v for k, v in asdict(cfg).items() if k not in skip}
    return {
        "model": [vlm.name, vlm.num_layers, vlm.num_heads],
        "settings": semantic,
        "shard": [rank, world],
        "pairs": [[it.pair.pair_id, pair_digest(it.pair)] for it in items],
    }


def _mismatch(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """What differs between two fingerprints, in words."""
    if saved.get("model") != now["model"]:
        return f"model {saved.get('model')} != {now['model']}"
    if saved.get("settings") != now["settings"]:
        keys = sorted(k for k in {**saved.get("settings", {}), **now["settings"]} if
                      saved.get("settings", {}).get(k) != now["settings"].get(k))  # fmt: skip
        return f"settings {keys} differ"
    if saved.get("shard") != now["shard"]:
        return f"rank/world size {saved.get('shard')} != {now['shard']}"
    old, new = saved.get("pairs") or [], now["pairs"]
    if len(old) != len(new):
        return f"{len(old)} pairs then, {len(new)} now"
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if a[0] != b[0]:
            return f"pair {i} was {a[0]!r}, is now {b[0]!r}"
        if a[1] != b[1]:
            return f"pair {b[0]!r} changed (its fields or image bytes)"
    return "unknown difference"


def run_discovery(
    vlm: VLM,
    pairs: Sequence[ImagePair],
    config: DiscoveryConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    stop_after_chunks: int | None = None,
    progress: Callable[[str], None] | None = None,
    sink: FigureSink | None = None,
    plots: bool = True,
) -> DiscoveryResult:
    """Score every head on `pairs` (this rank's shard under DDP) and, with `out_dir`, write all outputs (rank 0).

    `resume` needs `out_dir`: chunks recorded in its `partial/` state are not recomputed. `sink(tag, figure)` sees
    each figure written (rank 0); `plots=False` writes the scores and JSON files only.
    """
    cfg = config or DiscoveryConfig()
    cfg.validate()
    say = progress or (lambda _msg: None)
    rank, world = dist_info()
    items = prepare_items(vlm, pairs, cfg.protocol, cfg.instruction)
    groups = group_keys(items)
    shard = items[rank::world]
    state_path = Path(out_dir) / "partial" / f"rank{rank}-of-{world}.pt" if out_dir is not None else None
    fp = fingerprint(vlm, items, cfg, rank, world) if state_path is not None else {}
    m = get_method(cfg.method)
    acc = Accumulator(groups, m.stats, vlm.num_layers, vlm.num_heads, small=cfg.min_edit_effect)
    state = _load_state(state_path, fp) if resume and state_path is not None else None
    start = time.perf_counter()

    if state is not None:
        by_index = {it.index: it for it in shard}
        kept = [by_index[i] for i in state["kept"]]
        filter_counts = state["filter_counts"]
        acc.load_state_dict(state["acc"])
        done = int(state["done"])
        say(f"rank {rank}: resuming after {done} chunk(s)")
    else:
        kept, filter_counts = vseam_filter(vlm, shard, cfg.pair_batch) if cfg.filter else (list(shard), None)
        done = 0
        if state_path is not None:  # the filter's verdicts are part of the state: a resume does not redo them
            _save_state(state_path, fp, kept, filter_counts, acc, done)
    image = cfg.ablation_image if m.ablates else "edited"
    means = None
    if m.ablates and cfg.ablation_mode == "dataset_mean":
        means = dataset_means(vlm, items, cfg.ablation_image, cfg.pair_batch)
    # every method checks the start-0 replay against the full forward; only the exact methods replay from a middle layer
    prefix = replay_prefix_ok(vlm, items, image, middle=m.exact)

    todo = chunks(kept, cfg.pair_batch)
    computed = 0
    for c in range(done, len(todo)):
        chunk = todo[c]
        stats, edits = m.score(vlm, chunk, cfg, means, prefix), None
        if m.normalised:  # `signed` only: AtP*'s magnitude stays in LD units
            normed, edits = normalise({"signed": stats["signed"]}, cfg.patching_norm)
            stats = {**stats, **normed}
        acc.add([it.groups for it in chunk], stats, edits)
        computed += 1
        if state_path is not None:
            _save_state(state_path, fp, kept, filter_counts, acc, c + 1)
        say(f"rank {rank}: chunk {c + 1}/{len(todo)}")
        if stop_after_chunks is not None and computed >= stop_after_chunks and c + 1 < len(todo):
            raise DiscoveryInterrupted(f"stopped after {computed} chunk(s) (partial results in {state_path})")

    acc.all_reduce()
    report = None
    if filter_counts is not None:
        total, right, wrong, kept_n = all_reduce_sum(filter_counts.clone()).tolist()
        report = {
            "total": int(total),
            "right_on_clean": int(right),
            "wrong_on_edited": int(wrong),
            "kept": int(kept_n),
        }
    meta = {
        "model": vlm.name,
        "protocol": cfg.protocol,
        "config": asdict(cfg),
        "num_pairs": len(items),
        "filter": report,
        "world_size": world,
        "prefix_replay": prefix,
        "seconds": round(time.perf_counter() - start, 3),
    }
    scores = acc.scores(cfg.method, meta, protocol=cfg.protocol)
    if m.warns_edit_effect:
        scores.meta["warnings"] = edit_effect_warnings(scores.counts, cfg.patching_norm, cfg.min_edit_effect)
        for message in scores.meta["warnings"] if rank == 0 else []:
            warnings.warn(message, EditEffectWarning, stacklevel=2)
    outputs = (
        write_outputs(scores, out_dir, cfg.top_k, sink, plots) if out_dir is not None and rank == 0 else {}
    )
    return DiscoveryResult(scores, report, computed, outputs)


def _save_state(
    path: Path,
    fp: dict[str, Any],
    kept: Sequence[PairItem],
    filter_counts: torch.Tensor | None,
    acc: Accumulator,
    done: int,
) -> None:
    state = {
        "fingerprint": _hash(fp),
        "inputs": json.dumps(fp),
        "kept": [it.index for it in kept],
        "filter_counts": filter_counts,
        "acc": acc.state_dict(),
        "done": done,
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def _hash(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def _load_state(path: Path, fp: dict[str, Any]) -> dict[str, Any] | None:
    """The partial results at `path` when they were computed from the same inputs (`fingerprint`), else an error
    saying what changed; None when there are none."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)
        if not isinstance(state, dict) or not {"fingerprint", "kept", "acc", "done"} <= set(state):
            raise ValueError("not a discovery state")
    except Exception as e:  # noqa: BLE001 - torch raises many types for a truncated or foreign file
        raise ValueError(
            f"{path}: unreadable partial discovery results ({type(e).__name__}: {e}); delete it (or the "
            "folder) or run without --resume"
        ) from None
    if state["fingerprint"] != _hash(fp):
        why = _mismatch(json.loads(state["inputs"]), fp) if isinstance(state.get("inputs"), str) else (
            "they were saved by an older version that did not record the pairs' contents"
        )  # fmt: skip
        raise ValueError(
            f"{path}: partial results were computed from other inputs ({why}); they are not reused. Delete the "
            "folder or run without --resume"
        )
    return state


# -- outputs -------------------------------------------------------------------------------------------------------


def write_outputs(
    scores: HeadScores,
    out_dir: str | os.PathLike,
    k: int = TOP_K,
    sink: FigureSink | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Scores (safetensors + JSON), layer profiles and overlap analysis (JSON), and with `plots` their figures
    under `out_dir/plots`. `sink(tag, figure)` sees every figure before it is closed (the callback logs them).
    """
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    paths["scores"], paths["scores_json"] = scores.save(out, k)
    profiles = layer_profiles(scores)
    paths["profiles_json"] = write_json(out / "layer_profiles.json", profiles)
    analysis = overlap_analysis(scores, k)
    paths["overlap_json"] = write_json(out / "overlap.json", analysis)
    if plots:
        paths.update(_write_figures(scores, profiles, analysis, out / "plots", sink))
    return paths


def _write_figures(
    scores: HeadScores, profiles: dict, analysis: dict, folder: Path, sink: FigureSink | None
) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}

    def emit(tag: str, fig: Any, name: str) -> None:
        paths[tag] = save_png(fig, folder / name)
        if sink is not None:
            sink(tag, fig)
        plt.close(fig)

    for g in scores.groups:
        for stat, value in scores.scores[g].items():
            # every statistic for `all`, the signed score for levels and categories (figures cost ~0.5 s each)
            if torch.isnan(value).all() or (stat != "signed" and g != "all"):
                continue
            n = int(scores.counts.get(g, {}).get(stat, {}).get("n", 0))
            emit(
                f"heads/{g}/{stat}",
                heatmap(value, f"{scores.method} {stat} score, {g} (n={n})"),
                f"heatmap_{_safe(g)}_{stat}.png",
            )
    emit(
        "profiles/levels",
        profile_plot(profiles, ["all", *scores.levels()], f"{scores.method}: per-layer profile"),
        "layer_profiles.png",
    )
    for kind in ("positive", "negative"):
        emit(f"overlap/{kind}", overlap_plot(analysis, kind), f"overlap_{kind}.png")
    return paths


def _safe(group: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in group)
