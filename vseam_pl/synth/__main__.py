"""CLI: ``vseam synth --out DIR [--seed N] [--n_images N] [--n_val N] [--n_test N] [--overwrite]`` (= ``python -m vseam_pl.synth``)."""

from __future__ import annotations

import json
import sys
import time

from ..argparsing import ArgumentParser
from .writers import generate_benchmarks


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m vseam_pl.synth", description=__doc__)
    p.add_argument(
        "--out", required=True, help="output folder (manifest.json + train/val/test benchmark roots)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-images", type=int, default=4000, help="number of train images")
    p.add_argument("--n-val", type=int, default=400, help="number of val images")
    p.add_argument("--n-test", type=int, default=1200, help="number of test images")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--gqa-per-image", type=int, default=2, help="GQA questions (and edited pairs) per image")
    p.add_argument("--overwrite", action="store_true", help="replace an output made with other settings")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        out = generate_benchmarks(
            args.out,
            seed=args.seed,
            n_train=args.n_images,
            n_val=args.n_val,
            n_test=args.n_test,
            image_size=args.image_size,
            overwrite=args.overwrite,
            gqa_per_image=args.gqa_per_image,
        )
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    splits = json.loads((out / "manifest.json").read_text())["splits"]
    print(json.dumps(splits, indent=1))
    print(f"wrote {out} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
