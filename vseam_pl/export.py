"""Export a merged model: learned head scales folded into each decoder layer's `o_proj` weight columns, saved with
`save_pretrained` (+ the processor) as an ordinary Transformers folder.

The result loads with plain `transformers.AutoModelForImageTextToText.from_pretrained(out)` — no vseam-pl, no hooks,
no remote code — and answers exactly like the modulated model at zero inference overhead (folding is exact up to
the weight dtype's rounding). The scales file is copied beside it for provenance.

    python -m vseam_pl.export --model llava-hf/llava-1.5-7b-hf --scales runs/.../head_scales.safetensors \\
        --out exports/llava-1.5-7b-vseam [--dtype bfloat16]
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .io import write_json
from .modulation import HeadModulation
from .vlm import load_vlm

EXPORT_INFO = "vseam_export.json"


def export_merged(
    model: str,
    scales: str | os.PathLike,
    out: str | os.PathLike,
    dtype: str = "float32",
    check_model: bool = True,
    trust_remote_code: bool = False,
) -> Path:
    """Fold `scales` into `model`'s `o_proj` weights and `save_pretrained` model + processor to `out`.

    Args:
        model: hub id or local folder the scales were learned on.
        scales: a `head_scales.safetensors` file (checked against the model's head grid and name).
        out: the folder to write (created; written into a temporary sibling and renamed, so a killed export
            leaves no half-written model behind).
        dtype: dtype the model is loaded, folded and saved in (`float32` for exactness, `bfloat16` to halve size).
        check_model: refuse scales learned for another model name (same grid) unless False.
    """
    out = Path(out)
    vlm = load_vlm(model, dtype=dtype, trust_remote_code=trust_remote_code)
    modulation = HeadModulation.load(scales, vlm, check_model=check_model)
    modulation.fold(vlm)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vlm.model.save_pretrained(tmp)
    vlm.processor.save_pretrained(tmp)
    shutil.copyfile(scales, tmp / "head_scales.safetensors")
    write_json(tmp / EXPORT_INFO, {"base_model": model, "scales": str(scales), "dtype": dtype,
                                   "folded_into": "decoder layers' self_attn.o_proj weight columns (per head)",
                                   "grid": [modulation.num_layers, modulation.num_heads]})  # fmt: skip
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import CLI

    path = CLI(export_merged, args=argv, as_positional=False)
    print(f"merged model: {path}")


if __name__ == "__main__":
    main()
