"""evaluate.py records how answers were produced and read: closed-set log-probability scoring and the vseam-pl parser
by default, generation with a toolkit's parser on request (tiny model, tiny synthetic world)."""

from __future__ import annotations

from pathlib import Path

import pytest

import evaluate
from vseam_pl.report import read_metrics_json


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=4, n_val=4, n_test=8
    )


def test_answer_scoring_and_parser_are_recorded(tiny_llava_dir, tiny_world, tmp_path, one_thread):
    model = str(tiny_llava_dir)
    common = dict(benchmarks="pope", data={"root": str(tiny_world), "num_workers": 0, "limit": 6})
    evaluate.evaluate(module={"model": model}, output=str(tmp_path / "default.json"), **common)
    default = read_metrics_json(tmp_path / "default.json")
    assert (default["answer_scoring"], default["answer_parser"]) == ("closed_set_logprob", "vseam")

    evaluate.evaluate(
        module={"model": model, "answer_scoring": "generate", "answer_parser": "llava"},
        output=str(tmp_path / "llava.json"),
        **common,
    )
    report = read_metrics_json(tmp_path / "llava.json")
    assert (report["answer_scoring"], report["answer_parser"]) == ("generate", "llava")
    # LLaVA's rule reads every reply as yes or no, so precision and recall come from 6 read answers; the rows exist.
    assert {r["metric"] for r in report["rows"]} >= {"accuracy", "recall"}

    assert report["answer_generation"] == "vseam" and default["answer_generation"] == "vseam"

    evaluate.evaluate(
        module={
            "model": model,
            "answer_scoring": "generate",
            "answer_parser": "lmms_eval",
            "generation": "toolkit",
        },
        output=str(tmp_path / "lmms.json"),
        **common,
    )
    lmms = read_metrics_json(tmp_path / "lmms.json")
    assert (lmms["answer_parser"], lmms["answer_generation"]) == ("lmms_eval", "toolkit")
    with pytest.raises(ValueError, match="generation must be one of"):
        evaluate.evaluate(
            module={"model": model, "generation": "lmms_eval"}, output=str(tmp_path / "x.json"), **common
        )
    with pytest.raises(ValueError, match="unknown answer parser"):
        evaluate.evaluate(
            module={"model": model, "answer_parser": "lmms-eval"}, output=str(tmp_path / "x.json"), **common
        )
    with pytest.raises(ValueError, match="answer_scoring must be one of"):
        evaluate.evaluate(
            module={"model": model, "answer_scoring": "logprob"}, output=str(tmp_path / "x.json"), **common
        )


def test_statistics_choice_reaches_the_rows(tiny_llava_dir, tiny_world, tmp_path, one_thread):
    import torch

    from vseam_pl.interventions.modulation import HeadModulation
    from vseam_pl.vlm import load_vlm

    mod = HeadModulation.for_vlm(load_vlm(str(tiny_llava_dir)))
    with torch.no_grad():
        mod.scales.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
    scales = str(mod.save(tmp_path / "head_scales.safetensors"))
    model = str(tiny_llava_dir)
    common = dict(
        scales=scales, benchmarks="gqa", data={"root": str(tiny_world), "num_workers": 0, "limit": 8}
    )
    clustered = evaluate.evaluate(module={"model": model}, output=str(tmp_path / "c.json"), **common)
    per_q = evaluate.evaluate(
        module={"model": model, "statistics": "per_question"}, output=str(tmp_path / "q.json"), **common
    )
    assert {r["p_test"] for r in clustered} == {"image_permutation"} and {r["p_test"] for r in per_q} == {
        "mcnemar_exact"
    }
    overall = clustered[0]
    assert overall["split"] == "test" and overall["n"] == 8 and 1 <= overall["n_images"] < 8
    with pytest.raises(ValueError, match="statistics must be one of"):
        evaluate.evaluate(
            module={"model": model, "statistics": "clustered"}, output=str(tmp_path / "x.json"), **common
        )
