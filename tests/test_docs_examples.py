"""The README's and the docs' examples work as written (issue 30.3): every fenced Python block is run, and every
`vseam ...` / `python train.py|evaluate.py ...` / `python -m vseam_pl.<tool> ...` line of a bash block is parsed
by that command's own parser, so an example that no longer runs, or a flag that no longer exists, fails here.

The examples run from a scratch folder laid out as after the README's first steps: `checkpoints/` and `configs/` of
this repository, a small synthetic world in `data/synth`, the outputs of `python train.py` (the scales of the model
`configs/default.yaml` trains) and of a `vseam evaluate` in `runs/eval`. A block that cannot run offline on CPU is
marked in its page, on the line above its fence, with `<!-- example: not run (the reason) -->`.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- example: not run \((.+)\) -->")
#: the commands whose lines are parsed, and the `vseam` subcommand each is
ENTRY_POINTS = {"python train.py": "train", "python evaluate.py": "evaluate"}
MODULES = {
    "vseam_pl.synth": "synth",
    "vseam_pl.discover": "discover",
    "vseam_pl.trace": "trace",
    "vseam_pl.edit": "edit",
    "vseam_pl.export": "export",
    "vseam_pl.studies.compare": "compare",
    "vseam_pl.studies.sweep": "sweep",
    "vseam_pl.studies.headroom": "headroom",
}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(lang: str) -> Iterator[Block]:
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) != lang:
                continue
            line = text.count("\n", 0, m.start()) + 1
            before = [x for x in text[: m.start()].splitlines() if x.strip()]
            marker = NOT_RUN.search(before[-1]) if before else None
            yield Block(page, line, lang, m.group(2), marker.group(1) if marker else None)


PYTHON = [pytest.param(b, id=b.where) for b in blocks("python")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch checkout after `python train.py` and `vseam evaluate`: what the examples assume exists."""
    from vseam_pl.interventions.modulation import HeadModulation
    from vseam_pl.synth import generate_benchmarks
    from vseam_pl.vlm import load_vlm

    root = tmp_path_factory.mktemp("checkout")
    for name in ("checkpoints", "configs", "callbacks"):
        (root / name).symlink_to(REPO / name)
    generate_benchmarks(root / "data" / "synth", seed=0, n_train=8, n_val=4, n_test=24)
    run = root / "runs" / "lightning_logs" / "version_0"
    run.mkdir(parents=True)
    default = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    shutil.copy(REPO / "configs" / "default.yaml", run / "config.yaml")
    HeadModulation.for_vlm(load_vlm(str(REPO / default["model"]["model"]))).save(
        run / "head_scales.safetensors"
    )
    (root / "runs" / "eval").mkdir()
    from vseam_pl.evaluate import evaluate

    evaluate(
        module={"model": str(REPO / default["model"]["model"])},
        data={"root": str(root / "data" / "synth"), "limit": 4, "num_workers": 0},
        benchmarks="pope",
        output=str(root / "runs" / "eval" / "metrics.json"),
    )
    return root


@pytest.mark.parametrize("block", PYTHON)
def test_python_examples_run(block: Block, workdir: Path, monkeypatch, one_thread, capsys):
    if block.not_run:
        pytest.skip(f"{block.where}: {block.not_run}")
    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    code = compile(block.code, block.where, "exec")
    exec(code, {"__name__": "__docs_example__"})  # noqa: S102 - the documentation's own example


def test_every_python_example_is_run_or_says_why():
    assert len(PYTHON) >= 5
    for param in PYTHON:
        block = param.values[0]
        assert block.not_run is None or len(block.not_run) > 10, f"{block.where}: say why it is not run"


# -- shell commands -------------------------------------------------------------------------------------------
class Parsed(Exception):
    """Raised by the patched parsers once the command line has been parsed: nothing is run."""


def commands(code: str) -> Iterator[str]:
    """The command lines of a bash block: continuations joined, comments dropped, `&&` / `;` chains split."""
    text = re.sub(r"\\\n\s*", " ", code)
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        for part in re.split(r"\s*(?:&&|;)\s*", line):
            if part:
                yield part


@dataclass(frozen=True)
class Command:
    argv: list[str]  # ["train", ...flags]
    redirect: str | None  # the file its stdout goes to
    elided: bool  # `vseam trace ... --resume`: the flags of the page's previous `vseam trace` come first


def vseam_command(command: str) -> Command | None:
    """The vseam tool a command line runs, else None. `<a value>` is a value to fill in, `[--flag value]` an
    optional flag (checked too), a lone `...` the flags of the command shown before it."""
    command = re.sub(r"<[^<>]+>", "PLACEHOLDER", command)
    command = re.sub(r"\[(--[^\[\]]+)\]", r"\1", command)
    command, _, redirect = command.partition(" > ")
    command = command.partition(" | ")[0]
    words = shlex.split(command)
    elided = "..." in words
    words = [w for w in words if w != "..."]
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # `HF_HUB_OFFLINE=1 vseam ...`
        words = words[1:]
    if words[:1] == ["vseam"]:
        argv = words[1:]
    elif words[:2] in (["python", "train.py"], ["python", "evaluate.py"]):
        argv = [ENTRY_POINTS[" ".join(words[:2])], *words[2:]]
    elif words[:2] == ["python", "-m"] and len(words) > 2 and words[2] in MODULES:
        argv = [MODULES[words[2]], *words[3:]]
    else:
        return None
    if not argv or argv[0] in ("--help", "-h", "help"):
        return None
    return Command(argv, redirect.strip() or None, elided)


def page_commands() -> dict[Block, list[Command]]:
    """Each bash block's vseam commands, an elided one completed from the page's previous command of its tool."""
    found: dict[Block, list[Command]] = {}
    last: dict[tuple[Path, str], list[str]] = {}
    for block in blocks("bash"):
        for line in commands(block.code):
            cmd = vseam_command(line)
            if cmd is None:
                continue
            key = (block.page, cmd.argv[0])
            if cmd.elided and key in last:
                cmd = Command([*last[key], *cmd.argv[1:]], cmd.redirect, False)
            elif not cmd.elided:
                last[key] = cmd.argv
            found.setdefault(block, []).append(cmd)
    return found


PAGE_COMMANDS = page_commands()
SHELL = [pytest.param(b, id=b.where) for b in PAGE_COMMANDS]


@pytest.fixture()
def parse_only(monkeypatch):
    """Every vseam parser stops right after parsing (flags checked, nothing loaded or run)."""
    from vseam_pl.argparsing import ArgumentParser
    from vseam_pl.cli import VSeamCLI

    parse_args, parse_arguments = ArgumentParser.parse_args, VSeamCLI.parse_arguments

    def tool(self, *args, **kwargs):
        parse_args(self, *args, **kwargs)
        raise Parsed

    def lightning(self, *args, **kwargs):
        parse_arguments(self, *args, **kwargs)
        raise Parsed

    monkeypatch.setattr(ArgumentParser, "parse_args", tool)
    monkeypatch.setattr(VSeamCLI, "parse_arguments", lightning)


def parse(argv: list[str], where: str, capsys) -> str:
    """Parse `vseam <argv>`; its stdout (`--print_config` prints and exits 0, as `--help` does)."""
    from vseam_pl import commands as vseam

    assert argv[0] in vseam.COMMANDS, f"{where}: `vseam {argv[0]}` is not a command"
    capsys.readouterr()
    try:
        vseam.main(argv)
    except Parsed:
        return capsys.readouterr().out
    except SystemExit as e:
        out, err = capsys.readouterr()
        if e.code in (0, None):
            return out
        pytest.fail(f"{where}: `vseam {shlex.join(argv)}` does not parse:\n{err[-600:]}")
    pytest.fail(f"{where}: `vseam {shlex.join(argv)}` ran instead of stopping after parsing")


@pytest.mark.parametrize("block", SHELL)
def test_documented_commands_parse(block: Block, workdir, parse_only, monkeypatch, tmp_path, capsys):
    """Each vseam command line of the block, in order, from a copy of the scratch checkout (a command's
    redirected output, `--print_config > d.yaml`, is written for the next one to read)."""
    monkeypatch.setattr("sys.argv", ["vseam"])
    monkeypatch.chdir(workdir)
    scratch = tmp_path / "cwd"
    scratch.mkdir()
    for entry in workdir.iterdir():
        (scratch / entry.name).symlink_to(entry)
    monkeypatch.chdir(scratch)
    for cmd in PAGE_COMMANDS[block]:
        out = parse(cmd.argv, block.where, capsys)
        if cmd.redirect:
            Path(cmd.redirect).write_text(out)


def test_the_shell_check_sees_the_readme_commands():
    readme = {c.argv[0] for b, cmds in PAGE_COMMANDS.items() if b.page.name == "README.md" for c in cmds}
    assert {
        "synth",
        "discover",
        "train",
        "evaluate",
        "trace",
        "export",
        "compare",
        "sweep",
        "headroom",
    } <= readme


def test_a_wrong_flag_in_a_documented_command_is_caught(workdir, parse_only, monkeypatch, capsys):
    """The check can fail: an unknown flag stops the parser with an error."""
    monkeypatch.setattr("sys.argv", ["vseam"])
    monkeypatch.chdir(workdir)
    for argv in (["synth", "--outt", "x"], ["train", "--trainer.max_epoch", "1"]):
        with pytest.raises(pytest.fail.Exception, match="does not parse"):
            parse(argv, "test", capsys)


def test_scales_of_another_model_fail_the_readme_example(workdir, monkeypatch):
    """What issue 30.3 saw: the README example loading tiny-llava with the default run's scales fails."""
    from vseam_pl.interventions.modulation import HeadModulation, ScalesMismatchError
    from vseam_pl.vlm import load_vlm

    default = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())["model"]["model"]
    other = "checkpoints/tiny-llava" if "instructblip" in default else "checkpoints/tiny-instructblip"
    monkeypatch.chdir(workdir)
    with pytest.raises(ScalesMismatchError):
        HeadModulation.load("runs/lightning_logs/version_0/head_scales.safetensors", load_vlm(other))
    assert torch.is_tensor(
        HeadModulation.load("runs/lightning_logs/version_0/head_scales.safetensors").scales
    )


def test_readme_and_getting_started_commands_are_limited():
    """Issue 30.6: the first commands a reader runs finish in about a minute: tracing, discovery and evaluation
    there name a limit (all 1,985 pairs, or 3 x 2,048 questions, take far longer)."""
    limits = {"trace": "--limit", "discover": "--limit", "evaluate": "--data.limit"}
    seen = 0
    for block, cmds in PAGE_COMMANDS.items():
        if block.page.name not in ("README.md", "getting-started.md"):
            continue
        for cmd in cmds:
            flag = limits.get(cmd.argv[0])
            if (
                flag
                and "--print_config" not in cmd.argv
                and "-c" not in cmd.argv
                and "--model.model" not in cmd.argv
            ):
                assert flag in cmd.argv, f"{block.where}: `vseam {' '.join(cmd.argv)}` has no {flag}"
                seen += 1
    assert seen >= 4
