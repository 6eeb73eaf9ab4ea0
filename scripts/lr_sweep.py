"""Choose the default learning rate on validation: fit the default recipe at each lr and read the selection's
validation accuracies (the test split is never touched).

    python scripts/lr_sweep.py --models checkpoints/tiny-instructblip checkpoints/tiny-instructblip-planted \
        --lrs 0.005 0.02 0.05 --out docs/lr_sweep

Each (model, lr) fit keeps its record in `<runs_dir>/<model>-lr<lr>.json` (a finished one is not redone). Writes
`<out>.json` and `<out>.md`: per run the identity's validation accuracy, every validation pass (step 0 is the start,
discovery's closed-form scales), the selected candidate and its step, whether the do-no-harm check kept it, and how
many heads the selected scales moved by more than 0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from jsonargparse import CLI

from vseam_pl.io import write_json, write_text
from vseam_pl.train import build_cli


def fit_once(model: str, lr: float, root: Path, extra: list[str]) -> dict:
    """Fit the default recipe on `model` at `lr` (no test) and return the selection's record."""
    cli = build_cli(
        ["--model.model", model, "--model.lr", str(lr), "--trainer.default_root_dir", str(root), *extra]
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    module = cli.model
    decision = module.decision.to_dict()
    best = module.selection.best
    scales = best.state[0] if best is not None else module.modulation.scales.detach()
    moved = (scales - 1).abs() > 0.1
    return {
        "model": Path(model).name,
        "lr": lr,
        "decision": decision,
        "history": module.selection.history,
        "heads_moved": int(moved.sum()),
        "selected_scales": scales.tolist(),
        "threads": torch.get_num_threads(),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def main(
    models: list[str],
    lrs: list[float],
    out: str = "runs/lr_sweep/lr_sweep",
    runs_dir: str = "runs/lr_sweep",
    extra: list[str] | None = None,
) -> None:
    """Sweep `lrs` on each model; `extra`: more train.py arguments for every fit."""
    records = []
    for model in models:
        for lr in lrs:
            record = Path(runs_dir) / f"{Path(model).name}-lr{lr:g}.json"
            if not record.exists():
                write_json(record, fit_once(model, lr, record.with_suffix(""), list(extra or [])))
            records.append(json.loads(record.read_text()))
    lines = [
        "| model | lr | identity (val) | every pass (step: val) | selected (val) | step | kept | p | heads moved > 0.1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        d = r["decision"]
        p = "-" if d["p_value"] is None else f"{d['p_value']:.2g}"
        passes = ", ".join(f"{step}: {100 * acc:.2f}" for step, acc in r["history"])
        lines.append(
            f"| {r['model']} | {r['lr']:g} | {_pct(d['val_identity'])} | {passes} | {_pct(d['val_selected'])} | "
            f"{d['selected_step']} | {d['used']} | {p} | {r['heads_moved']} |"
        )
    write_json(Path(out + ".json"), records)
    write_text(Path(out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    CLI(main, as_positional=False)
