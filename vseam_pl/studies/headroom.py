"""Readout headroom: is the answer in the frozen model at all, or only misread?

    vseam headroom --models checkpoints/tiny-llava checkpoints/tiny-instructblip --benchmarks gqa pope
    vseam headroom --limit 3000 --probe --out docs      # the shipped docs/headroom.* (default: runs/headroom)

A per-head rescaling changes how a frozen model reads what it has computed; it cannot add what it never computed.
For every yes/no question this scores the frozen model's margin ``log p(yes) - log p(no)`` (the quantity closed-set
scoring thresholds at 0) and reports, per group (GQA level, POPE split):

- **accuracy** and **yes-rate** at the model's own threshold (0), as evaluation scores them;
- **AUROC** of the margin against the truth (torchmetrics): 0.5 means the margin carries no information about the
  answer, whatever its offset;
- **best-threshold accuracy**: the accuracy of the best single threshold on these same questions, i.e. what undoing
  the model's yes/no prior alone could reach (optimistic: the threshold is chosen on the questions it is scored on).

An AUROC near 0.5 says the answers carry nothing to recalibrate: a rescaling of heads could then only help if the
model computed the answer inside and lost it before the output. ``--probe`` checks that too: per group, a logistic
probe on the residual stream at the last prompt token (site ``resid`` of every decoder layer), fitted on the train
split's questions, its layer chosen on the val split, scored (AUROC) on the reported split. A best-threshold accuracy
far above the accuracy says a prior (e.g. a yes-bias) hides information that is there. Writes ``<out>/headroom.json`` and
``<out>/headroom.md``.
"""

from __future__ import annotations

import shlex
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.classification import binary_auroc

from ..argparsing import parse_config as parse_config_of
from ..data import build_datamodule
from ..encoding import encode
from ..interventions import last_prompt_activations
from ..io import write_json, write_text
from ..prompts import DEFAULT_INSTRUCTION, build_prompts
from ..scoring import score_candidates
from ..vlm import VLM, load_vlm, model_display_name

#: Benchmarks with yes/no questions (COCO-QA has none).
BENCHMARKS = ("gqa", "pope")


@dataclass
class HeadroomConfig:
    """`vseam headroom`'s settings: every field is a flag (`--limit 3000`), declared here once."""

    models: list[str] = field(
        default_factory=lambda: ["checkpoints/tiny-llava", "checkpoints/tiny-instructblip"]
    )
    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS), metadata={"choices": BENCHMARKS})
    split: str = field(default="test", metadata={"choices": ("val", "test")})
    data_root: str = "data/synth"
    limit: int | None = None
    """at most this many records per benchmark split"""
    batch_size: int = 64
    probe: bool = False
    """also fit a linear probe per layer on the residual stream (train split; layer chosen on val)"""
    out: str = "runs/headroom"
    """where headroom.json and headroom.md go (docs/ ships the reference)"""


def best_threshold_accuracy(margins: torch.Tensor, is_yes: torch.Tensor) -> float:
    """Max over thresholds t of mean((margin > t) == is_yes): every cut between distinct sorted margins, and below
    all of them."""
    order = torch.argsort(margins)
    m, y = margins[order], is_yes[order].long()
    n, total_yes = len(m), int(y.sum())
    no_below = torch.cumsum(1 - y, 0)  # "no" answers at or below each cut
    yes_above = total_yes - torch.cumsum(y, 0)  # "yes" answers above it
    last_of_value = torch.ones(n, dtype=torch.bool)
    last_of_value[:-1] = m[1:] != m[:-1]  # cut only after the last of equal margins
    correct = (no_below + yes_above)[last_of_value]
    return max(total_yes, int(correct.max())) / n


def _both_answers(is_yes: torch.Tensor) -> bool:
    return bool(is_yes.any() and (~is_yes).any())


def _auroc(scores: torch.Tensor, is_yes: torch.Tensor) -> float | None:
    """AUROC of `scores` against the truth; None when only one answer occurs (it is undefined)."""
    return float(binary_auroc(scores, is_yes.long())) if _both_answers(is_yes) else None


def readout_stats(margins: torch.Tensor, is_yes: torch.Tensor) -> dict[str, Any]:
    """Accuracy and yes-rate at threshold 0, AUROC and best-threshold accuracy of one group's margins."""
    said_yes, n = margins > 0, len(margins)
    return {
        "n": n,
        "accuracy": int((said_yes == is_yes).sum()) / n,
        "yes_rate": int(said_yes.sum()) / n,
        "truth_yes_rate": int(is_yes.sum()) / n,
        "auroc": _auroc(margins, is_yes),
        "best_threshold_accuracy": best_threshold_accuracy(margins, is_yes),
    }


def yes_no_index(candidates: tuple[str, ...] | None) -> tuple[int, int] | None:
    """Positions of "yes" and "no" in a closed answer set that is exactly yes/no (any case); else None."""
    if not candidates or len(candidates) != 2:
        return None
    lower = [c.strip().lower() for c in candidates]
    if sorted(lower) != ["no", "yes"]:
        return None
    return lower.index("yes"), lower.index("no")


def fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 200) -> torch.nn.Module:
    """An L2-regularised logistic probe on standardised features (LBFGS): `probe(x)` gives logits."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    linear = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.zeros_(linear.weight), torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=steps)
    target = y.float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = linear((x - mean) / std).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss = loss + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.nn.Sequential(_Standardise(mean, std), linear, torch.nn.Flatten(0))


class _Standardise(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@torch.no_grad()
def probe_auroc(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Any]:
    """Per layer a probe fitted on `train` ([N, L, D] features, labels); the layer with the best val AUROC, and the
    test AUROC of its probe."""
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    if not (_both_answers(ytr) and _both_answers(yva)):
        return {"probe_layer": None, "probe_auroc": None}
    per_layer = []
    for layer in range(xtr.shape[1]):
        with torch.enable_grad():
            probe = fit_probe(xtr[:, layer], ytr)
        per_layer.append((_auroc(probe(xva[:, layer]), yva) or 0.0, layer, probe))
    _, layer, probe = max(per_layer, key=lambda t: t[0])
    return {"probe_layer": layer, "probe_auroc": _auroc(probe(xte[:, layer]), yte)}


@torch.no_grad()
def collect(
    vlm: VLM,
    benchmark: str,
    split: str,
    cfg: HeadroomConfig,
    margins: bool = True,
    residuals: bool = False,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per group: `is_yes`, and `margin` and/or `resid` ([N, L, D]), of the yes/no questions of one benchmark's
    split (the probe's train and val splits need no margins: no candidate scoring there)."""
    kwargs: dict[str, Any] = {"root": cfg.data_root, "batch_size": cfg.batch_size, "num_workers": 0}
    if cfg.limit:
        kwargs["limit"] = cfg.limit
    dm = build_datamodule(benchmark, **kwargs)
    dm.setup({"train": "fit", "val": "validate", "test": "test"}[split])
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    groups: dict[str, dict[str, list]] = defaultdict(lambda: {"margin": [], "is_yes": [], "resid": []})
    for batch in loader:
        rows = [(ex, yes_no_index(ex.record.candidates)) for ex in batch.examples]
        rows = [(ex, idx) for ex, idx in rows if idx is not None]
        if not rows:
            continue
        records = [ex.record for ex, _ in rows]
        images = [ex.image for ex, _ in rows]
        prompts = build_prompts(vlm, [r.question for r in records], DEFAULT_INSTRUCTION)
        scores = score_candidates(vlm, prompts, images, [r.candidates for r in records]) if margins else None
        resid = last_prompt_activations(vlm, encode(vlm, prompts, images), "resid") if residuals else None
        for i, (ex, (yes, no)) in enumerate(rows):
            key = ex.record.level or ex.record.category or benchmark
            for group in (key, "all"):
                groups[group]["is_yes"].append(ex.record.answer.strip().lower() == "yes")
                if scores is not None:
                    groups[group]["margin"].append(float(scores[i][yes] - scores[i][no]))
                if resid is not None:
                    groups[group]["resid"].append(resid[i])
    return {
        g: {
            "is_yes": torch.tensor(v["is_yes"]),
            **({"margin": torch.tensor(v["margin"])} if margins else {}),
            **({"resid": torch.stack(v["resid"])} if residuals else {}),
        }
        for g, v in groups.items()
    }


def model_rows(vlm: VLM, model: str, benchmark: str, cfg: HeadroomConfig) -> list[dict[str, Any]]:
    """The report rows of one loaded model on one benchmark (groups, then "all")."""
    reported = collect(vlm, benchmark, cfg.split, cfg, residuals=cfg.probe)
    if cfg.probe:
        fit, choose = (
            collect(vlm, benchmark, s, cfg, margins=False, residuals=True) for s in ("train", "val")
        )
    rows = []
    for group, got in sorted(reported.items(), key=lambda kv: kv[0] == "all"):
        row = {"model": model_display_name(model), "benchmark": benchmark, "group": group}
        row.update(readout_stats(got["margin"], got["is_yes"]))
        if cfg.probe:
            parts = [(d[group]["resid"], d[group]["is_yes"]) for d in (fit, choose) if group in d]
            row.update(
                probe_auroc(parts[0], parts[1], (got["resid"], got["is_yes"]))
                if len(parts) == 2
                else {"probe_layer": None, "probe_auroc": None}
            )
        rows.append(row)
        print(f"[headroom] {row['model']} {benchmark} {group}: {_summary(row)}", flush=True)
    return rows


def _summary(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={row[k]:.3f}" if isinstance(row[k], float) else f"{k}={row[k]}"
        for k in row
        if k not in ("model", "benchmark", "group")
    )


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(rows: list[dict[str, Any]], command: str, split: str) -> str:
    probed = any("probe_auroc" in r for r in rows)
    lines = [
        "# Readout headroom of the frozen models",
        "",
        "Generated by `vseam headroom` (`vseam_pl/studies/headroom.py`; do not edit by hand). Exact command:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Every yes/no question of the {split} split, scored by the frozen model's margin log p(yes) − log p(no). "
        "AUROC 0.5: the margin says nothing about the answer, so there is nothing to recalibrate (a rescaling of heads "
        "could only help if the answer were computed inside and lost before the output). Best-threshold accuracy: what removing the model's yes/no prior alone would reach (the threshold "
        "is chosen on the same questions, so it is an optimistic bound)."
        + (
            " Probe AUROC: a logistic probe on the residual stream at the last prompt token, fitted on the train "
            "split, its layer (n: the output of decoder layer n) chosen on the val split: is the answer computed anywhere "
            "the output could read it from?"
            if probed
            else ""
        ),
        "",
        "| model | benchmark | group | n | accuracy % | yes-rate % (truth) | AUROC | best-threshold accuracy % |"
        + (" probe AUROC (layer) |" if probed else ""),
        "|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if probed else ""),
    ]
    for r in rows:
        line = (
            f"| {r['model']} | {r['benchmark']} | {r['group']} | {r['n']} | {_pct(r['accuracy'])} | "
            f"{_pct(r['yes_rate'])} ({_pct(r['truth_yes_rate'])}) | {_num(r['auroc'])} | "
            f"{_pct(r['best_threshold_accuracy'])} |"
        )
        if probed:
            line += f" {_num(r.get('probe_auroc'))} ({r.get('probe_layer')}) |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def parse_config(argv: list[str] | None) -> HeadroomConfig:
    """`vseam headroom`'s command line: the `HeadroomConfig` fields as flags."""
    return parse_config_of(HeadroomConfig, argv, "python -m vseam_pl.studies.headroom", __doc__)


def headroom(config: HeadroomConfig | None = None, command: str = "vseam headroom") -> list[dict[str, Any]]:
    """Score every model of `config` on its benchmarks and write the report; `command` is recorded in it."""
    cfg = config if config is not None else HeadroomConfig()
    rows = []
    for model in cfg.models:
        vlm = load_vlm(model, attn_implementation="eager")  # once per model, for every benchmark
        rows += [row for bench in cfg.benchmarks for row in model_rows(vlm, model, bench, cfg)]
    out = Path(cfg.out)
    write_json(out / "headroom.json", {"command": command, "split": cfg.split, "rows": rows})
    write_text(out / "headroom.md", markdown(rows, command, cfg.split))
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    cfg = parse_config(argv)
    argv = sys.argv[1:] if argv is None else argv
    return headroom(cfg, shlex.join(["vseam", "headroom", *argv]))


if __name__ == "__main__":
    main()
