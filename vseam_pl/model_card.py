"""The model card (`README.md`) written into every export, with `huggingface_hub.ModelCard`.

It says what the folder is (base model, method, format), how to load it with peft or plain transformers, the
evaluation table of the run's `metrics.json` (paired p-values and 95% CIs), the scales heatmap, and the data,
configuration and commands that produced it, so a shared export can be judged without vseam-pl installed.
"""

from __future__ import annotations

import hashlib
import os
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


def save_heatmap(scales: torch.Tensor, path: str | os.PathLike) -> Path:
    """Layer x head heatmap of `scales - 1` (red: amplified, blue: damped), saved as PNG."""
    from .discovery.plots import heatmap
    from .plotting import save_png

    fig = heatmap(scales.detach().float() - 1.0, "learned head scales - 1 (red: amplified, blue: damped)")
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
) -> ModelCard:
    """The card of one export. `fmt` is `peft` or `merged`; `metrics` a metrics.json; `config_text` the training
    config (`config.yaml` of the run); `command` the export command line (default: this process's argv)."""
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
        f"One learned scale per decoder attention head ({layers} layers x {heads} heads = {layers * heads} "
        "parameters) multiplying each head's output before `o_proj`, learned on a frozen model with vseam-pl "
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
            f"`{report.get('answer_parser', 'vseam')}` parser.",
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
