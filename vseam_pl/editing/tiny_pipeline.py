"""A tiny random-weight Stable Diffusion inpainting pipeline, built locally: for tests and offline demos.

Nothing is downloaded: a 9-channel `UNet2DConditionModel` (latents + mask + masked latents, the inpainting layout), a
small `AutoencoderKL`, a small `CLIPTextModel` with a character-level `CLIPTokenizer` written next to it, and a DDIM
scheduler, saved with `save_pretrained` so that `AutoPipelineForInpainting` loads the folder exactly as it loads a hub
id. It paints noise; everything around it (masks, compositing, manifest, resume, filters) is the real thing.

CLI: ``python -m vseam_pl.editing.tiny_pipeline OUT_DIR [--seed N]``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

from ..argparsing import Flag, command_kwargs, command_parser, default_of


def tiny_clip_tokenizer(folder: str | os.PathLike):
    """A CLIP BPE tokenizer over printable ASCII characters (no merges), with its vocab/merges files in `folder`."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    chars = [chr(i) for i in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def build_tiny_inpaint_pipeline(out: str | os.PathLike, seed: int = 0) -> Path:
    """Save a tiny `StableDiffusionInpaintPipeline` with random weights (seeded) to `out`; returns `out`.

    The folder appears in one rename once complete, so an interrupted build never leaves a half-saved pipeline;
    an existing pipeline folder is kept as it is.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out = Path(out)
    if (out / "model_index.json").exists():
        return out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not a diffusers pipeline folder (no model_index.json)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as staging,
    ):
        tokenizer = tiny_clip_tokenizer(tmp)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )
        )
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=9,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=(2, 4),
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            block_out_channels=[32, 64],
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            norm_num_groups=32,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            sample_size=32,
        )
        scheduler = DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        pipe = StableDiffusionInpaintPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(staging)
        os.replace(staging, out)  # TemporaryDirectory's cleanup tolerates the moved folder
    return out


def save(
    out: Annotated[str, Flag(positional=True)], seed: int = default_of(build_tiny_inpaint_pipeline, "seed")
) -> Path:
    """Build the tiny pipeline into `out` and say where it is.

    Args:
        out: folder to save the pipeline to (load it with --pipeline OUT)
        seed: seeds the random weights
    """
    out = build_tiny_inpaint_pipeline(out, seed=seed)
    print(f"saved a tiny random-weight inpainting pipeline to {out}")
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = command_parser(save, "python -m vseam_pl.editing.tiny_pipeline", __doc__.split("\n")[0])
    return save(**command_kwargs(save, parser.parse_args(argv)))


if __name__ == "__main__":
    main()
