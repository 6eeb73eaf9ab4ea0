"""CLI: ``vseam synth --out DIR [--seed N] [--n_images N] [--n_val N] [--n_test N] [--overwrite]`` (= ``python -m vseam_pl.synth``)."""

from __future__ import annotations

import json
import sys
import time

from ..argparsing import command_kwargs, command_parser, default_of
from .writers import generate_benchmarks


def synth(
    out: str,
    seed: int = default_of(generate_benchmarks, "seed"),
    n_images: int = default_of(generate_benchmarks, "n_train"),
    n_val: int = default_of(generate_benchmarks, "n_val"),
    n_test: int = default_of(generate_benchmarks, "n_test"),
    image_size: int = default_of(generate_benchmarks, "image_size"),
    gqa_per_image: int = default_of(generate_benchmarks, "gqa_per_image"),
    overwrite: bool = False,
) -> int:
    """`vseam synth`: `generate_benchmarks` (whose defaults these are) into `out`, then print its splits.

    Args:
        out: output folder (manifest.json + train/val/test benchmark roots)
        seed: seeds every image and question
        n_images: number of train images
        n_val: number of val images
        n_test: number of test images
        image_size: image side in pixels
        gqa_per_image: GQA questions (and edited pairs) per image
        overwrite: replace an output made with other settings
    """
    start = time.perf_counter()
    try:
        folder = generate_benchmarks(
            out,
            seed=seed,
            n_train=n_images,
            n_val=n_val,
            n_test=n_test,
            image_size=image_size,
            overwrite=overwrite,
            gqa_per_image=gqa_per_image,
        )
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    splits = json.loads((folder / "manifest.json").read_text())["splits"]
    print(json.dumps(splits, indent=1))
    print(f"wrote {folder} in {time.perf_counter() - start:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return synth(
        **command_kwargs(synth, command_parser(synth, "python -m vseam_pl.synth", __doc__).parse_args(argv))
    )


if __name__ == "__main__":
    sys.exit(main())
