"""One declaration per concept (issue 26.1): the `vseam` flags, the callbacks' init args and the Python API's config
objects are the same fields with the same defaults, and the recipes in configs/ parse against those signatures."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
from pathlib import Path
from typing import Annotated

import pytest
import yaml

from callbacks.head_discovery import HeadDiscovery
from vseam_pl.argparsing import Flag, Flat, command_kwargs, command_options, command_parser
from vseam_pl.discovery.runner import DiscoveryConfig
from vseam_pl.discovery.set_ablation import FROM_DISCOVERY, SetAblationConfig, set_ablation_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))


def flag_defaults(fn) -> dict[str, object]:
    """Every flag of command `fn` and its default, as its parser has them."""
    from vseam_pl.argparsing import command_parser

    return dict(command_parser(fn, "x").get_defaults().items())


def defaults(cls) -> dict[str, object]:
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


def test_discover_flags_are_the_discovery_config():
    from vseam_pl.discover import discover

    flags = flag_defaults(discover)
    assert {k: flags[k] for k in defaults(DiscoveryConfig)} == defaults(DiscoveryConfig)
    # its help is the field's docstring, not a second copy
    options = {o.name: o for _, _, opts in command_options(discover) for o in opts}
    assert options["top_k"].help and options["pair_batch"].help == "pairs per chunk (the checkpoint unit)"


def test_discover_set_ablation_flags_are_the_set_ablation_config():
    from vseam_pl.discover import discover

    flags = flag_defaults(discover)
    renamed = {"mode": "set_mode", "group": "set_group", "k": "set_k"}
    own = {k: v for k, v in defaults(SetAblationConfig).items() if k not in (*FROM_DISCOVERY, "n_resamples")}
    assert {k: flags[renamed.get(k, k)] for k in own} == own
    assert flags["set_k"] is None  # K follows --top_k (`set_ablation_config`)


def test_the_callback_takes_the_discovery_config_and_the_cli_selection():
    from vseam_pl.discover import discover

    params = inspect.signature(HeadDiscovery).parameters
    assert params["discovery"].annotation in ("DiscoveryConfig | None", DiscoveryConfig | None)
    assert HeadDiscovery("p").config == DiscoveryConfig()
    flags = flag_defaults(discover)
    for shared in ("levels", "categories", "limit", "init_scales"):
        assert params[shared].default == flags[shared], shared
    # both build the set ablation the same way: K and pair_batch from the discovery settings unless given
    cfg = DiscoveryConfig(top_k=3, pair_batch=2, protocol="release", instruction="")
    assert HeadDiscovery("p", cfg, set_ablation={}).set_config == set_ablation_config(cfg)
    assert set_ablation_config(cfg) == SetAblationConfig(
        k=3, pair_batch=2, protocol="release", instruction=""
    )
    no_scoring_field = set(params) & {f.name for f in dataclasses.fields(DiscoveryConfig)}
    assert not no_scoring_field, f"declared again beside DiscoveryConfig: {no_scoring_field}"


def test_the_discover_cli_builds_the_config_its_flags_say(tmp_path):
    from vseam_pl.argparsing import command_kwargs
    from vseam_pl.discover import discover, parser

    base = ["--model", "m", "--pairs", "p", "--out", "o"]
    kwargs = command_kwargs(discover, parser().parse_args(base))
    assert kwargs["config"] == DiscoveryConfig()
    kwargs = command_kwargs(
        discover, parser().parse_args([*base, "--top-k", "3", "--atp_nodes", "qkv", "--filter"])
    )
    assert kwargs["config"] == DiscoveryConfig(top_k=3, atp_nodes="qkv", filter=True)


def callback_specs(recipe: Path) -> list[dict]:
    trainer = yaml.safe_load(recipe.read_text()).get("trainer") or {}
    return [
        c for c in trainer.get("callbacks") or [] if str(c.get("class_path", "")).startswith("callbacks.")
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_callbacks_parse_against_their_signatures(recipe):
    """Each vseam callback a recipe configures is parsed and built by jsonargparse from its signature (the path
    LightningCLI takes); a key that is not an init arg (or a DiscoveryConfig field) fails here."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import Callback

    specs = callback_specs(recipe)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callbacks", type=list[Callback])
    built = parser.instantiate(parser.parse_object({"callbacks": copy.deepcopy(specs)})).callbacks
    assert [type(c).__name__ for c in built] == [s["class_path"].split(".")[-1] for s in specs]
    for spec, callback in zip(specs, built, strict=True):
        if isinstance(callback, HeadDiscovery):
            given = spec["init_args"].get("discovery", {})
            assert callback.config == DiscoveryConfig(**given)


def test_the_default_recipe_discovers_with_its_settings():
    (spec,) = [
        s for s in callback_specs(REPO / "configs" / "default.yaml") if s["class_path"].endswith("Discovery")
    ]
    assert spec["init_args"]["discovery"] == {
        "method": "ablation",
        "ablation_mode": "mean_others",
        "top_k": 8,
    }


def test_a_misplaced_discovery_key_in_a_recipe_fails_naming_it():
    from jsonargparse import ArgumentParser
    from lightning.pytorch import Callback

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callbacks", type=list[Callback])
    spec = {"class_path": "callbacks.HeadDiscovery", "init_args": {"pairs": "p", "top_k": 8}}
    with pytest.raises(Exception, match="top_k"):
        parser.parse_object({"callbacks": [spec]})


def test_trace_flags_and_callback_are_the_trace_config():
    from callbacks.tracing import CausalTracing
    from vseam_pl.trace import trace
    from vseam_pl.tracing.runner import TraceConfig, run_tracing

    flags = flag_defaults(trace)
    assert {k: flags[k] for k in defaults(TraceConfig)} == defaults(TraceConfig)
    params = inspect.signature(CausalTracing).parameters
    assert CausalTracing("p").config == TraceConfig()
    assert not set(params) & set(defaults(TraceConfig)), "a tracing setting declared again beside TraceConfig"
    run = inspect.signature(run_tracing).parameters
    assert not set(run) & set(defaults(TraceConfig)), "run_tracing takes the TraceConfig"
    assert params["levels"].default is flags["levels"] is None
    assert params["limit"].default == 32 and flags["limit"] is None  # the callback traces a sample by design


def test_export_flags_are_the_export_signature():
    from vseam_pl.export import export, parser

    flags = dict(parser().get_defaults().items())
    flags.pop("config")  # -c/--config: a YAML file of these flags
    params = inspect.signature(export).parameters
    required = {k for k, p in params.items() if p.default is inspect.Parameter.empty}
    assert required == {"model", "scales", "out"} and all(flags.pop(k) is None for k in required)
    assert flags == {k: p.default for k, p in params.items() if k not in required}


def test_evaluate_declares_no_setting_of_the_classes_it_configures():
    """`evaluate()` takes the module's, the DataModules' and the Trainer's arguments as mappings (the CLI's tree),
    so their defaults are theirs; the few evaluation changes are named once and differ from the classes'."""
    from lightning.pytorch import Trainer

    from vseam_pl.data import QADataModule
    from vseam_pl.evaluate import DATA_DEFAULTS, TRAINER_DEFAULTS, evaluate
    from vseam_pl.lit_module import HeadModulationModule

    own = set(inspect.signature(evaluate).parameters)
    classes = {
        "module": HeadModulationModule,
        "data": QADataModule,
        "trainer": Trainer,
    }
    for cls in classes.values():
        shared = own & set(inspect.signature(cls).parameters) - {"seed"}  # seed: the CIs' and the data's
        assert not shared, f"evaluate() declares {shared} of {cls.__name__} again"
    for changes, cls in ((DATA_DEFAULTS, QADataModule), (TRAINER_DEFAULTS, Trainer)):
        params = inspect.signature(cls).parameters
        for key, value in changes.items():
            assert key in params and params[key].default != value, (cls.__name__, key)


def test_studies_flags_are_their_configs_and_share_the_modules_lr():
    from vseam_pl.argparsing import config_parser, default_of
    from vseam_pl.lit_module import HeadModulationModule
    from vseam_pl.studies.compare import CompareConfig
    from vseam_pl.studies.sweep import SweepConfig

    for cls in (CompareConfig, SweepConfig):
        flags = dict(config_parser(cls).get_defaults().items())
        flags.pop("config")
        assert flags == defaults(cls), cls.__name__
        assert cls().lr == default_of(HeadModulationModule, "lr")
    assert CompareConfig().top_k == DiscoveryConfig().top_k


def test_sweep_runs_train_from_a_config_mapping_with_the_train_args_merged_in(tmp_path):
    from vseam_pl.studies.sweep import SweepConfig, train_config

    cfg = SweepConfig(
        lr=0.1, train_args=["--trainer.precision", "bf16-mixed", "--data.limit=5", "--model.scale-l2", "0.5"]
    )
    run = train_config(cfg, "m", 0.5, 3, tmp_path)
    assert run["model"] == {"model": "m", "lr": 0.1, "scale_l2": 0.5}
    assert run["data"]["class_path"] == "vseam_pl.data.GQADataModule"
    assert run["data"]["init_args"]["limit"] == 5 and run["data"]["init_args"]["fraction"] == 0.5
    assert run["trainer"]["precision"] == "bf16-mixed" and run["trainer"]["max_epochs"] == 1
    with pytest.raises(ValueError, match="needs a value"):
        train_config(SweepConfig(train_args=["--trainer.precision"]), "m", 0.5, 3, tmp_path)
    with pytest.raises(ValueError, match="expected train.py flags"):
        train_config(SweepConfig(train_args=["precision"]), "m", 0.5, 3, tmp_path)


def test_headroom_and_synth_flags_are_their_declarations():
    from vseam_pl.argparsing import config_parser, default_of
    from vseam_pl.studies.headroom import HeadroomConfig
    from vseam_pl.synth.__main__ import synth
    from vseam_pl.synth.writers import generate_benchmarks

    flags = dict(config_parser(HeadroomConfig).get_defaults().items())
    flags.pop("config")
    assert flags == defaults(HeadroomConfig)
    synth_flags = flag_defaults(synth)
    renamed = {"n_images": "n_train"}
    for name in ("seed", "n_images", "n_val", "n_test", "image_size", "gqa_per_image", "overwrite"):
        assert synth_flags[name] == default_of(generate_benchmarks, renamed.get(name, name)), name


def test_edit_flags_are_the_editing_settings():
    from vseam_pl.edit import edit
    from vseam_pl.editing.inpaint import Inpainter
    from vseam_pl.editing.settings import EditSettings, Sampling

    flags = flag_defaults(edit)
    own = {k: v for k, v in defaults(EditSettings).items() if k != "model_id"}  # model_id: --pipeline
    assert {k: flags[k] for k in own} == own
    assert {k: flags[k] for k in defaults(Sampling)} == defaults(Sampling)
    params = inspect.signature(Inpainter).parameters
    assert {k: params[k].default for k in defaults(Sampling)} == defaults(Sampling)


# -- the parser built from a signature ---------------------------------------------------------------------------
@dataclasses.dataclass
class _Settings:
    k: int = 3
    mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b")})
    hidden: float = 0.5


def _cmd(
    path: Annotated[str, Flag(positional=True)],
    settings: Annotated[_Settings | None, Flat(rename={"mode": "set_mode"}, skip=("hidden",))] = None,
    levels: list[str] | None = None,
    clip: tuple[float, float] | None = None,
    fast: bool = False,
    rest: Annotated[list[str], Flag(nargs=argparse.REMAINDER)] = (),
) -> None:
    """A command.

    Args:
        fast: go fast
    """


def test_command_parser_spells_typed_parameters_as_the_flags_always_were():
    """Booleans are switches with a negation, lists take several values, a Flat dataclass's fields are flags of
    their own (renamed or skipped as asked), REMAINDER keeps every later argument, a positional stays positional."""
    parser = command_parser(_cmd, "x")
    ns = parser.parse_args(["p", "--set-mode", "b", "--levels", "u", "v", "--clip", "1", "2", "--fast"])
    kwargs = command_kwargs(_cmd, ns)
    assert kwargs["settings"] == _Settings(k=3, mode="b") and kwargs["path"] == "p"
    assert (kwargs["levels"], kwargs["clip"], kwargs["fast"]) == (["u", "v"], [1.0, 2.0], True)
    assert command_kwargs(_cmd, parser.parse_args(["p", "--no-fast"]))["fast"] is False
    assert command_kwargs(_cmd, parser.parse_args(["p", "--rest", "--a.b", "1"]))["rest"] == ["--a.b", "1"]
    for bad in (["p", "--set_mode", "c"], ["p", "--hidden", "1"], ["p", "--k", "x"], []):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert "go fast" in parser.format_help()


def test_the_default_model_is_the_same_in_the_module_and_the_default_recipe():
    """`python train.py` / `python evaluate.py` (configs/default.yaml) and `HeadModulationModule()` from Python start
    from the same embedded model."""
    import inspect

    from vseam_pl.lit_module import HeadModulationModule

    recipe = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    default = inspect.signature(HeadModulationModule).parameters["model"].default
    assert recipe["model"]["model"] == default == "checkpoints/tiny-instructblip"
