import json

import pytest
from scipy import stats as sps

from vseam_pl.metrics import PairedOutcomes
from vseam_pl.records import QARecord
from vseam_pl.report import (
    ROW_KEYS,
    compare_rows,
    format_table,
    main,
    outcome_rows,
    pope_rows,
    read_metrics_json,
    to_markdown,
    write_metrics_json,
)
from vseam_pl.stats import bootstrap_ci


def _gqa_rows():
    base = [1, 0, 0, 1, 0, 1, 0, 0, 1, 0] * 20
    mod = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0] * 20
    groups = ["Animal", "Color"] * 100
    return base, mod, groups


def test_compare_rows_overall_and_groups():
    base, mod, groups = _gqa_rows()
    rows = compare_rows("gqa", "test", base, mod, groups, seed=1)
    assert [r["split"] for r in rows] == ["test", "test/Animal", "test/Color"]
    assert all(list(r) == list(ROW_KEYS) for r in rows)
    overall = rows[0]
    assert overall["n"] == 200
    assert overall["baseline"] == pytest.approx(0.4) and overall["modulated"] == pytest.approx(0.7)
    assert overall["delta"] == pytest.approx(0.3)
    discordant = 60  # all in favour of the modulated model
    assert overall["p_value"] == pytest.approx(sps.binomtest(0, discordant, 0.5).pvalue)
    lo, hi = overall["ci95"]
    assert 0 < lo < 0.3 < hi
    animal = rows[1]  # even positions of the pattern: base 1,0,0,0,1 / mod 1,0,1,0,1
    assert (
        animal["n"] == 100
        and animal["baseline"] == pytest.approx(0.4)
        and animal["modulated"] == pytest.approx(0.6)
    )
    assert compare_rows("gqa", "test", base, mod, groups, seed=1) == rows  # deterministic


def test_compare_rows_baseline_only_has_nulls():
    base, _, groups = _gqa_rows()
    rows = compare_rows("gqa", "test", base, None, groups)
    assert all(r["modulated"] is r["delta"] is r["p_value"] is r["ci95"] is None for r in rows)
    assert rows[0]["baseline"] == pytest.approx(0.4)


def test_compare_rows_errors():
    with pytest.raises(ValueError, match="gqa/test: 3 baseline but 2 modulated"):
        compare_rows("gqa", "test", [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="no examples"):
        compare_rows("gqa", "test", [], [])
    with pytest.raises(ValueError, match="1 group names for 2 examples"):
        compare_rows("gqa", "test", [1, 0], [1, 1], ["Animal"])


def test_outcome_rows_from_the_paired_metric_per_question_and_level():
    levels = ["object", "attribute"] * 3
    records = [
        QARecord(
            "gqa", str(i), "q?", "yes", f"img{i}", level=levels[i], category="Animal", source=f"a.json:{i}"
        )
        for i in range(6)
    ]
    m = PairedOutcomes()
    m.update(records, ["yes", "no", "no", "no", "yes", "yes"], ["yes", "yes", "yes", "yes", "no", "yes"])
    rows = outcome_rows(m.compute(), statistics="per_question")
    assert [r["split"] for r in rows] == ["test", "test/Animal", "test/level=attribute", "test/level=object"]
    overall = rows[0]
    assert (overall["baseline"], overall["modulated"]) == (pytest.approx(3 / 6), pytest.approx(5 / 6))
    # discordant pairs: 3 for the modulated model (questions 1, 2, 3), 1 for the baseline (4)
    assert (
        overall["p_value"] == pytest.approx(sps.binomtest(1, 4, 0.5).pvalue) and overall["p_value"] == 0.625
    )
    assert overall["p_test"] == "mcnemar_exact" and overall["n_images"] == 6
    attribute = rows[2]  # questions 1, 3, 5
    assert (attribute["n"], attribute["baseline"], attribute["modulated"]) == (3, pytest.approx(1 / 3), 1.0)


def test_outcome_rows_need_the_baseline():
    m = PairedOutcomes()
    m.update([QARecord("gqa", "1", "q?", "a", "i", source="a.json:1")], None, ["a"])  # validation-style
    with pytest.raises(ValueError, match="gqa: the paired report needs the baseline"):
        outcome_rows(m.compute())


def test_pope_rows():
    targets = ["yes", "no", "yes", "no"] + ["yes", "no"]
    splits = ["random"] * 4 + ["adversarial"] * 2
    baseline = ["Yes"] * 6  # always yes
    modulated = ["yes", "no", "no", "no", "yes", "no"]
    rows = pope_rows(targets, baseline, modulated, splits)
    by = {(r["split"], r["metric"]): r for r in rows}
    assert [r["split"] for r in rows[::5]] == [
        "random",
        "adversarial",
        "avg",
        "all",
    ]  # POPE order, average, pooled
    assert {m for _, m in by} == {"accuracy", "f1", "precision", "recall", "yes_ratio"}
    assert by["random", "accuracy"]["baseline"] == 0.5 and by["random", "accuracy"]["modulated"] == 0.75
    assert by["random", "accuracy"]["p_value"] == 1.0  # one discordant pair
    # per-question correctness of the random split: baseline [1, 0, 1, 0], modulated [1, 1, 0, 1]
    assert by["random", "accuracy"]["ci95"] == list(bootstrap_ci([1, 1, 0, 1], [1, 0, 1, 0], seed=0))
    assert by["random", "f1"]["baseline"] == pytest.approx(2 / 3)  # P 0.5, R 1
    assert by["random", "f1"]["modulated"] == pytest.approx(2 / 3)  # P 1, R 0.5
    assert by["random", "yes_ratio"]["baseline"] == 1.0 and by["random", "yes_ratio"]["modulated"] == 0.25
    assert by["random", "f1"]["p_value"] is None and by["random", "f1"]["ci95"] is None
    assert by["avg", "accuracy"]["n"] == 6
    assert by["avg", "accuracy"]["modulated"] == pytest.approx((0.75 + 1.0) / 2)  # mean over splits
    pooled = by[
        "all", "accuracy"
    ]  # every question: baseline [1, 0, 1, 0, 1, 0], modulated [1, 1, 0, 1, 1, 1]
    assert (pooled["n"], pooled["baseline"], pooled["modulated"]) == (6, 0.5, pytest.approx(5 / 6))
    assert pooled["p_value"] == pytest.approx(0.625)  # exact McNemar: 3 discordant wins against 1 loss
    assert (
        len(pope_rows(targets[:4], baseline[:4], modulated[:4], splits[:4])) == 10
    )  # one split: no pooled row
    only_base = pope_rows(targets, baseline, None, splits)
    assert all(r["modulated"] is None and r["p_value"] is None for r in only_base)


def test_format_table_and_markdown():
    base, mod, groups = _gqa_rows()
    rows = compare_rows("gqa", "test", base, mod, groups, seed=1)
    text = format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows)
    assert "40.00" in lines[2] and "70.00" in lines[2] and "+30.00" in lines[2]
    assert "e-" in lines[2]  # p ~ 1.7e-18 in scientific notation
    only_base = format_table(compare_rows("gqa", "test", base))
    assert only_base.splitlines()[2].split()[-4:] == ["-", "-", "-", "-"]
    md = to_markdown(rows).splitlines()
    assert md[0].startswith("| benchmark | split |") and md[1].startswith("|---|")
    assert len(md) == 2 + len(rows) and all(line.count("|") == 11 for line in md)


def test_metrics_json_round_trip(tmp_path, capsys):
    base, mod, groups = _gqa_rows()
    rows = compare_rows("gqa", "test", base, mod, groups) + pope_rows(
        ["yes", "no"], ["yes", "yes"], ["yes", "no"]
    )
    path = write_metrics_json(
        tmp_path / "out" / "metrics.json", "llava-hf/llava-1.5-7b-hf", "scales.safetensors", rows, {"seed": 0}
    )
    report = read_metrics_json(path)
    assert report == {
        "model": "llava-hf/llava-1.5-7b-hf",
        "scales": "scales.safetensors",
        "rows": rows,
        "seed": 0,
    }
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # atomic: no temp files left
    main([str(path)])
    out = capsys.readouterr().out
    assert "llava-hf/llava-1.5-7b-hf" in out and "test/Animal" in out


def _write(tmp_path, obj) -> str:
    path = tmp_path / "metrics.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["rows"][0].pop("n"), r"rows\[0\]: missing field\(s\) \['n'\]"),
        (
            lambda r: r["rows"][1].update(baseline="high"),
            r"rows\[1\]\.baseline: expected a number, got 'high'",
        ),
        (lambda r: r["rows"][0].update(p_value=1.5), r"rows\[0\]\.p_value: expected a number in \[0, 1\]"),
        (lambda r: r["rows"][0].update(ci95=[0.2, 0.1]), r"rows\[0\]\.ci95: expected \[low, high\]"),
        (lambda r: r["rows"][0].update(delta=0.5), r"rows\[0\]\.delta: expected modulated - baseline"),
        (lambda r: r["rows"][0].update(modulated=None), r"rows\[0\]\.delta: expected null"),
        (lambda r: r["rows"][0].update(n=True), r"rows\[0\]\.n: expected a non-negative integer"),
        (lambda r: r.pop("scales"), r"missing field\(s\) \['scales'\]"),
        (lambda r: r.update(model=3), "model: expected a non-empty string"),
        (lambda r: r.update(rows={}), "rows: expected a list"),
    ],
)
def test_read_metrics_json_schema_errors_name_file_and_field(tmp_path, mutate, message):
    base, mod, _ = _gqa_rows()
    report = {"model": "m", "scales": None, "rows": compare_rows("gqa", "test", base, mod, ["A", "B"] * 100)}
    mutate(report)
    path = _write(tmp_path, report)
    with pytest.raises(ValueError, match=message) as err:
        read_metrics_json(path)
    assert str(err.value).startswith(path)


def test_read_metrics_json_bad_json_and_write_errors(tmp_path):
    path = _write(tmp_path, '{"model": "m", ')
    with pytest.raises(ValueError, match="metrics.json: not valid JSON"):
        read_metrics_json(path)
    with pytest.raises(ValueError, match=r"extra must not redefine \['rows'\]"):
        write_metrics_json(tmp_path / "x.json", "m", None, [], {"rows": []})
    with pytest.raises(ValueError, match=r"x.json: rows\[0\]: missing field"):
        write_metrics_json(tmp_path / "x.json", "m", None, [{"benchmark": "gqa"}])
    assert not (tmp_path / "x.json").exists()
