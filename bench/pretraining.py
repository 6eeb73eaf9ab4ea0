"""Benchmark: a pretraining step of the embedded tiny VLMs at several torch thread counts, side by side in one run.

    python -m bench.pretraining [--models checkpoints/tiny-llava checkpoints/tiny-instructblip] [--threads 1 2]
                                [--steps 20] [--warmup 3]

`scripts/pretrain_tiny.py` runs on the CPU; this says what its `--threads` buys and whether it changes the result.
For each model, both stages' steps as the recipe takes them (batch drawn and rendered, forward, backward, clipped
AdamW step): the vision stage (tower + patch read-outs, 32 images) and the language stage (projector / Q-Former and
decoder, tower frozen, 16 examples). Every thread count starts from the same weights and draws the same batches, so
the last column says whether the thread count changes the trained weights (where a reduction is split across threads).
Thread counts are timed in alternating rounds, so drift of the machine hits them alike.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from pathlib import Path

import torch

from scripts.pretrain_tiny import (
    PatchHeads,
    optimizer_step,
    sample_batch,
    trainable_vlm,
    vision_batch,
    vision_features,
    vision_tower,
)
from vseam_pl.scoring import answer_loss
from vseam_pl.synth import SceneWorld


class Stage:
    """One stage's trainable state, reset to the same start for every thread count."""

    def __init__(self, name: str, model_dir: str, world: SceneWorld) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.name, self.world = name, world
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.vlm = trainable_vlm(self.model, self.processor, Path(model_dir).name)
        self.model.train()
        torch.manual_seed(0)
        self.heads = PatchHeads(self.model.config.vision_config.hidden_size)
        vision = name == "vision"
        self.model.requires_grad_(not vision)
        vision_tower(self.model).requires_grad_(vision)
        self.params = (
            [*vision_tower(self.model).parameters(), *self.heads.parameters()]
            if vision
            else [p for p in self.model.parameters() if p.requires_grad]
        )
        self.start = copy.deepcopy((self.model.state_dict(), self.heads.state_dict()))

    def reset(self) -> None:
        self.model.load_state_dict(self.start[0])
        self.heads.load_state_dict(self.start[1])
        self.opt = torch.optim.AdamW(self.params, lr=1e-3, weight_decay=0.01)
        self.rng, self.running = random.Random("bench-pretraining"), None
        torch.manual_seed(0)

    def step(self) -> None:
        if self.name == "vision":
            pixels, shares, places = vision_batch(
                self.world, self.rng, self.processor, 32, self.model.config.vision_config.patch_size
            )
            loss, _ = self.heads.loss(vision_features(self.model, pixels), shares, places)
        else:
            loss = answer_loss(
                self.vlm, *sample_batch(self.world, self.rng, self.vlm, 16, 0.1, 2.0), reduction="example"
            )
        self.running = optimizer_step(self.opt, self.params, loss, self.running)

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]


def time_stage(
    stage: Stage, threads: list[int], steps: int, warmup: int, rounds: int = 2
) -> tuple[dict, bool]:
    """ms per step per thread count (median over rounds), and whether every thread count ends on the same weights."""
    times: dict[int, list[float]] = {t: [] for t in threads}
    final: dict[int, list[torch.Tensor]] = {}
    for _ in range(rounds):
        for t in threads:
            torch.set_num_threads(t)
            stage.reset()
            for _ in range(warmup):
                stage.step()
            begin = time.perf_counter()
            for _ in range(steps):
                stage.step()
            times[t].append((time.perf_counter() - begin) / steps * 1000)
            final[t] = stage.weights()
    first = final[threads[0]]
    same = all(all(torch.equal(a, b) for a, b in zip(first, final[t], strict=True)) for t in threads[1:])
    return {t: sorted(v)[len(v) // 2] for t, v in times.items()}, same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", nargs="+", default=["checkpoints/tiny-llava", "checkpoints/tiny-instructblip"]
    )
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    world = SceneWorld(image_size=64)
    base = args.threads[0]
    print(
        f"| model | stage | {' | '.join(f'{t} thread(s) ms/step' for t in args.threads)} | speed-up vs {base} | same weights |"
    )
    print(f"|---|---|{'---:|' * len(args.threads)}---|---|")
    for model_dir in args.models:
        for name in ("vision", "language"):
            ms, same = time_stage(Stage(name, model_dir, world), args.threads, args.steps, args.warmup)
            speedups = " / ".join(f"{ms[base] / ms[t]:.2f}x" for t in args.threads[1:])
            cells = " | ".join(f"{ms[t]:.0f}" for t in args.threads)
            print(
                f"| {Path(model_dir).name} | {name} | {cells} | {speedups} | {'yes' if same else 'no'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
