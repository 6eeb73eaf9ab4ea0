"""The tracing driver end to end: files, resuming after an interruption, the CLI, the Lightning callback, and the
synthetic world's pairs."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from safetensors.torch import load_file
from test_tracing import make_pairs
from torch.utils.data import DataLoader

from callbacks.tracing import CausalTracing
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.pairs import read_pairs, select_pairs, write_pairs
from vseam_pl.trace import main as trace_main
from vseam_pl.tracing.pair import trace_pair
from vseam_pl.tracing.runner import TraceConfig, run_tracing
from vseam_pl.vlm import load_vlm

ALL_PAIRS = -float("inf")  # min_gap that keeps every pair (random models barely separate the answers)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def llava(tiny_llava_dir):
    return load_vlm(str(tiny_llava_dir))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    pairs = make_pairs(root / "images", n=3)
    return write_pairs(root / "pairs.jsonl", pairs)


class Stop(Exception):
    pass


def test_run_writes_tensors_json_aggregates_and_figures(llava, manifest, tmp_path):
    pairs = list(read_pairs(manifest))
    res = run_tracing(
        llava, pairs, tmp_path, TraceConfig(batch_size=7, min_gap=ALL_PAIRS, pair_plots=1), log=lambda m: None
    )
    assert res.traced == 3 and res.reused == 0
    L = llava.num_layers
    layers = load_file(str(tmp_path / "pairs" / "p0" / "layers.safetensors"))
    assert layers["recovery"].shape == layers["p_clean"].shape == (2, L)
    tokens = load_file(str(tmp_path / "pairs" / "p1" / "tokens.safetensors"))
    info = json.loads((tmp_path / "pairs" / "p1" / "tokens.json").read_text())
    assert tokens["ld"].shape == (2, L, len(info["positions"])) and info["sites"] == ["attn", "mlp"]
    assert info["roles"].count("concept") == 1 and info["roles"][-1] == "final"
    assert info["tokens"][info["roles"].index("concept")] == "red"
    lens = load_file(str(tmp_path / "pairs" / "p2" / "lens.safetensors"))
    assert lens["rank_clean"].shape == (2, L)
    agg = json.loads((tmp_path / "aggregate" / "layers.json").read_text())
    assert list(agg["levels"]) == ["all", "object", "attribute", "relation"]
    assert agg["levels"]["all"]["recovery"]["n"] == [[3] * L, [3] * L]
    assert load_file(str(tmp_path / "aggregate" / "tokens.safetensors"))["all.recovery.mean"].shape == (
        2,
        L,
        3,
    )
    # the aggregated mean is the mean of the per-pair tensors
    per_pair = torch.stack(
        [load_file(str(tmp_path / "pairs" / f"p{i}" / "layers.safetensors"))["ld"] for i in range(3)]
    )
    ld_edited = torch.tensor(
        [
            [json.loads((tmp_path / "pairs" / f"p{i}" / "layers.json").read_text())["ld_edited"]]
            for i in range(3)
        ]
    )
    flat = load_file(str(tmp_path / "aggregate" / "layers.safetensors"))
    torch.testing.assert_close(flat["all.delta_ld.mean"], (per_pair - ld_edited[:, :, None]).mean(0))
    for name in ("layers", "tokens", "lens"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "plots" / "pairs").iterdir()) == ["p0_tokens.png"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["analyses"]["layers"] == {"done": 3, "separated": 3}
    assert summary["baseline"]["all"]["n"] == 3 and 0 <= summary["baseline"]["object"]["flipped"] <= 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_min_gap_excludes_pairs_from_recovery_only(llava, manifest, tmp_path):
    pairs = list(read_pairs(manifest))
    res = run_tracing(llava, pairs, tmp_path, TraceConfig(analyses="layers", min_gap=1e6), log=lambda m: None)
    bands = res.aggregated["layers"]["all"]
    assert bands["recovery"].n.max() == 0 and torch.isnan(bands["recovery"].mean).all()
    assert (bands["delta_ld"].n == 3).all() and (bands["p_clean"].n == 3).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["analyses"]["layers"]["separated"] == 0 and summary["baseline"]["all"]["separated"] == 0
    assert (tmp_path / "plots" / "layers.png").exists()


def test_interrupted_run_resumes_without_redoing_finished_pairs(llava, manifest, tmp_path):
    pairs = list(read_pairs(manifest))
    seen = []

    def stop_after_first(msg: str) -> None:
        seen.append(msg)
        raise Stop

    with pytest.raises(Stop):
        run_tracing(llava, pairs, tmp_path, TraceConfig(analyses="layers,lens"), log=stop_after_first)
    done = tmp_path / "pairs" / "p0" / "layers.json"
    assert done.exists() and not (tmp_path / "pairs" / "p1").exists()
    stamp = done.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--resume"):
        run_tracing(llava, pairs, tmp_path, TraceConfig(analyses="layers,lens"), log=lambda m: None)
    with pytest.raises(ValueError, match="instruction"):
        run_tracing(llava, pairs, tmp_path, TraceConfig(instruction=None), resume=True, log=lambda m: None)
    # a half-finished pair (tensors written, JSON marker not) is redone for that analysis only
    (tmp_path / "pairs" / "p0" / "lens.json").unlink()
    res = run_tracing(
        llava,
        pairs,
        tmp_path,
        TraceConfig(analyses="layers,lens", min_gap=ALL_PAIRS),
        resume=True,
        log=lambda m: None,
    )
    assert (res.traced, res.reused) == (3, 0)
    assert done.stat().st_mtime_ns == stamp
    res = run_tracing(
        llava,
        pairs,
        tmp_path,
        TraceConfig(analyses="layers,lens", min_gap=ALL_PAIRS),
        resume=True,
        log=lambda m: None,
    )
    assert (res.traced, res.reused) == (0, 3)
    fresh = run_tracing(
        llava,
        pairs,
        tmp_path / "fresh",
        TraceConfig(analyses="layers", min_gap=ALL_PAIRS),
        log=lambda m: None,
    )
    for level in ("all", "object"):
        torch.testing.assert_close(
            res.aggregated["layers"][level]["delta_ld"].mean,
            fresh.aggregated["layers"][level]["delta_ld"].mean,
        )


def test_resume_recomputes_pairs_whose_inputs_changed(llava, manifest, tmp_path):
    """Same pair ids with swapped images and answers, or an emptied result file: recomputed, and the log says so."""
    from dataclasses import replace

    pairs = list(read_pairs(manifest))
    quiet = {"config": TraceConfig(analyses="lens", min_gap=ALL_PAIRS), "log": lambda m: None}
    run_tracing(llava, pairs, tmp_path, **quiet)
    swapped = [replace(p, clean_image=p.edited_image, edited_image=p.clean_image, answer=p.edited_answer,
                       edited_answer=p.answer) for p in pairs[:2]] + pairs[2:]  # fmt: skip
    said = []
    res = run_tracing(llava, swapped, tmp_path, resume=True, **{**quiet, "log": said.append})
    assert (res.traced, res.reused) == (2, 1) and sorted(res.stale) == ["p0", "p1"]
    assert any("p0: not reusing its saved results" in m and "other inputs" in m for m in said)
    fresh = run_tracing(llava, swapped, tmp_path / "fresh", **quiet)
    for pid in ("p0", "p1"):  # the results are those of the new inputs
        for name, t in load_file(str(tmp_path / "fresh" / "pairs" / pid / "lens.safetensors")).items():
            torch.testing.assert_close(load_file(str(tmp_path / "pairs" / pid / "lens.safetensors"))[name], t)
    assert fresh.traced == 3

    (tmp_path / "pairs" / "p2" / "lens.json").write_text("")  # an empty result file
    res = run_tracing(llava, swapped, tmp_path, resume=True, **{**quiet, "log": said.append})
    assert (
        (res.traced, res.reused) == (1, 2)
        and "unreadable" in res.stale["p2"]
        and "lens.json" in res.stale["p2"]
    )


def test_untraceable_pairs_are_recorded_and_skipped_on_resume(llava, manifest, tmp_path):
    pairs = list(read_pairs(manifest))
    p = pairs[0]
    open_pair = type(p)("open", p.question, p.clean_image, p.edited_image, "dog", None, source="x:1")
    res = run_tracing(
        llava, [open_pair, *pairs[:1]], tmp_path, TraceConfig(analyses="lens"), log=lambda m: None
    )
    assert list(res.skipped) == ["open"] and "edited_answer" in res.skipped["open"]
    res = run_tracing(
        llava,
        [open_pair, *pairs[:1]],
        tmp_path,
        TraceConfig(analyses="lens"),
        resume=True,
        log=lambda m: None,
    )
    assert list(res.skipped) == ["open"] and res.reused == 1


def test_select_pairs_filters_levels_limits_and_rejects_duplicate_ids(manifest):
    pairs = list(read_pairs(manifest))
    assert [p.pair_id for p in select_pairs(pairs, ["object", "relation"])] == ["p0", "p2"]
    assert [p.pair_id for p in select_pairs(pairs, limit=2)] == ["p0", "p1"]
    with pytest.raises(ValueError, match="repeats"):
        select_pairs([pairs[0], pairs[0]])
    with pytest.raises(ValueError, match=r"unknown level\(s\) \['objects'\]"):
        select_pairs(pairs, ["objects"])


def test_cli_traces_resumes_and_reports_bad_arguments(tiny_llava_dir, manifest, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "--model",
        str(tiny_llava_dir),
        "--pairs",
        str(manifest),
        "--out",
        str(out),
        "--analyses",
        "layers",
        "--levels",
        "object,attribute",
        "--limit",
        "1",
        "--batch-size",
        "4",
        "--min-gap=-1e9",
    ]
    assert trace_main(args) == 0
    assert sorted(p.name for p in (out / "pairs").iterdir()) == ["p0"]
    assert trace_main(args) == 2 and "--resume" in capsys.readouterr().err
    assert trace_main([*args[:-5], "--resume", "--limit", "2", "--min-gap=-1e9"]) == 0
    assert "traced 1, reused 1" in capsys.readouterr().out
    assert trace_main([*args[:7], "layers,heads"]) == 2
    assert "unknown analyses ['heads']" in capsys.readouterr().err
    assert trace_main(["--model", "x", "--pairs", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 2
    assert "no pairs manifest" in capsys.readouterr().err


# -- Lightning callback -----------------------------------------------------------------------------------------


class ScalesOnly(LightningModule):
    """The smallest module with the contract the callback relies on: `vlm` and an attached `modulation`."""

    def __init__(self, vlm):
        super().__init__()
        self.vlm = vlm
        self.modulation = HeadModulation.for_vlm(self.vlm, init=0.5).attach(self.vlm)

    def training_step(self, batch, batch_idx):
        return (self.modulation.scales - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD([self.modulation.scales], lr=0.1)

    def train_dataloader(self):
        return DataLoader(torch.zeros(2, 1), batch_size=1)


def test_callback_traces_the_unmodulated_model_and_logs_to_tensorboard(tiny_llava_dir, manifest, tmp_path):
    vlm = load_vlm(str(tiny_llava_dir))
    module = ScalesOnly(vlm)
    pair = next(iter(read_pairs(manifest)))
    modulated_ld = trace_pair(vlm, pair).ld_clean
    cb = CausalTracing(
        str(manifest),
        TraceConfig(analyses="layers,lens", min_gap=ALL_PAIRS),
        stages="fit_start,fit_end",
        limit=1,
    )
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = Trainer(
        max_steps=1,
        logger=logger,
        callbacks=[cb],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module)
    assert module.modulation.attached  # re-attached after tracing
    start = cb.results["fit_start"]
    info = json.loads((start.out_dir / "pairs" / "p0" / "lens.json").read_text())
    module.modulation.detach()
    assert info["ld_clean"] == pytest.approx(trace_pair(vlm, pair).ld_clean, abs=1e-5)  # traced unmodulated
    assert info["ld_clean"] != pytest.approx(modulated_ld, abs=1e-5)
    assert start.out_dir == tmp_path / "tb" / "version_0" / "tracing" / "fit_start"
    assert (tmp_path / "tb" / "version_0" / "tracing" / "fit_end" / "plots" / "layers.png").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logger.log_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"tracing/fit_start/layers", "tracing/fit_end/lens"} <= set(events.Tags()["images"])
    assert "tracing/fit_start/all/image_recovery_max" in events.Tags()["scalars"]


def test_callback_rejects_unknown_stage():
    with pytest.raises(ValueError, match="unknown stages"):
        CausalTracing("pairs.jsonl", stages="fit_middle")


# -- the synthetic world --------------------------------------------------------------------------------------


def test_synthetic_world_pairs_trace_with_concepts_located(llava, tmp_path):
    from vseam_pl.synth.writers import generate_benchmarks

    root = generate_benchmarks(tmp_path / "synth", n_train=2, n_val=2, n_test=6)
    pairs = select_pairs(read_pairs(root / "test" / "pairs" / "pairs.jsonl"), limit=6)
    res = run_tracing(
        llava,
        pairs,
        tmp_path / "trace",
        TraceConfig(analyses="tokens", min_gap=ALL_PAIRS),
        log=lambda m: None,
    )
    assert res.traced == len(pairs) and not res.skipped
    for p in pairs:
        info = json.loads((tmp_path / "trace" / "pairs" / p.pair_id / "tokens.json").read_text())
        concept = [i for i, r in enumerate(info["roles"]) if r == "concept"]
        assert concept, f"no concept token located in {p.question!r} (edit {p.edit})"
    assert set(res.aggregated["tokens"]) >= {"all"}
