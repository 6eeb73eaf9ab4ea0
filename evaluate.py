"""`python evaluate.py` is `vseam evaluate`: baseline (and, with `--scales`, modulated) accuracy on GQA, POPE and
COCO-QA with paired tests (`vseam_pl/evaluate.py`).

    python evaluate.py                                             # tiny LLaVA, synthetic test split, 3 benchmarks
    python evaluate.py --model checkpoints/tiny-llava --scales runs/.../head_scales.safetensors
"""

from vseam_pl.evaluate import evaluate, main

__all__ = ["evaluate", "main"]

if __name__ == "__main__":
    main()
