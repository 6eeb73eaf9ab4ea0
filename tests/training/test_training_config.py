"""Recipes: every config parses with `train.py --print_config` (no model is loaded), unknown keys are errors naming
the key, strategy files compose with recipes, and the hardware each states at its top is what it asks for."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest
import yaml

import train

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").glob("*.yaml"))
STRATEGIES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs" / "strategies").glob("*.yaml"))
MODELS = {
    "configs/llava-1.5-7b.yaml": "llava-hf/llava-1.5-7b-hf",
    "configs/llava-1.5-13b.yaml": "llava-hf/llava-1.5-13b-hf",
    "configs/instructblip-vicuna-7b.yaml": "Salesforce/instructblip-vicuna-7b",
}


def run_cli(*args: str) -> tuple[int, str, str]:
    """train.main in-process: (exit code, stdout, stderr). `--print_config` exits before anything is instantiated,
    so hub ids of 7B models resolve without a download (the tests run with HF_HUB_OFFLINE=1)."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["train.py"]  # LightningCLI warns when pytest's own argv sits beside `args`
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            pytest.raises(SystemExit) as exc,
        ):
            train.main(list(args))
    finally:
        sys.argv = argv
    return int(exc.value.code or 0), out.getvalue(), err.getvalue()


def printed(*args: str) -> dict:
    code, out, err = run_cli(*args)
    assert code == 0, err[-2000:]
    return yaml.safe_load(out)


def test_every_recipe_the_docs_name_exists():
    """README, docs, config comments and code point users at recipes by path; a renamed or deleted file breaks them."""
    texts = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "configs").rglob("*.yaml")]
    texts += [*(REPO / "vseam_pl").rglob("*.py"), REPO / "train.py", REPO / "evaluate.py"]
    named = {m for path in texts for m in re.findall(r"configs/[\w./-]+\.yaml", path.read_text())}
    assert {
        "configs/default.yaml",
        "configs/strategies/ddp.yaml",
    } <= named  # the scan finds the usual references
    missing = sorted(name for name in named if not (REPO / name).is_file())
    assert not missing, f"referenced but not in configs/: {missing}"


def hardware(path: str) -> str:
    """The file's `# Hardware:` header line (what the docs promise it needs)."""
    lines = [line for line in (REPO / path).read_text().splitlines() if line.startswith("# Hardware:")]
    assert lines, f"{path}: no '# Hardware:' comment at the top"
    return lines[0]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_parses_and_prints_resolved_config(recipe):
    cfg = printed("-c", recipe, "--print_config")
    raw = yaml.safe_load((REPO / recipe).read_text())
    assert cfg["model"]["model"] == raw.get("model", {}).get("model", "checkpoints/tiny-instructblip")
    trainer = cfg["trainer"]
    if "GPU" in hardware(recipe):  # the header's promise matches what the resolved config asks for
        assert trainer["accelerator"] == "gpu" and trainer["precision"] == "bf16-mixed"
    else:
        assert "CPU" in hardware(recipe)
        assert trainer["accelerator"] in ("auto", "cpu") and trainer["precision"] == "32-true"
        assert cfg["model"]["dtype"] == "float32"
    assert (
        "lr" in cfg["model"] and "max_epochs" in cfg["trainer"]
    )  # defaults resolved, not only the file's keys
    if recipe in MODELS:
        assert cfg["model"]["model"] == MODELS[recipe]
        assert cfg["synth_root"] is None  # default.yaml's synthetic world is switched off
        assert cfg["model"]["dtype"] == "bfloat16" and cfg["trainer"]["precision"] == "bf16-mixed"
        multi = cfg["data"]["init_args"]
        assert cfg["data"]["class_path"] == "vseam_pl.data.MultiBenchmarkDataModule"
        assert [d["class_path"].rsplit(".", 1)[1] for d in multi["datamodules"]] == [
            "GQADataModule",
            "POPEDataModule",
            "COCOQADataModule",
        ]
        # the recipe's own loader settings, not default.yaml's GQADataModule values carried over
        assert multi["batch_size"] == multi["datamodules"][0]["init_args"]["batch_size"] <= 8


@pytest.mark.parametrize("recipe", RECIPES)
def test_print_config_first_validates_and_prints_the_recipe_layer(recipe):
    """`train.py --print_config -c X` validates X and prints X's own layer (with its classes' defaults filled in);
    `-c X --print_config` (above) prints everything resolved."""
    cfg = printed("--print_config", "-c", recipe)
    raw = yaml.safe_load((REPO / recipe).read_text())
    for section in ("model", "trainer"):
        for key, value in raw.get(section, {}).items():
            if key != "callbacks":
                assert cfg[section][key] == value, f"{recipe}: {section}.{key}"
    for key, value in raw["data"]["init_args"].items():
        if key != "datamodules":
            assert cfg["data"]["init_args"][key] == value, f"{recipe}: data.init_args.{key}"


def test_low_data_recipe_subsamples_training_only():
    cfg = printed("-c", "configs/low_data.yaml", "--print_config")
    assert cfg["data"]["init_args"]["fraction"] == 0.1
    assert cfg["model"]["model"] == "checkpoints/tiny-instructblip" and cfg["synth_root"] == "data/synth"
    default = printed("--print_config")
    assert (
        cfg["data"]["class_path"] == default["data"]["class_path"]
    )  # the default's benchmark, a tenth of it
    limit = cfg["data"]["init_args"]["limit"]  # the same validation and test questions
    assert (limit["val"], limit["test"]) == (default["data"]["init_args"]["limit"]["val"], 2048)


def data_limits(node) -> list:
    """Every `limit` set anywhere under a resolved `data` section (nested datamodules included)."""
    if isinstance(node, dict):
        own = [node["limit"]] if node.get("limit") is not None else []
        return own + [x for k, v in node.items() if k != "limit" for x in data_limits(v)]
    if isinstance(node, list):
        return [x for v in node for x in data_limits(v)]
    return []


@pytest.mark.parametrize(
    "recipe", [r for r in RECIPES if r not in ("configs/default.yaml", "configs/low_data.yaml")]
)
def test_the_embedded_defaults_caps_stay_its_own(recipe):
    """default.yaml is every recipe's base; its per-split caps (minutes on a CPU) must not shorten another recipe's
    run, nor may trainer batch caps (an int `limit_train_batches` also moves Lightning's end-of-epoch validation)."""
    default = printed("--print_config")
    assert data_limits(default["data"]) == [{"train": 3200, "val": 1024, "test": 2048}]
    cfg = printed("-c", recipe, "--print_config")
    assert default["data"]["init_args"]["limit"] not in data_limits(cfg["data"]), recipe
    for c in (default, cfg):
        assert [c["trainer"].get(f"limit_{s}_batches") for s in ("train", "val", "test")] == [None] * 3


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_files_compose_with_a_recipe(strategy):
    cfg = printed("-c", "configs/llava-1.5-13b.yaml", "-c", strategy, "--print_config")
    assert cfg["model"]["model"] == "llava-hf/llava-1.5-13b-hf" and cfg["trainer"]["devices"] == 2
    assert "GPU" in hardware(strategy)  # every strategy file is a multi-device one, and says so


def test_ddp_strategy_leaves_find_unused_parameters_unset():
    """Only the scales require grad and all of them are used, so DDP needs no unused-parameter search."""
    raw = (REPO / "configs/strategies/ddp.yaml").read_text()
    body = "\n".join(line for line in raw.splitlines() if not line.lstrip().startswith("#"))
    assert "find_unused_parameters" not in body
    assert yaml.safe_load(raw)["trainer"]["strategy"] == "ddp"


def test_fsdp_wraps_decoder_layers():
    cfg = printed("-c", "configs/llava-1.5-13b.yaml", "-c", "configs/strategies/fsdp.yaml", "--print_config")
    strategy = cfg["trainer"]["strategy"]
    assert strategy["class_path"] == "vseam_pl.distributed.FrozenFSDPStrategy"
    assert "transformers.models.llama.modeling_llama.LlamaDecoderLayer" in str(
        strategy["init_args"]["auto_wrap_policy"]
    )


@pytest.mark.parametrize(
    "args, key",
    [
        (["--model.not_a_key", "1"], "not_a_key"),
        (["--trainer.max_epoch", "1"], "max_epoch"),
        (["--data.init_args.bogus_option", "3"], "bogus_option"),
    ],
)
def test_unknown_key_on_the_command_line_is_an_error_naming_it(args, key):
    code, _, err = run_cli(*args, "--print_config")
    assert code != 0 and key in err


@pytest.mark.parametrize("print_first", [False, True])
def test_unknown_key_in_a_config_file_is_an_error_naming_it(tmp_path, print_first):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  model: llava-hf/llava-1.5-7b-hf\n  learning_rate: 0.1\n")
    args = ["--print_config", "-c", str(bad)] if print_first else ["-c", str(bad), "--print_config"]
    code, _, err = run_cli(*args)
    assert code != 0 and "learning_rate" in err
