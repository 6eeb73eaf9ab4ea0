"""Planted-defect model organisms: a copy of an embedded tiny VLM with one attention head damaged on purpose.

The damage is an amplified head: the `o_proj` weight columns of head (layer, head) are multiplied by `factor`, so the
head writes `factor` times its output into the residual stream. Because the modulation scale acts on the same
columns (`vseam_pl.interventions.modulation`), the defect has a known answer: a scale of `1 / factor` on that head
restores the original model exactly, and any method that finds and damps that head recovers the lost accuracy.
The folder records what was done in `planted_defect.json` (head, factor, source and its weights' digest, the exact
fix), so tests and docs read the ground truth from the organism itself.

    python scripts/plant_defect.py --source checkpoints/tiny-instructblip --layer 0 --head 3 --factor 8 \
        --out checkpoints/tiny-instructblip-planted
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from jsonargparse import CLI

from vseam_pl.io import apply_umask, write_json
from vseam_pl.vlm import load_vlm

DEFECT_FILE = "planted_defect.json"


def weights_digest(folder: Path) -> str:
    """sha256 of the folder's safetensors files (names and bytes), to name the exact source."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_defect(folder: str | Path) -> dict:
    """The ground truth of an organism folder (`planted_defect.json`)."""
    path = Path(folder) / DEFECT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a planted-defect organism (no {DEFECT_FILE})")
    return json.loads(path.read_text())


def plant(source: str, out: str, layer: int, head: int, factor: float = 8.0, overwrite: bool = False) -> Path:
    """Copy `source` to `out` with head (layer, head)'s `o_proj` columns multiplied by `factor`."""
    src, dst = Path(source), Path(out)
    if dst.exists():
        if not overwrite:
            raise FileExistsError(f"{dst} exists; pass --overwrite to rebuild it")
        if not (dst / DEFECT_FILE).exists():
            raise FileExistsError(
                f"{dst} exists and is not a planted-defect organism; refusing to replace it"
            )
        shutil.rmtree(dst)
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    vlm = load_vlm(str(src))
    if not (0 <= layer < vlm.num_layers and 0 <= head < vlm.num_heads):
        raise ValueError(f"head ({layer}, {head}) is outside the {vlm.num_layers}x{vlm.num_heads} grid")
    d = vlm.head_dim
    with torch.no_grad():
        vlm.o_proj(layer).weight[:, head * d : (head + 1) * d] *= factor
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "pretraining.json", DEFECT_FILE))
    vlm.model.save_pretrained(dst)
    apply_umask(
        dst
    )  # save_pretrained stages weights with mkstemp (0600); the user's umask, as the copied files
    write_json(
        dst / DEFECT_FILE,
        {
            "kind": "amplified_head",
            "layer": layer,
            "head": head,
            "factor": factor,
            "fix": {"layer": layer, "head": head, "scale": 1.0 / factor},
            "source": src.name,
            "source_weights_sha256": weights_digest(src),
            "command": (
                f"python scripts/plant_defect.py --source {source} --layer {layer} --head {head} "
                f"--factor {factor:g} --out {out}"
            ),
        },
    )
    print(f"planted: {dst} (head ({layer}, {head}) x {factor:g}; the fix is scale {1 / factor:g})")
    return dst


def main(argv: list[str] | None = None) -> None:
    CLI(plant, as_positional=False, args=argv)
