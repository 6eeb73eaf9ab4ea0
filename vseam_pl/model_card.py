"""The model card (`README.md`) written into every export, with `huggingface_hub.ModelCard`.

It says what the folder is (base model, method, format), how to load it with peft or plain transformers, the
evaluation table of the run's `metrics.json` (paired p-values and 95% CIs), the scales heatmap, and the data,
configuration and commands that produced it, so a shared export can be judged without vseam-pl installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData

from .report import read_metrics_json, to_markdown

HEATMAP = "scales_heatmap.png"
_P_TESTS = {
    "image_permutation": "permutation test and bootstrap that resample images, so correlated questions about one "
    "image count once",
    "mcnemar_exact": "exact McNemar test and bootstrap over questions",
}


class BaseModelError(ValueError):
    """The export cannot name a base model that resolves outside this machine (a Hub id)."""


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_HF_CACHE = re.compile(r"(?:^|/)models--([^/]+)--([^/]+)/snapshots/[^/]+/?$")


def resolve_base_model(model: str | os.PathLike, base_model_id: str | None = None) -> str:
    """The Hub id to record as the card's `base_model` and the adapter's `base_model_name_or_path`.

    A path only resolves on the machine (and in the folder) it was written on, so `AutoPeftModel` and the Hub's
    "finetuned from" link need a Hub id. In order: `base_model_id` when given; `model` itself when it is not a
    local folder (a Hub id); the id in a Hugging Face cache path (`.../models--owner--name/snapshots/<rev>`); the
    `_name_or_path` in the folder's `config.json` when that is a Hub id. Otherwise a clear error asks for
    `--base_model_id`.
    """
    if base_model_id is not None:
        if os.path.exists(base_model_id) or not _HUB_ID.match(base_model_id):
            raise BaseModelError(
                f"--base_model_id {base_model_id!r}: expected a Hub model id such as 'llava-hf/llava-1.5-7b-hf'"
                + (", not a local path" if os.path.exists(base_model_id) else "")
            )
        return base_model_id
    model = str(model)
    if not os.path.isdir(model):
        if not _HUB_ID.match(model):
            raise BaseModelError(f"--model {model!r}: neither a local folder nor a Hub model id")
        return model
    cached = _HF_CACHE.search(Path(model).resolve().as_posix())
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    config = Path(model) / "config.json"
    try:
        named = json.loads(config.read_text()).get("_name_or_path") if config.is_file() else None
    except (OSError, ValueError) as e:
        raise BaseModelError(f"{config}: unreadable ({e})") from None
    if isinstance(named, str) and _HUB_ID.match(named) and not os.path.exists(named):
        return named
    raise BaseModelError(
        f"--model {model!r} is a local folder and names no Hub id (not a Hugging Face cache path; "
        f"{config.name} has no '_name_or_path'): pass --base_model_id OWNER/NAME, the Hub repo of these weights, "
        "so the card and adapter load outside this folder"
    )


def provenance_of(scales_file: str | os.PathLike, config_found: bool, stated: str | None = None) -> str:
    """How the scales were made, for the card: `stated` when given, else what the files say, never a guess.

    A training run writes `head_scales.safetensors` beside its `config.yaml` (`vseam train`); `vseam discover
    --init-scales` writes `init_scales.safetensors` (closed form from discovery scores, no training).
    """
    if stated:
        return stated
    if Path(scales_file).name == "init_scales.safetensors":
        return "computed from discovery scores by `vseam discover --init-scales` (no training)"
    if config_found:
        return "learned by `vseam train` with the training configuration below"
    return (
        "not recorded (no training config.yaml beside the scales file and no --scales_provenance given): "
        "they may be learned, computed or hand-set"
    )


def save_heatmap(scales: torch.Tensor, path: str | os.PathLike) -> Path:
    """Layer x head heatmap of `scales - 1` (red: amplified, blue: damped), saved as PNG."""
    from .discovery.plots import heatmap
    from .plotting import save_png

    fig = heatmap(scales.detach().float() - 1.0, "head scales - 1 (red: amplified, blue: damped)")
    try:
        return save_png(fig, path)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_snippet(fmt: str, base_model: str, repo: str) -> str:
    if fmt == "peft":
        return f"""```python
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

base = AutoModelForImageTextToText.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{repo}")   # IA3 on every decoder o_proj input = the head scales
model = model.merge_and_unload()                    # optional: fold into o_proj, zero inference overhead
processor = AutoProcessor.from_pretrained("{base_model}")
```

With vseam-pl: `HeadModulation.from_peft("{repo}", load_vlm("{base_model}"))` gives the scales back."""
    return f"""```python
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("{repo}")   # scales already folded into o_proj
processor = AutoProcessor.from_pretrained("{repo}")
```"""


def build_card(
    base_model: str,
    fmt: str,
    scales: torch.Tensor,
    scales_file: str | os.PathLike,
    metrics: str | os.PathLike | None = None,
    config_text: str | None = None,
    repo: str | None = None,
    command: list[str] | None = None,
    provenance: str | None = None,
) -> ModelCard:
    """The card of one export. `base_model` is a Hub id (`resolve_base_model`); `fmt` is `peft` or `merged`;
    `metrics` a metrics.json; `config_text` the training config (`config.yaml` of the run); `command` the export
    command line (default: this process's argv); `provenance` how the scales were made (`provenance_of`)."""
    layers, heads = scales.shape
    data = ModelCardData(
        base_model=base_model,
        library_name="peft" if fmt == "peft" else "transformers",
        pipeline_tag="image-text-to-text",
        tags=["vseam", "vseam-pl", "attention-head-modulation", "interpretability"]
        + (["ia3"] if fmt == "peft" else []),
    )
    report: dict[str, Any] | None = read_metrics_json(metrics) if metrics else None
    where = repo or "path/to/this/folder"
    cmd = shlex.join(command if command is not None else [Path(sys.executable).name, *sys.argv])
    s = scales.detach().float()
    parts = [
        f"# V-SEAM head modulation for `{base_model}`",
        "",
        f"One scale per decoder attention head ({layers} layers x {heads} heads = {layers * heads} "
        "parameters) multiplying each head's output before `o_proj` of the frozen model, with vseam-pl "
        "(V-SEAM: Visual Semantic Editing and Attention Modulating, EMNLP 2025).",
        "",
        "- **format**: "
        + (
            "peft IA3 adapter on every decoder `o_proj`, scaling its input (`feedforward_modules`), each head's "
            "`head_dim` values tied"
            if fmt == "peft"
            else "merged model: the scales folded into the `o_proj` weight columns"
        ),
        f"- **scales**: mean {s.mean():.4f}, min {s.min():.4f}, max {s.max():.4f}; "
        f"`head_scales.safetensors` (sha256 `{file_sha256(scales_file)[:16]}`) is included",
        f"- **how the scales were made**: {provenance or provenance_of(scales_file, bool(config_text))}",
        "",
        "## How to load",
        "",
        _load_snippet(fmt, base_model, where),
        "",
        "## Evaluation",
        "",
    ]
    if report is None:
        parts.append("No metrics.json was given to the export, so no evaluation is reported here.")
    else:
        tests = sorted({r.get("p_test") for r in report["rows"] if r.get("p_test")})
        parts += [
            f"From `metrics.json` (model `{report['model']}`). Values in percent; delta in points; `images` counts "
            "the distinct images behind the questions. `p` is the paired test of the modulated model against the "
            "frozen baseline on the same questions and `95% CI` the paired bootstrap interval of the delta ("
            + ("; ".join(f"`{t}`: {_P_TESTS.get(t, t)}" for t in tests) or "no paired rows")
            + ").",
            f"Answers: `{report.get('answer_scoring', 'closed_set_logprob')}` scoring, "
            f"`{report.get('answer_parser', 'vseam')}` parser, "
            f"`{report.get('answer_generation', 'vseam')}` generation settings.",
            "",
            to_markdown(report["rows"]),
        ]
    parts += ["", "## Scales", "", f"![layer x head scales]({HEATMAP})", "", "## How it was made", ""]
    if config_text:
        parts += [
            "Training configuration (`config.yaml` of the run; its `data` section names the data):",
            "",
            "```yaml",
            config_text.rstrip(),
            "```",
            "",
        ]
    else:
        parts += ["No training configuration was found beside the scales file.", ""]
    parts += ["Export command:", "", "```bash", cmd, "```"]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(parts) + "\n")
