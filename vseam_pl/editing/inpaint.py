"""The diffusers inpainting call and the compositing that keeps everything outside the mask untouched.

Any inpainting pipeline loads through `AutoPipelineForInpainting` (a hub id or a local folder, the same code path).
The model runs at a working resolution (multiple of 8); its output is resized back to the original size and blended
with the soft mask, so pixels where alpha is 0 are copied from the original bit for bit.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .settings import Sampling

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _dtype_kwarg() -> str:
    """diffusers >= 0.36 renamed `torch_dtype` to `dtype` (the old name warns); pick what this version takes."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def load_inpaint_pipeline(model: str | os.PathLike, device: str = "cpu", dtype: str = "float32", **kwargs):
    """Load an inpainting pipeline by hub id or local path onto `device` in `dtype` (float16 is for GPUs)."""
    from diffusers import AutoPipelineForInpainting

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    pipe = AutoPipelineForInpainting.from_pretrained(str(model), **{_dtype_kwarg(): DTYPES[dtype]}, **kwargs)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # the job shows one bar over pairs
    return pipe


def working_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(W, H) with the longer side `resolution` and both sides multiples of 8 (what latent diffusion needs)."""
    width, height = size
    scale = resolution / max(width, height)
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)


def composite(original: Image.Image, generated: Image.Image, alpha: np.ndarray) -> Image.Image:
    """Blend `generated` into `original` by `alpha` (H, W); where alpha is 0 the original pixel is kept exactly."""
    orig = np.asarray(original.convert("RGB"), dtype=np.float32)
    gen = np.asarray(
        generated.convert("RGB").resize(original.size, Image.Resampling.LANCZOS), dtype=np.float32
    )
    a = alpha[..., None]
    blended = np.clip(np.round(orig * (1.0 - a) + gen * a), 0, 255)
    out = np.where(a > 0, blended, orig).astype(np.uint8)
    return Image.fromarray(out)


class Inpainter:
    """Runs one inpainting pipeline with fixed sampling settings; `calls` counts model invocations."""

    def __init__(
        self,
        pipe,
        steps: int = Sampling.steps,
        guidance: float = Sampling.guidance,
        resolution: int = Sampling.resolution,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.pipe = pipe
        self.steps = steps
        self.guidance = guidance
        self.resolution = resolution
        self.calls = 0

    def __call__(
        self, image: Image.Image, alpha: np.ndarray, prompt: str, negative_prompt: str | None, seed: int
    ) -> Image.Image:
        """Inpaint where alpha > 0 and composite back at the original resolution."""
        image = image.convert("RGB")
        width, height = working_size(image.size, self.resolution)
        region = Image.fromarray(((alpha > 0) * 255).astype(np.uint8))
        # bilinear then any-positive keeps the working-size mask a superset of the composite region
        region = region.resize((width, height), Image.Resampling.BILINEAR).point(
            lambda v: 255 if v > 0 else 0
        )
        generator = torch.Generator(device="cpu").manual_seed(seed)
        result = self.pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            image=image.resize((width, height), Image.Resampling.LANCZOS),
            mask_image=region,
            height=height,
            width=width,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=generator,
        )
        self.calls += 1
        return composite(image, result.images[0], alpha)
