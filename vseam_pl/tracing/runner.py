"""The resumable tracing driver: per-pair analyses saved atomically as they finish, then aggregated and plotted.

Layout under `out_dir`::

    trace_config.json                      model / prompt / variant the results belong to (checked on resume)
    pairs/<pair_id>/<analysis>.safetensors per-pair tensors
    pairs/<pair_id>/<analysis>.json        labels and baseline numbers; written last, so it marks the work done
    pairs/<pair_id>/skipped.json           a pair that cannot be traced, and why
    aggregate/<analysis>.{safetensors,json} mean and band per level and cell
    plots/<analysis>.png, plots/pairs/*.png
    summary.json

A restarted run (`resume=True`) skips every (pair, analysis) whose JSON exists and records the same inputs: each
JSON holds the pair's `input_digest` (its fields and both images' bytes, `vseam_pl.pairs.pair_digest`); a pair whose
digest changed (same id, other images or answers) or whose files are unreadable is recomputed, and the run says so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from safetensors.torch import load_file, save_file

from ..io import atomic_path, write_json
from ..pairs import pair_digest, safe_id
from ..plotting import save_png
from ..prompts import DEFAULT_INSTRUCTION
from ..records import ImagePair
from ..vlm import VLM
from .aggregate import ALL, CI_METHODS, Band, aggregate, level_key, level_order
from .layer_patching import GROUPS, layer_patching
from .layer_patching import SITES_NEEDED as LAYER_SITES
from .logit_lens import RUNS, logit_lens
from .logit_lens import SITES_NEEDED as LENS_SITES
from .pair import UntraceablePairError, trace_pair
from .plots import DPI, layer_profile_figure, lens_figure, pair_token_figure, token_heatmap_figure
from .token_patching import ROLES, by_role, token_patching
from .token_patching import SITES as TOKEN_SITES

ANALYSES: tuple[str, ...] = ("layers", "tokens", "lens")
SITES: dict[str, tuple[str, ...]] = {
    "layers": LAYER_SITES,
    "tokens": TOKEN_SITES,
    "lens": LENS_SITES,
}
#: Metrics aggregated per analysis (token metrics are per role, see `token_patching.by_role`). `delta_ld` is
#: LD_patched - LD_edited in nats; `recovery` is averaged only over pairs the model separates (see `separated`).
METRICS: dict[str, tuple[str, ...]] = {
    "layers": ("recovery", "delta_ld", "p_clean"),
    "tokens": ("recovery", "delta_ld", "p_clean"),
    "lens": ("p_clean", "p_edited", "ld", "log_rank"),
}
CONFIG_KEYS: tuple[str, ...] = ("model", "instruction", "variant")


def parse_analyses(spec: str | Sequence[str]) -> tuple[str, ...]:
    """`"layers,lens"` or a list -> validated tuple in canonical order."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = sorted(set(names) - set(ANALYSES))
    if unknown or not names:
        raise ValueError(
            f"unknown analyses {unknown or names}; expected a comma-separated subset of {list(ANALYSES)}"
        )
    return tuple(a for a in ANALYSES if a in names)


class ResultStore:
    """Per-pair, per-analysis result files under `root` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def pair_dir(self, pair_id: str) -> Path:
        return self.root / "pairs" / safe_id(pair_id)

    def done(self, pair_id: str, analysis: str) -> bool:
        d = self.pair_dir(pair_id)
        return (d / f"{analysis}.json").exists() and (d / f"{analysis}.safetensors").exists()

    def skipped(self, pair_id: str) -> str | None:
        path = self.pair_dir(pair_id) / "skipped.json"
        return json.loads(path.read_text())["reason"] if path.exists() else None

    def save(self, pair_id: str, analysis: str, tensors: dict[str, torch.Tensor], info: dict) -> None:
        d = self.pair_dir(pair_id)
        with atomic_path(d / f"{analysis}.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        write_json(d / f"{analysis}.json", info)

    def load(self, pair_id: str, analysis: str) -> tuple[dict, dict[str, torch.Tensor]]:
        d = self.pair_dir(pair_id)
        try:
            return json.loads((d / f"{analysis}.json").read_text()), load_file(
                str(d / f"{analysis}.safetensors")
            )
        except Exception as e:  # noqa: BLE001 - json and safetensors raise several types
            raise ValueError(
                f"{d}: unreadable {analysis} results ({type(e).__name__}: {e}); delete it and run with --resume"
            ) from None

    def mark_skipped(self, pair_id: str, reason: str, digest: str | None = None) -> None:
        write_json(
            self.pair_dir(pair_id) / "skipped.json",
            {"pair_id": pair_id, "reason": reason, "input_digest": digest},
        )

    def check_inputs(self, pair_id: str, digest: str) -> str | None:
        """None when the pair's stored results (if any) were computed from inputs with `digest`; otherwise removes
        them (they are recomputed) and says why."""
        d = self.pair_dir(pair_id)
        if not d.is_dir():
            return None
        why = None
        for path in sorted(d.glob("*.json")):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                why = f"{path} is unreadable ({e})"
                break
            saved = info.get("input_digest") if isinstance(info, dict) else None
            if saved != digest:
                why = (
                    f"{path} was computed from other inputs (the pair's fields or image bytes changed)"
                    if saved
                    else f"{path} does not record the inputs it was computed from"
                )
                break
        if why is not None:
            shutil.rmtree(d)
        return why

    def check_config(self, config: dict, resume: bool, overwrite: bool) -> None:
        """Start fresh (`overwrite`), continue matching results (`resume`), or refuse to mix runs."""
        path = self.root / "trace_config.json"
        if overwrite:
            for sub in ("pairs", "aggregate", "plots"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
            path.unlink(missing_ok=True)
        if path.exists():
            old = json.loads(path.read_text())
            if not resume:
                raise FileExistsError(
                    f"{self.root} already holds tracing results; pass --resume to continue them or --overwrite"
                )
            diff = {k: (old.get(k), config.get(k)) for k in CONFIG_KEYS if old.get(k) != config.get(k)}
            if diff:
                raise ValueError(
                    f"{path}: results were made with different settings {diff}; use another --out or --overwrite"
                )
        write_json(path, config)


@dataclass
class TraceResult:
    """What a tracing run produced: aggregated bands per analysis and level, the figures, and counts."""

    out_dir: Path
    aggregated: dict[str, dict[str, dict[str, Band]]] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    traced: int = 0  # pairs computed in this call
    reused: int = 0  # pairs whose results were already on disk
    skipped: dict[str, str] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)  # pairs whose saved results were not reused, and why


def _analyse(vlm: VLM, analysis: str, tp, batch_size: int) -> tuple[dict[str, torch.Tensor], dict]:
    if analysis == "layers":
        return layer_patching(vlm, tp, batch_size), {"groups": list(GROUPS)}
    if analysis == "tokens":
        tensors, labels = token_patching(vlm, tp, batch_size)
        return tensors, {"sites": list(TOKEN_SITES), **labels}
    return logit_lens(vlm, tp), {"runs": list(RUNS)}


def separated(info: dict, min_gap: float) -> bool:
    """The model prefers the clean answer on the clean image by at least `min_gap` nats more than on the edited
    image: only then is the normalised recovery (a ratio over that gap) meaningful."""
    return info["ld_clean"] - info["ld_edited"] >= min_gap


def _aggregation_item(
    analysis: str, info: dict, tensors: dict[str, torch.Tensor], min_gap: float
) -> dict[str, torch.Tensor]:
    if analysis == "lens":
        return {**tensors, "log_rank": tensors["rank_clean"].float().log()}
    t = {**tensors, "delta_ld": tensors["ld"] - info["ld_edited"]}
    if not separated(info, min_gap):
        t["recovery"] = torch.full_like(t["recovery"], float("nan"))  # missing cell: not counted in its band
    return {m: by_role(t[m], info["roles"]) for m in METRICS["tokens"]} if analysis == "tokens" else t


def baseline_stats(infos: Sequence[dict], min_gap: float) -> dict:
    """How the model answers the pairs unpatched: accuracy on clean / edited images, flips, and the LD gap."""
    if not infos:
        return {"n": 0}
    ld_c = torch.tensor([i["ld_clean"] for i in infos])
    ld_e = torch.tensor([i["ld_edited"] for i in infos])
    gap = ld_c - ld_e
    return {
        "n": len(infos),
        "clean_correct": float((ld_c > 0).float().mean()),
        "edited_correct": float((ld_e < 0).float().mean()),
        "flipped": float(((ld_c > 0) & (ld_e < 0)).float().mean()),
        "separated": float((gap >= min_gap).float().mean()),
        "gap_median": float(gap.median()),
        "abs_gap_mean": float(gap.abs().mean()),
    }


@dataclass
class TraceConfig:
    """How pairs are traced: `vseam trace`'s flags, `CausalTracing`'s `trace` argument, `run_tracing`'s `config`."""

    analyses: str = ",".join(ANALYSES)
    """comma-separated subset of layers,tokens,lens"""
    batch_size: int = 32
    """patched runs per forward"""
    min_gap: float = 0.5
    """aggregate recovery only over pairs with LD_clean - LD_edited >= this (nats)"""
    ci: str = field(default="t", metadata={"choices": CI_METHODS})
    """confidence band: Student t or bootstrap"""
    instruction: str | None = DEFAULT_INSTRUCTION
    """instruction appended to each question ('' for none)"""
    pair_plots: int = 2
    """per-pair token heatmaps to draw"""


def run_tracing(
    vlm: VLM,
    pairs: Sequence[ImagePair],
    out_dir: str | Path,
    config: TraceConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    variant: str = "base",
    log: Callable[[str], None] = print,
) -> TraceResult:
    """Trace `pairs` (resumably) as `config` says, then aggregate every finished pair per level and plot.

    `variant` names the model state (e.g. modulated with given scales) so resumed results never mix states.
    """
    config = config if config is not None else TraceConfig()
    batch_size, instruction, min_gap, ci, pair_plots = (
        config.batch_size, config.instruction, config.min_gap, config.ci, config.pair_plots
    )  # fmt: skip
    analyses = config.analyses
    analyses = parse_analyses(analyses)
    store = ResultStore(out_dir)
    config = {
        "model": vlm.name,
        "instruction": instruction,
        "variant": variant,
        "analyses": list(analyses),
        "num_layers": vlm.num_layers,
    }
    store.check_config(config, resume, overwrite)
    result = TraceResult(Path(out_dir))
    for i, pair in enumerate(pairs):
        pid = pair.pair_id
        digest = pair_digest(pair)
        if (why := store.check_inputs(pid, digest)) is not None:
            result.stale[pid] = why
            log(f"{pid}: not reusing its saved results: {why}; recomputing")
        if (reason := store.skipped(pid)) is not None:
            result.skipped[pid] = reason
            continue
        todo = [a for a in analyses if not store.done(pid, a)]
        if not todo:
            result.reused += 1
            continue
        sites = tuple(dict.fromkeys(s for a in todo for s in SITES[a]))
        try:
            tp = trace_pair(vlm, pair, sites, instruction)
        except UntraceablePairError as e:
            store.mark_skipped(pid, str(e), digest)
            result.skipped[pid] = str(e)
            log(f"skip {pid}: {e}")
            continue
        for analysis in todo:
            tensors, labels = _analyse(vlm, analysis, tp, batch_size)
            store.save(pid, analysis, tensors, {**tp.summary(), **labels, "input_digest": digest})
        result.traced += 1
        log(
            f"[{i + 1}/{len(pairs)}] {pid}: {', '.join(todo)} (LD clean {tp.ld_clean:.3f}, edited {tp.ld_edited:.3f})"
        )
    _aggregate_and_plot(store, pairs, analyses, min_gap, ci, pair_plots, result)
    return result


def _aggregate_and_plot(
    store: ResultStore,
    pairs: Sequence[ImagePair],
    analyses: Sequence[str],
    min_gap: float,
    ci: str,
    pair_plots: int,
    result: TraceResult,
) -> None:
    summary: dict = {
        "pairs": len(pairs),
        "skipped": len(result.skipped),
        "min_gap": min_gap,
        "ci": ci,
        "analyses": {},
    }
    for analysis in analyses:
        loaded = [store.load(p.pair_id, analysis) for p in pairs if store.done(p.pair_id, analysis)]
        infos = [info for info, _ in loaded]
        summary.setdefault(
            "baseline",
            {
                lv: baseline_stats([i for i in infos if lv == ALL or level_key(i) == lv], min_gap)
                for lv in level_order([level_key(i) for i in infos])
            },
        )
        summary["analyses"][analysis] = {
            "done": len(loaded),
            "separated": sum(separated(i, min_gap) for i in infos),
        }
        if not loaded:
            continue
        items = [(info, _aggregation_item(analysis, info, t, min_gap)) for info, t in loaded]
        agg = aggregate(items, METRICS[analysis], ci=ci)
        result.aggregated[analysis] = agg
        flat = {
            f"{lv}.{m}.{k}": getattr(band, k).contiguous()
            for lv, bands in agg.items()
            for m, band in bands.items()
            for k in ("mean", "lo", "hi", "n")
        }
        with atomic_path(store.root / "aggregate" / f"{analysis}.safetensors") as tmp:
            save_file(flat, str(tmp))
        write_json(
            store.root / "aggregate" / f"{analysis}.json",
            {
                "analysis": analysis,
                "min_gap": min_gap,
                "ci": ci,
                "pairs": [info["pair_id"] for info in infos],
                "axes": _axes(analysis),
                "levels": {lv: {m: b.to_dict() for m, b in bands.items()} for lv, bands in agg.items()},
            },
        )
        figure = {"layers": layer_profile_figure, "tokens": token_heatmap_figure, "lens": lens_figure}[
            analysis
        ](agg)
        result.figures[analysis] = figure
        save_png(figure, store.root / "plots" / f"{analysis}.png", dpi=DPI)
    if "tokens" in analyses:
        for p in [p for p in pairs if store.done(p.pair_id, "tokens")][:pair_plots]:
            info, t = store.load(p.pair_id, "tokens")
            metric, values = (
                ("recovery", t["recovery"])
                if separated(info, min_gap)
                else ("delta_ld", t["ld"] - info["ld_edited"])
            )
            fig = pair_token_figure(
                values.numpy(), info["tokens"], info["roles"], metric, f"{p.pair_id}: {info['question']}"
            )
            result.figures[f"pair_{safe_id(p.pair_id)}"] = fig
            save_png(fig, store.root / "plots" / "pairs" / f"{safe_id(p.pair_id)}_tokens.png", dpi=DPI)
    write_json(store.root / "summary.json", summary)


def _axes(analysis: str) -> dict[str, list[str]]:
    """Names of the leading axes of each aggregated tensor (the last axis is the layer, or the role for tokens)."""
    if analysis == "layers":
        return {"group": list(GROUPS), "layer": []}
    if analysis == "tokens":
        return {"site": list(TOKEN_SITES), "layer": [], "role": list(ROLES)}
    return {"run": list(RUNS), "layer": []}
