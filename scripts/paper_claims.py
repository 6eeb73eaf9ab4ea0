"""Measure V-SEAM's four claims on the embedded models and write one table (test split, paired tests, seeds).

    python scripts/paper_claims.py --models checkpoints/tiny-llava checkpoints/tiny-instructblip --out docs

Per model, each step a package command whose outputs are kept under `--runs_dir` (a finished step is not redone, so
an interrupted run resumes):

1. **Modulation beats the frozen model on each benchmark**: `vseam train -c configs/synth_all.yaml` (GQA, POPE and
   COCO-QA interleaved; each tested on its held-out split with the image-clustered paired test).
2. **Discovery-selected heads beat random heads**: `vseam compare --methods zero_shot discovered_heads random_heads`
   (the K discovered heads' scales learned vs K random heads', 3 seeds, same data and steps), and the set-ablation
   experiment `vseam discover --method set_ablation` (top-K sets vs 20 random K-sets, ablated on test pairs).
3. **10% of the data comes within a point of 100%**: `vseam sweep --fractions 0.1 1.0 --seeds 0 1 2` (1024 test
   questions, as the comparison).
4. **Positive heads overlap within a level more than across levels; negative heads generalise across levels**:
   the Jaccard summaries of `vseam discover --method ablation` on the test pairs (`overlap.json`).

The rule deciding "reproduced" is fixed here, before any number is seen, and printed beside each claim
(`RULES`). Writes `<out>/claims.json` and `<out>/claims.md`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from statistics import mean
from typing import Any

from vseam_pl.io import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]

RULES = {
    "1": "delta > 0 with image-clustered p < 0.05 on the benchmark",
    "2": "discovered heads' accuracy above every random-heads seed, and the top-K positive set's ablation drop "
    "above the random sets' (rank p < 0.05)",
    "3": "mean accuracy at 10% >= mean at 100% - 1 point (3 seeds each)",
    "4": "positive: within-level category Jaccard > across-level; negative: across-level Jaccard of negative heads "
    ">= that of positive heads",
}


def run(cmd: list[str], done: Path) -> None:
    """Run a package command unless its output `done` exists (the resume rule)."""
    if done.exists():
        print(f"[claims] have {done}", flush=True)
        return
    print(f"[claims] $ {shlex.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    if not done.exists():
        raise RuntimeError(f"{shlex.join(cmd)} finished without writing {done}")


def vseam(*args: str) -> list[str]:
    return [sys.executable, "-m", "vseam_pl.commands", *args]


def claim1(model: str, runs: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = runs / "claim1"
    run(
        vseam(
            "train",
            "-c",
            "configs/synth_all.yaml",
            "--model.model",
            model,
            "--output_dir",
            str(out),
            "--trainer.enable_progress_bar",
            "false",
        ),
        out / "metrics.json",
    )
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    per = {}
    for (
        row
    ) in rows:  # each benchmark's test row; POPE reports one per negative sampling (its "avg" has no test)
        name = row["benchmark"] if row["split"] == "test" else f"{row['benchmark']} {row['split']}"
        if (
            row["metric"] == "accuracy"
            and row["p_value"] is not None
            and (row["split"] == "test" or row["benchmark"] == "pope")
        ):
            per[name] = {
                k: row.get(k) for k in ("n", "baseline", "modulated", "delta", "p_value", "ci95", "n_images")
            }
    reproduced = {b: bool(r["delta"] > 0 and r["p_value"] < 0.05) for b, r in per.items()}
    return {"benchmarks": per, "reproduced": reproduced}


def discover_cmd(model: str, args: argparse.Namespace, method: str, out: Path, *extra: str) -> list[str]:
    """`vseam discover` on the first `--pairs` test pairs, top-K as for every claim."""
    pairs = f"{args.data_root}/test/pairs/pairs.jsonl"
    return vseam(
        *("discover", "--model", model, "--pairs", pairs, "--method", method, *extra),
        *("--limit", str(args.pairs), "--top_k", str(args.top_k), "--out", str(out)),
    )


def run_study(study: str, model: str, out: Path, result: str, *options: str) -> dict[str, Any]:
    """`vseam compare|sweep` on one model (table under `out`, training runs under `out/runs`) unless its `result`
    file exists; that file's JSON."""
    cmd = vseam(study, "--models", model, *options, "--out", str(out), "--runs_dir", str(out / "runs"))
    run(cmd, out / result)
    return json.loads((out / result).read_text())


def discovery_on_test_pairs(model: str, runs: Path, args: argparse.Namespace) -> Path:
    """Ablation discovery on the test pairs: the scores the set ablation ranks (claim 2) and the overlap (claim 4)."""
    folder = runs / "discovery-test"
    run(discover_cmd(model, args, "ablation", folder), folder / "overlap.json")
    return folder


def claim2(model: str, runs: Path, args: argparse.Namespace) -> dict[str, Any]:
    methods = ("--methods", "zero_shot", "discovered_heads", "random_heads", "--random_seeds", "0", "1", "2")
    comparison = run_study("compare", model, runs / "claim2-compare", "comparison.json", *methods)
    rows = comparison["models"][0]["rows"]
    by = {(r["method"], r["seed"]): r for r in rows}
    discovered = by[("discovered_heads", None)]
    randoms = [r for (m, _), r in by.items() if m == "random_heads"]
    disc = discovery_on_test_pairs(model, runs, args)
    sets = runs / "set-ablation"
    run(
        discover_cmd(model, args, "set_ablation", sets, "--scores", str(disc)),
        sets / "set_ablation.json",
    )
    set_summary = json.loads((sets / "set_ablation.json").read_text())
    positive = set_summary["vs_random"]["positive"]
    result = {
        "zero_shot": by[("zero_shot", None)]["accuracy"],
        "discovered_heads": {k: discovered[k] for k in ("accuracy", "delta", "p_value", "trainable_params")},
        "random_heads": [r["accuracy"] for r in randoms],
        "random_mean": mean(r["accuracy"] for r in randoms),
        "n": discovered["n"],
        "set_ablation": {
            "positive_drop": set_summary["sets"]["positive"]["mean_drop"],
            "random_drop_mean": set_summary["random"]["mean_drop"],
            "random_drop_std": set_summary["random"]["std_drop"],
            "p_rank": positive["p_rank"],
            "p_permutation": positive["p_permutation"],
            "n_random_sets": set_summary["random"]["n_sets"],
        },
    }
    result["reproduced"] = bool(
        all(discovered["accuracy"] > a for a in result["random_heads"]) and positive["p_rank"] < 0.05
    )
    return result


def claim3(model: str, runs: Path, args: argparse.Namespace) -> dict[str, Any]:
    options = ("--fractions", "0.1", "1.0", "--seeds", "0", "1", "2", "--test_batches", "32")
    ablation = run_study("sweep", model, runs / "claim3-sweep", "ablation.json", *options)
    summary = {s["fraction"]: s for s in ablation["summary"]}
    low, full = summary[0.1], summary[1.0]
    return {
        "zero_shot": full["zero_shot"],
        "fraction_0.1": {"mean": low["mean"], "std": low["std"], "seeds": low["seeds"]},
        "fraction_1.0": {"mean": full["mean"], "std": full["std"], "seeds": full["seeds"]},
        "n_test": full["n_test"],
        "reproduced": bool(low["mean"] >= full["mean"] - 0.01),
    }


def claim4(model: str, runs: Path, args: argparse.Namespace) -> dict[str, Any]:
    overlap = json.loads((discovery_on_test_pairs(model, runs, args) / "overlap.json").read_text())
    pos, neg = overlap["positive"], overlap["negative"]
    result = {
        "k": overlap["k"],
        "positive_within": pos["within_level_category_mean"],
        "positive_across": pos["across_level_category_mean"],
        "negative_within": neg["within_level_category_mean"],
        "negative_across": neg["across_level_category_mean"],
    }
    result["reproduced"] = bool(
        result["positive_within"] > result["positive_across"]
        and result["negative_across"] >= result["positive_across"]
    )
    return result


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(results: dict[str, dict[str, Any]], command: str) -> str:
    lines = [
        "# V-SEAM's claims on the embedded models",
        "",
        f"Generated by `{command}` (do not edit by hand). Test split of the synthetic world; "
        "p: image-clustered paired permutation test (claim 1), McNemar (claim 2, vs zero-shot), rank of the "
        "top-K set among random sets (set ablation).",
        "",
        "| claim | model | measured | rule | reproduced |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c1 = r["claim1"]
        for bench, row in c1["benchmarks"].items():
            lines.append(
                f"| 1. modulation > frozen ({bench}) | {name} | {pct(row['baseline'])} → {pct(row['modulated'])}% "
                f"({100 * row['delta']:+.2f}, p = {row['p_value']:.3g}, n = {row['n']}) | {RULES['1']} | "
                f"{'yes' if c1['reproduced'][bench] else 'no'} |"
            )
        c2 = r["claim2"]
        sa = c2["set_ablation"]
        lines.append(
            f"| 2. discovered > random heads | {name} | learned K heads: discovered "
            f"{pct(c2['discovered_heads']['accuracy'])}% vs random "
            f"{' / '.join(pct(a) for a in c2['random_heads'])}% (zero-shot {pct(c2['zero_shot'])}%, n = {c2['n']}); "
            f"ablating the top-K positive set drops p(answer) by {sa['positive_drop']:.3f} vs "
            f"{sa['random_drop_mean']:.3f} ± {sa['random_drop_std']:.3f} for {sa['n_random_sets']} random sets "
            f"(rank p = {sa['p_rank']:.3f}) | {RULES['2']} | {'yes' if c2['reproduced'] else 'no'} |"
        )
        c3 = r["claim3"]
        lo, hi = c3["fraction_0.1"], c3["fraction_1.0"]
        lines.append(
            f"| 3. 10% within a point of 100% | {name} | {pct(lo['mean'])} ± {pct(lo['std'])}% at 10% vs "
            f"{pct(hi['mean'])} ± {pct(hi['std'])}% at 100% (zero-shot {pct(c3['zero_shot'])}%, 3 seeds, "
            f"n = {c3['n_test']}) | {RULES['3']} | {'yes' if c3['reproduced'] else 'no'} |"
        )
        c4 = r["claim4"]
        lines.append(
            f"| 4. head overlap (Jaccard, top-{c4['k']}) | {name} | positive within / across level "
            f"{c4['positive_within']:.2f} / {c4['positive_across']:.2f}; negative within / across "
            f"{c4['negative_within']:.2f} / {c4['negative_across']:.2f} | {RULES['4']} | "
            f"{'yes' if c4['reproduced'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def readme_table(results: dict[str, dict[str, Any]]) -> str:
    """The compact table of the README (one row per claim, one column per model)."""
    names = list(results)

    def c1(r: dict) -> str:
        b = r["claim1"]["benchmarks"]
        return " / ".join(f"{b[k]['delta'] * 100:+.1f}" for k in b) + " pts"

    def c2(r: dict) -> str:
        x, sa = r["claim2"], r["claim2"]["set_ablation"]
        random_delta = 100 * (x["random_mean"] - x["zero_shot"])
        return (
            f"learned: discovered {100 * x['discovered_heads']['delta']:+.2f} vs random {random_delta:+.2f} pts; "
            f"ablation drop {sa['positive_drop']:.3f} vs {sa['random_drop_mean']:.3f} (rank p {sa['p_rank']:.3f})"
        )

    def c3(r: dict) -> str:
        x = r["claim3"]
        return (
            f"{pct(x['fraction_0.1']['mean'])} vs {pct(x['fraction_1.0']['mean'])}% "
            f"(zero-shot {pct(x['zero_shot'])})"
        )

    def c4(r: dict) -> str:
        x = r["claim4"]
        return f"pos. {x['positive_within']:.2f} / {x['positive_across']:.2f}; neg. across {x['negative_across']:.2f}"

    def yes(r: dict, claim: str) -> str:
        flag = r[claim]["reproduced"]
        return "yes" if (all(flag.values()) if isinstance(flag, dict) else flag) else "no"

    first = results[names[0]]["claim1"]["benchmarks"]
    claims = [
        ("claim1", f"1. modulation beats the frozen model on each benchmark ({' / '.join(first)})", c1),
        ("claim2", "2. discovered heads beat random heads", c2),
        ("claim3", "3. 10% of the data within a point of 100% (3 seeds)", c3),
        ("claim4", "4. positive heads shared within a level, negative across (Jaccard within / across)", c4),
    ]
    lines = [
        f"| claim (rules: [claims](docs/claims.md)) | {' | '.join(names)} | reproduced |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    for key, title, cell in claims:
        cells = " | ".join(cell(results[n]) for n in names)
        lines.append(f"| {title} | {cells} | {' / '.join(yes(results[n], key) for n in names)} |")
    return "\n".join(lines)


def write_readme_table(readme: Path, table: str) -> None:
    """Replace the table between the README's `<!-- claims-table -->` markers."""
    text = readme.read_text()
    start, end = "<!-- claims-table -->", "<!-- /claims-table -->"
    if start not in text or end not in text:
        raise ValueError(f"{readme}: no {start} ... {end} markers to write the claims table between")
    head, rest = text.split(start, 1)
    write_text(readme, f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["checkpoints/tiny-llava", "checkpoints/tiny-instructblip"])
    p.add_argument("--data_root", default="data/synth")
    p.add_argument("--runs_dir", default="runs/claims")
    p.add_argument(
        "--out", default="runs/claims", help="where claims.json and claims.md go (docs: the shipped ones)"
    )
    p.add_argument("--pairs", type=int, default=96, help="test pairs for discovery and set ablation")
    p.add_argument("--top_k", type=int, default=8)
    p.add_argument("--readme", help="also write the compact table into this README's claims-table markers")
    p.add_argument("--claims", nargs="+", default=["1", "2", "3", "4"], choices=["1", "2", "3", "4"])
    args = p.parse_args(argv)
    command = "python scripts/paper_claims.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    steps = {"1": claim1, "2": claim2, "3": claim3, "4": claim4}
    results: dict[str, dict[str, Any]] = {}
    for model in args.models:
        runs = Path(args.runs_dir) / Path(model).name
        results[Path(model).name] = {f"claim{c}": steps[c](model, runs, args) for c in args.claims}
    if set(args.claims) == set(steps):
        out = Path(args.out)
        write_json(out / "claims.json", {"command": command, "rules": RULES, "models": results})
        write_text(out / "claims.md", markdown(results, command))
        print((out / "claims.md").read_text())
        if args.readme:
            write_readme_table(Path(args.readme), readme_table(results))
    return results


if __name__ == "__main__":
    main()
