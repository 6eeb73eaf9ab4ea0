"""`vseam evaluate` reads train's configuration tree: one recipe (or a run's `config.yaml`) configures both, and a
mistyped key fails naming it (tiny model, tiny synthetic world)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from vseam_pl.data import COCOQADataModule, GQADataModule, MultiBenchmarkDataModule, POPEDataModule
from vseam_pl.evaluate import build_cli as evaluate_cli
from vseam_pl.evaluate import for_benchmarks
from vseam_pl.evaluate import main as evaluate_main
from vseam_pl.report import read_metrics_json
from vseam_pl.train import build_cli as train_cli


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=12, n_val=4, n_test=8
    )


def recipe(tmp_path: Path, model: Path, root: Path) -> Path:
    """A training recipe written out by hand: every value below is checked against what both commands build."""
    config = {
        "seed_everything": 7,
        "synth_root": None,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "strategy": "ddp",
            "precision": "bf16-mixed",
            "max_epochs": 2,
            "default_root_dir": str(tmp_path / "runs"),
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint"}],
        },
        "model": {
            "model": str(model),
            "dtype": "bfloat16",
            "attn_implementation": "sdpa",
            "instruction": "Reply with one word.",
            "max_new_tokens": 4,
            "answer_scoring": "generate",
            "answer_parser": "llava",
            "statistics": "per_question",
            "lr": 0.1,
        },
        "data": {
            "class_path": "vseam_pl.data.GQADataModule",
            "init_args": {
                "root": str(root),
                "batch_size": 3,
                "num_workers": 0,
                "levels": ["relation"],
                "limit": 5,
                "splitting": "hash",
                "split_salt": "s",
            },
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_training_recipe_configures_evaluate_identically(tiny_llava_dir, tiny_world, tmp_path):
    path = recipe(tmp_path, tiny_llava_dir, tiny_world)
    # one spelling, the hyphenated one an alias: the same override written both ways
    train = train_cli(["-c", str(path), "--model.max_new_tokens", "3"])
    evaluate = evaluate_cli(["-c", str(path), "--model.max-new-tokens", "3"])
    for cli in (train, evaluate):
        hp = cli.model.hparams
        assert (hp.model, hp.dtype, hp.attn_implementation, hp.instruction) == (
            str(tiny_llava_dir),
            "bfloat16",
            "sdpa",
            "Reply with one word.",
        )
        assert (hp.max_new_tokens, hp.answer_scoring, hp.answer_parser, hp.statistics) == (
            3,
            "generate",
            "llava",
            "per_question",
        )
        assert cli.model.vlm.model.dtype == torch.bfloat16
        data = cli.datamodule
        assert type(data) is GQADataModule and data.root == tiny_world
        assert (data.batch_size, data.num_workers, data.levels, data.limit) == (3, 0, ["relation"], 5)
        assert (data.splitting, data.split_salt) == ("hash", "s")
        assert cli.trainer.precision == "bf16-mixed" and isinstance(cli.trainer.strategy, DDPStrategy)
        assert cli.trainer.num_devices == 1 and cli.trainer.strategy.root_device.type == "cpu"
        assert cli.config["seed_everything"] == 7
    # evaluation is a test run: the recipe's training callbacks, logger and checkpointing are left out
    assert any(isinstance(c, ModelCheckpoint) for c in train.trainer.callbacks) and train.trainer.logger
    assert not any(isinstance(c, ModelCheckpoint) for c in evaluate.trainer.callbacks)
    assert evaluate.trainer.logger is None


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--model.modle", "x"], "modle"),
        (["--data.init_args.batch_sise", "3"], "batch_sise"),
        (["--model.max_new", "3"], "max_new"),  # a prefix of a key is not that key
        (["--benchmark", "pope"], "benchmark"),
    ],
)
def test_a_mistyped_key_fails_naming_it(args, name, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate_cli(args)
    assert exit_.value.code != 0
    assert name in capsys.readouterr().err


def test_a_mistyped_key_in_a_config_file_fails_naming_it(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  model: checkpoints/tiny-llava\n  atn_implementation: sdpa\n")
    with pytest.raises(SystemExit):
        evaluate_cli(["-c", str(path)])
    assert "atn_implementation" in capsys.readouterr().err


def test_benchmarks_reuse_the_configured_data_settings(tiny_world):
    gqa = {
        "root": str(tiny_world),
        "batch_size": 3,
        "num_workers": 0,
        "limit": 5,
        "splitting": "hash",
        "levels": ["relation"],
    }
    data = GQADataModule(**gqa)
    config = {"class_path": "vseam_pl.data.GQADataModule", "init_args": gqa}
    assert for_benchmarks(data, config, None) is data and for_benchmarks(data, config, "gqa") is data
    multi = for_benchmarks(data, config, "gqa, POPE,cocoqa")
    assert isinstance(multi, MultiBenchmarkDataModule) and multi.names == ["gqa", "pope", "cocoqa"]
    g, p, c = multi.datamodules
    assert (type(g), type(p), type(c)) == (GQADataModule, POPEDataModule, COCOQADataModule)
    for dm in multi.datamodules:
        assert (dm.root, dm.batch_size, dm.limit, dm.splitting) == (tiny_world, 3, 5, "hash")
    assert g.levels == ["relation"] and p.splits is None and c.types is None
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    assert c.image_pattern == manifest["conventions"]["cocoqa_image_pattern"]  # the synthetic world's names

    assert for_benchmarks(multi, None, "cocoqa") is c
    pair = for_benchmarks(multi, None, "pope,gqa")
    assert pair.names == ["pope", "gqa"] and pair.datamodules == [p, g]
    with pytest.raises(ValueError, match="not in the configured data"):
        for_benchmarks(for_benchmarks(multi, None, "pope,gqa"), None, "cocoqa")
    with pytest.raises(ValueError, match="one benchmark's dataset"):
        hf = {"hf_dataset": "lmms-lab/GQA"}
        for_benchmarks(GQADataModule(**hf), {"init_args": hf}, "gqa,pope")


def test_a_run_is_evaluated_from_its_config_with_scales_or_checkpoint(
    tiny_llava_dir, tiny_world, tmp_path, one_thread
):
    runs = tmp_path / "runs"
    train_args = [
        *("--model.model", str(tiny_llava_dir), "--model.lr", "0.05"),
        *("--data.root", str(tiny_world), "--data.batch_size", "4", "--data.num_workers", "0"),
        *("--data.limit", "4", "--synth_root", "null", "--trainer.max_steps", "1"),
        *("--trainer.default_root_dir", str(runs), "--trainer.enable_progress_bar", "false"),
        *("--trainer.callbacks", "[]", "--trainer.callbacks+", "lightning.pytorch.callbacks.ModelCheckpoint"),
        *("--trainer.callbacks.save_last", "true"),
    ]
    from vseam_pl.train import main as train_main

    train_main(train_args)
    (config,) = runs.rglob("config.yaml")
    (scales,) = runs.rglob("head_scales.safetensors")
    (ckpt,) = runs.rglob("last.ckpt")
    common = ["-c", str(config), "--benchmarks", "gqa,pope", "--trainer.enable_progress_bar", "false"]
    by_scales = evaluate_main([*common, "--scales", str(scales), "--output", str(tmp_path / "s.json")])
    by_ckpt = evaluate_main([*common, "--ckpt_path", str(ckpt), "--output", str(tmp_path / "c.json")])
    baseline = evaluate_main([*common, "--output", str(tmp_path / "b.json")])
    assert {r["benchmark"] for r in by_scales} == {"gqa", "pope"}
    assert by_scales == by_ckpt and all(r["modulated"] is not None for r in by_scales)
    assert all(r["modulated"] is None for r in baseline)
    assert [r["baseline"] for r in baseline] == [r["baseline"] for r in by_scales]
    n_test = {r["split"]: r["n"] for r in by_scales if r["benchmark"] == "gqa" and r["metric"] == "accuracy"}
    assert n_test["test"] == 4  # the run's data.limit
    assert read_metrics_json(tmp_path / "c.json")["scales"] == str(ckpt)
    with pytest.raises(SystemExit):
        evaluate_main([*common, "--scales", str(scales), "--ckpt_path", str(ckpt)])


def test_the_tree_keys_give_what_the_flat_python_arguments_give(
    tiny_llava_dir, tiny_world, tmp_path, one_thread
):
    """The documented translation of the old flat flags (docs/guides/evaluation.md), checked on the same questions:
    the rows match to the last digit."""
    import evaluate

    flat = evaluate.evaluate(
        module={"model": str(tiny_llava_dir), "instruction": "Reply with one word."},
        data={"root": str(tiny_world), "limit": 4, "num_workers": 0},
        benchmarks="gqa,pope,cocoqa",
        output=str(tmp_path / "flat.json"),
    )
    tree = evaluate_main(
        [
            *("--model.model", str(tiny_llava_dir), "--model.instruction", "Reply with one word."),
            *("--benchmarks", "gqa,pope,cocoqa", "--data.root", str(tiny_world), "--synth_root", "null"),
            *("--data.limit", "4", "--data.num_workers", "0", "--output", str(tmp_path / "tree.json")),
            *("--trainer.enable_progress_bar", "false"),
        ]
    )
    assert {r["benchmark"] for r in tree} == {"gqa", "pope", "cocoqa"} and tree == flat


def test_ckpt_path_last_without_a_checkpoint_is_an_error(tiny_llava_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="--ckpt_path last: no last"):
        evaluate_cli(
            [
                *("--model.model", str(tiny_llava_dir), "--synth_root", "null", "--ckpt_path", "last"),
                *("--trainer.default_root_dir", str(tmp_path)),
            ]
        )
