"""The evaluation report: baseline-vs-modulated rows, printable tables and the `metrics.json` file.

A row is ``{"benchmark", "split", "metric", "n", "n_images", "baseline", "modulated", "delta", "p_value", "ci95",
"p_test"}``. Metric values are fractions in [0, 1] (tables show them as percentages); ``delta = modulated -
baseline``; ``n_images`` is the number of distinct images behind the ``n`` questions (null when unknown);
``modulated``/``delta``/``p_value``/``ci95``/``p_test`` are null for a baseline-only run. Per-group rows keep the
schema and name the group in the split: ``"test/Animal"``.

Statistics (``p_test``): by default, when image ids are known, ``"image_permutation"`` — a paired permutation test
and a paired bootstrap CI that both resample *images* (`vseam_pl.stats.cluster_permutation_test`,
`cluster_bootstrap_ci`), because questions about one image are correlated and per-question tests understate the
uncertainty. ``statistics="per_question"`` (or no image ids) gives ``"mcnemar_exact"``: exact McNemar and a
bootstrap over questions.

``python -m vseam_pl.report metrics.json [--markdown]`` prints a saved report.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from numpy.typing import ArrayLike

from .argparsing import Flag, command_kwargs, command_parser
from .evaluation import Outcome, warn_duplicate_ids
from .io import read_json, write_json
from .metrics import POPE_SPLITS, TN, TP, POPEMetrics, pope_cells
from .stats import bootstrap_ci, cluster_bootstrap_ci, cluster_count, cluster_permutation_test, mcnemar_exact

#: Keys every row is written with, in order.
ROW_KEYS: tuple[str, ...] = (
    "benchmark",
    "split",
    "metric",
    "n",
    "n_images",
    "baseline",
    "modulated",
    "delta",
    "p_value",
    "ci95",
    "p_test",
)
#: Keys a row must have to be read (reports written before `n_images`/`p_test` existed lack those two).
REQUIRED_ROW_KEYS: tuple[str, ...] = tuple(k for k in ROW_KEYS if k not in ("n_images", "p_test"))
STATISTICS: tuple[str, ...] = ("image_clustered", "per_question")
P_TESTS: tuple[str, ...] = ("image_permutation", "mcnemar_exact")
TOP_KEYS: tuple[str, ...] = ("model", "scales", "rows")
POPE_REPORTED: tuple[str, ...] = ("accuracy", "f1", "precision", "recall", "yes_ratio")
POPE_AVERAGE = "avg"
#: POPE accuracy over every question of every split, with one paired test (the splits alone may be small).
POPE_POOLED = "all"


def _row(
    benchmark: str,
    split: str,
    metric: str,
    n: int,
    baseline: float,
    modulated: float | None,
    n_images: int | None = None,
) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "split": split,
        "metric": metric,
        "n": int(n),
        "n_images": None if n_images is None else int(n_images),
        "baseline": float(baseline),
        "modulated": None if modulated is None else float(modulated),
        "delta": None if modulated is None else float(modulated) - float(baseline),
        "p_value": None,
        "ci95": None,
        "p_test": None,
    }


def _check_statistics(statistics: str) -> None:
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")


def _images(images: Sequence[str] | None, n: int, where: str) -> np.ndarray | None:
    if images is None:
        return None
    arr = np.asarray([str(i) for i in images], dtype=object)
    if arr.size != n:
        raise ValueError(f"{where}: {arr.size} image ids for {n} examples")
    return arr


def _paired_row(
    benchmark: str,
    split: str,
    metric: str,
    base: np.ndarray,
    mod: np.ndarray | None,
    seed: int,
    n_resamples: int,
    images: np.ndarray | None = None,
    statistics: str = "image_clustered",
) -> dict[str, Any]:
    n_images = None if images is None else cluster_count(images)
    row = _row(
        benchmark, split, metric, base.size, base.mean(), None if mod is None else mod.mean(), n_images
    )
    if mod is None:
        return row
    if images is not None and statistics == "image_clustered":
        row["p_value"] = cluster_permutation_test(mod, base, images, seed=seed)
        row["ci95"] = list(cluster_bootstrap_ci(mod, base, images, n_resamples=n_resamples, seed=seed))
        row["p_test"] = "image_permutation"
    else:
        row["p_value"] = mcnemar_exact(mod, base)
        row["ci95"] = list(bootstrap_ci(mod, base, n_resamples=n_resamples, seed=seed))
        row["p_test"] = "mcnemar_exact"
    return row


def compare_rows(
    benchmark: str,
    split: str,
    correct_baseline: ArrayLike,
    correct_modulated: ArrayLike | None = None,
    groups: Sequence[str] | None = None,
    metric: str = "accuracy",
    seed: int = 0,
    n_resamples: int = 2000,
    images: Sequence[str] | None = None,
    statistics: str = "image_clustered",
) -> list[dict[str, Any]]:
    """One overall row plus one row per group (``split/<group>``, sorted), from per-example 0/1 correctness.

    With `images` (one image id per example) rows count ``n_images`` and, by default, test and bound the accuracy
    difference by resampling images; without them (or ``statistics="per_question"``): exact McNemar and a
    per-question paired bootstrap. Both only with a modulated model.
    """
    _check_statistics(statistics)
    base = np.asarray(correct_baseline, dtype=bool).ravel()
    mod = None if correct_modulated is None else np.asarray(correct_modulated, dtype=bool).ravel()
    if base.size == 0:
        raise ValueError(f"{benchmark}/{split}: no examples to report")
    if mod is not None and mod.size != base.size:
        raise ValueError(f"{benchmark}/{split}: {base.size} baseline but {mod.size} modulated results")
    imgs = _images(images, base.size, f"{benchmark}/{split}")
    rows = [_paired_row(benchmark, split, metric, base, mod, seed, n_resamples, imgs, statistics)]
    if groups is not None:
        names = np.asarray(list(groups), dtype=object)
        if names.size != base.size:
            raise ValueError(f"{benchmark}/{split}: {names.size} group names for {base.size} examples")
        for g in sorted(set(names.tolist())):
            sel = names == g
            sub_mod = None if mod is None else mod[sel]
            sub_img = None if imgs is None else imgs[sel]
            rows.append(
                _paired_row(
                    benchmark,
                    f"{split}/{g}",
                    metric,
                    base[sel],
                    sub_mod,
                    seed,
                    n_resamples,
                    sub_img,
                    statistics,
                )
            )
    return rows


def pope_rows(
    targets: Sequence[str],
    preds_baseline: Sequence[str],
    preds_modulated: Sequence[str] | None = None,
    splits: Sequence[str] | str = "random",
    benchmark: str = "pope",
    seed: int = 0,
    n_resamples: int = 2000,
    parser: str = "vseam",
    images: Sequence[str] | None = None,
    statistics: str = "image_clustered",
) -> list[dict[str, Any]]:
    """POPE rows (accuracy, f1, precision, recall, yes_ratio) per split and averaged over splits (split ``avg``), and
    with several splits the accuracy over all their questions (split ``all``, paired-tested like a split).

    Predictions are free-form replies or candidate strings read with `parser` (`vseam_pl.text.ANSWER_PARSERS`;
    `vseam_pl.metrics.POPEMetrics` conventions; yes_ratio is the share of predicted "yes"). Per-split accuracy rows get a McNemar p-value and a bootstrap CI; the other
    metrics and the averages are not per-example means, so their p_value and ci95 stay null. With `images` every row
    counts ``n_images`` and the accuracy rows use image-clustered statistics (see `compare_rows`).
    """
    _check_statistics(statistics)
    split_list = [splits] * len(targets) if isinstance(splits, str) else list(splits)
    if len(split_list) != len(targets):
        raise ValueError(f"{benchmark}: {len(split_list)} split names for {len(targets)} examples")
    if not targets:
        raise ValueError(f"{benchmark}: no examples to report")
    present = sorted(
        set(split_list), key=lambda s: (POPE_SPLITS.index(s) if s in POPE_SPLITS else len(POPE_SPLITS), s)
    )
    systems = (
        {"baseline": preds_baseline}
        if preds_modulated is None
        else {"baseline": preds_baseline, "modulated": preds_modulated}
    )
    scores, correct = {}, {}
    for name, preds in systems.items():
        # the predictions were gathered over DDP ranks already: syncing the counts again would multiply n
        metric = POPEMetrics(splits=present, parser=parser, sync_on_compute=False)
        metric.update(preds, targets, split_list)
        scores[name] = {k: v.item() for k, v in metric.compute().items()}
        cells = pope_cells(preds, targets, parser).numpy()
        correct[name] = (cells == TP) | (cells == TN)
    names = np.asarray(split_list, dtype=object)
    imgs = _images(images, len(targets), benchmark)
    rows = []
    for split in [*present, POPE_AVERAGE]:
        n = len(targets) if split == POPE_AVERAGE else int(scores["baseline"][f"{split}/n"])
        sel = np.ones(len(targets), dtype=bool) if split == POPE_AVERAGE else names == split
        sub_img = None if imgs is None else imgs[sel]
        n_images = None if sub_img is None else cluster_count(sub_img)
        for m in POPE_REPORTED:
            if m == "accuracy" and split != POPE_AVERAGE:
                mod = correct["modulated"][sel] if "modulated" in correct else None
                rows.append(
                    _paired_row(
                        benchmark,
                        split,
                        m,
                        correct["baseline"][sel],
                        mod,
                        seed,
                        n_resamples,
                        sub_img,
                        statistics,
                    )
                )
                continue
            mod_value = scores["modulated"][f"{split}/{m}"] if "modulated" in scores else None
            rows.append(_row(benchmark, split, m, n, scores["baseline"][f"{split}/{m}"], mod_value, n_images))
    if len(present) > 1:
        mod = correct.get("modulated")
        rows.append(
            _paired_row(
                benchmark,
                POPE_POOLED,
                "accuracy",
                correct["baseline"],
                mod,
                seed,
                n_resamples,
                imgs,
                statistics,
            )
        )
    return rows


def outcome_rows(
    outcomes: Iterable[Outcome],
    split: str = "test",
    seed: int = 0,
    parser: str = "vseam",
    statistics: str = "image_clustered",
) -> list[dict[str, Any]]:
    """Report rows per benchmark from paired outcomes (`vseam_pl.metrics.PairedOutcomes.compute()`): POPE metrics
    per POPE split, else accuracy overall + per category (+ per level).

    Rows count the images behind their questions and, by default, use image-clustered statistics. Question ids
    shared by several records are warned about (each record counts)."""
    by_bench: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_bench[o.benchmark].append(o)
    warn_duplicate_ids([o for os_ in by_bench.values() for o in os_])
    rows: list[dict[str, Any]] = []
    for bench in sorted(by_bench):
        os_ = by_bench[bench]
        if any(o.baseline is None for o in os_):
            raise ValueError(f"{bench}: the paired report needs the baseline's replies for every example")
        has_mod = os_[0].modulated is not None
        images = [o.image_id for o in os_]
        if bench == "pope":
            rows += pope_rows(
                [o.answer for o in os_],
                [o.baseline for o in os_],
                [o.modulated for o in os_] if has_mod else None,
                splits=[o.group for o in os_],
                benchmark=bench,
                seed=seed,
                parser=parser,
                images=images,
                statistics=statistics,
            )
            continue
        base = [o.baseline_correct for o in os_]
        mod = [o.modulated_correct for o in os_] if has_mod else None
        rows += compare_rows(
            bench,
            split,
            base,
            mod,
            groups=[o.group for o in os_],
            seed=seed,
            images=images,
            statistics=statistics,
        )
        levels = [o.level for o in os_]
        if all(levels) and len(set(levels)) > 1:
            rows += compare_rows(
                bench,
                split,
                base,
                mod,
                groups=[f"level={lv}" for lv in levels],
                seed=seed,
                images=images,
                statistics=statistics,
            )[1:]
    return rows


# ---------------------------------------------------------------- formatting


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _ci(ci: Sequence[float] | None) -> str:
    return "-" if ci is None else f"[{_pct(ci[0], True)}, {_pct(ci[1], True)}]"


_HEADER = ("benchmark", "split", "metric", "n", "images", "baseline %", "modulated %", "delta", "p", "95% CI")


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        row["benchmark"],
        row["split"],
        row["metric"],
        str(row["n"]),
        "-" if row.get("n_images") is None else str(row["n_images"]),
        _pct(row["baseline"]),
        _pct(row["modulated"]),
        _pct(row["delta"], signed=True),
        _p(row["p_value"]),
        _ci(row["ci95"]),
    )


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Fixed-width text table: values in percent (2 decimals), delta in points, small p in scientific notation."""
    table = [_HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    left = 3  # text columns are left-aligned, numbers right-aligned
    lines = [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The same table as GitHub markdown."""
    lines = [
        "| " + " | ".join(_HEADER) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(_HEADER) - 3)) + "|",
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- metrics.json


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
    missing = [k for k in REQUIRED_ROW_KEYS if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; a row needs {list(REQUIRED_ROW_KEYS)}")

    def bad(key: str, expected: str) -> ValueError:
        return ValueError(f"{where}.{key}: expected {expected}, got {row[key]!r}")

    for key in ("benchmark", "split", "metric"):
        if not isinstance(row[key], str) or not row[key]:
            raise bad(key, "a non-empty string")
    if not isinstance(row["n"], int) or isinstance(row["n"], bool) or row["n"] < 0:
        raise bad("n", "a non-negative integer")
    n_images = row.get("n_images")
    if n_images is not None and not (
        isinstance(n_images, int) and not isinstance(n_images, bool) and 0 < n_images <= max(row["n"], 1)
    ):
        raise bad("n_images", f"null or an integer in [1, n={row['n']}]")
    if row.get("p_test") is not None and row["p_test"] not in P_TESTS:
        raise bad("p_test", f"null or one of {list(P_TESTS)}")
    if not _is_number(row["baseline"]):
        raise bad("baseline", "a number")
    for key in ("modulated", "delta"):
        if row[key] is not None and not _is_number(row[key]):
            raise bad(key, "a number or null")
    p = row["p_value"]
    if p is not None and not (_is_number(p) and 0 <= p <= 1):
        raise bad("p_value", "a number in [0, 1] or null")
    ci = row["ci95"]
    if ci is not None and not (
        isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(x) for x in ci) and ci[0] <= ci[1]
    ):
        raise bad("ci95", "[low, high] with low <= high, or null")
    if row["modulated"] is None:
        for key in ("delta", "p_value", "ci95", "p_test"):
            if row.get(key) is not None:
                raise bad(key, "null, since modulated is null (baseline-only row)")
    elif row["delta"] is None or not math.isclose(
        row["delta"], row["modulated"] - row["baseline"], abs_tol=1e-9
    ):
        raise bad("delta", f"modulated - baseline = {row['modulated'] - row['baseline']!r}")


def validate_report(obj: Any, source: str = "metrics") -> dict[str, Any]:
    """Check a metrics.json object; errors name `source`, the field, and what was expected."""
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a JSON object with {list(TOP_KEYS)}, got {type(obj).__name__}")
    missing = [k for k in TOP_KEYS if k not in obj]
    if missing:
        raise ValueError(f"{source}: missing field(s) {missing}")
    if not isinstance(obj["model"], str) or not obj["model"]:
        raise ValueError(f"{source}: model: expected a non-empty string, got {obj['model']!r}")
    if obj["scales"] is not None and not isinstance(obj["scales"], str):
        raise ValueError(
            f"{source}: scales: expected a string (path of the scales file) or null, got {obj['scales']!r}"
        )
    if not isinstance(obj["rows"], list):
        raise ValueError(f"{source}: rows: expected a list, got {type(obj['rows']).__name__}")
    for i, row in enumerate(obj["rows"]):
        _check_row(row, f"{source}: rows[{i}]")
    return obj


def write_metrics_json(
    path: str | os.PathLike,
    model: str,
    scales: str | None,
    rows: Sequence[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Validate and atomically write ``{"model", "scales", "rows", **extra}``."""
    clash = sorted(set(extra or {}) & set(TOP_KEYS))
    if clash:
        raise ValueError(f"{path}: extra must not redefine {clash}")
    obj = validate_report(
        {
            "model": model,
            "scales": None if scales is None else str(scales),
            "rows": list(rows),
            **(extra or {}),
        },
        source=str(path),
    )
    return write_json(path, obj)


def read_metrics_json(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a metrics.json written by `write_metrics_json`."""
    return validate_report(read_json(path, "metrics file"), source=str(path))


def show(path: Annotated[Path, Flag(positional=True)], markdown: bool = False) -> None:
    """Print a metrics.json report as a table.

    Args:
        path: the metrics.json
        markdown: print a markdown table instead
    """
    report = read_metrics_json(path)
    print(f"model: {report['model']}  scales: {report['scales']}")
    print(to_markdown(report["rows"]) if markdown else format_table(report["rows"]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = command_parser(show, None, "Print a metrics.json report as a table.")
    show(**command_kwargs(show, parser.parse_args(argv)))


if __name__ == "__main__":
    main()
