"""`python evaluate.py` is `vseam evaluate`: baseline (and, with `--scales`, modulated) accuracy on GQA, POPE and
COCO-QA with paired tests (`vseam_pl/evaluate.py`).

    python evaluate.py                                             # tiny InstructBLIP, synthetic POPE test split
    python evaluate.py --benchmarks gqa,pope,cocoqa --scales runs/.../head_scales.safetensors
    python evaluate.py -c runs/.../config.yaml --ckpt_path last     # a training run, from its own config
"""

from vseam_pl.evaluate import evaluate, main

__all__ = ["evaluate", "main"]

if __name__ == "__main__":
    main()
