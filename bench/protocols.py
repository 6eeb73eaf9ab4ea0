"""How far vseam-pl's default ablation protocol ranks heads from the V-SEAM release's (docs/fidelity.md).

    python -m bench.protocols [--models checkpoints/tiny-llava checkpoints/tiny-instructblip] [--n-pairs 32]
        [--k 8] [--threads 1] [--out FILE.json]

For each model, single-head ablation (`mean_others`, clean image, no filter) on the same synthetic-world pairs under
`--protocol default` and `--protocol release`, then: Spearman rank correlation over all heads of the positive
scores, and of the negative scores (default's signed `negative` negated, so larger = more negative head under both);
the Jaccard overlap of the top-K positive (negative) heads; accuracy under each protocol's correctness rule. Then
release-protocol set ablation (top-K positive / negative vs 20 random K-sets, `zero`). Prints JSON: `environment`
(torch threads, load average at the start), `load_average_at_end` and `models` (one entry per model).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from bench import _env
from vseam_pl.discovery import DiscoveryConfig, jaccard, run_discovery
from vseam_pl.discovery.set_ablation import SetAblationConfig, run_set_ablation
from vseam_pl.io import write_json
from vseam_pl.pairs import load_pairs
from vseam_pl.vlm import load_vlm


def compare(model: str, pairs: list, k: int) -> dict:
    vlm = load_vlm(model)
    runs = {}
    for protocol in ("default", "release"):
        start = time.perf_counter()
        runs[protocol] = run_discovery(
            vlm, pairs, DiscoveryConfig(method="ablation", protocol=protocol)
        ).scores
        runs[protocol].meta["wall_s"] = round(time.perf_counter() - start, 1)
    d, r = runs["default"], runs["release"]
    out = {"model": Path(model).name, "pairs": len(pairs)}
    for protocol, s in runs.items():
        n = s.counts["all"]
        out[f"accuracy_{protocol}"] = n["positive"]["n"] / n["signed"]["n"]
        out[f"seconds_{protocol}"] = s.meta["wall_s"]
    pos_rho = spearmanr(d.get("all", "positive").flatten(), r.get("all", "positive").flatten()).statistic
    neg_rho = spearmanr(-d.get("all", "negative").flatten(), r.get("all", "negative").flatten()).statistic
    out["spearman_positive"], out["spearman_negative"] = float(pos_rho), float(neg_rho)
    for kind in ("positive", "negative"):
        top = {p: {h[:2] for h in s.ranked_heads("all", kind, k)} for p, s in runs.items()}
        out[f"jaccard_top{k}_{kind}"] = jaccard(top["default"], top["release"])
    sets = run_set_ablation(vlm, pairs, r, SetAblationConfig(k=k, random_sets=20, protocol="release")).summary
    out["set_ablation_release"] = {
        "base_accuracy": sets["base"]["accuracy"],
        **{
            kind: {m: sets["sets"][kind][m] for m in ("accuracy", "mean_drop", "p_permutation_vs_base")}
            for kind in ("positive", "negative")
        },
        "random": sets["random"],
        "vs_random": sets["vs_random"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["checkpoints/tiny-llava", "checkpoints/tiny-instructblip"])
    p.add_argument(
        "--pairs", help="pairs.jsonl (default: a synthetic test split, seed 123, in a temp folder)"
    )
    p.add_argument("--n-pairs", type=int, default=32)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = args.pairs
    if manifest is None:
        from vseam_pl.synth.writers import generate_benchmarks

        root = generate_benchmarks(tempfile.mkdtemp(), seed=123, n_train=1, n_val=1, n_test=args.n_pairs)
        manifest = root / "test" / "pairs" / "pairs.jsonl"
    pairs = load_pairs(manifest, limit=args.n_pairs)
    env = _env.environment()
    results = [compare(m, pairs, args.k) for m in args.models]
    report = {
        "environment": env,
        "load_average_at_end": _env.environment()["load_average"],
        "models": results,
    }
    print(json.dumps(report, indent=1))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
