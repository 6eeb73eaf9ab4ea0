"""Train the embedded tiny VLMs from scratch on the synthetic scene world, reproducibly, on CPU.

    python scripts/pretrain_tiny.py --arch llava --out checkpoints/tiny-llava
    python scripts/pretrain_tiny.py --arch instructblip --out checkpoints/tiny-instructblip

The data is a *general* pretraining mixture (captions and mixed questions of every kind) drawn on the fly from a seed
stream that no benchmark split uses; the V-SEAM benchmark questions are only a part of it, so the models are decent
but imperfect on them, as real VLMs are. The result is an ordinary Hugging Face folder (safetensors, processor,
tokenizer) that `vseam_pl.load_vlm` loads exactly like a hub model.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from vseam_pl.prompts import build_prompt
from vseam_pl.scoring import answer_loss
from vseam_pl.synth import SceneWorld
from vseam_pl.tiny import TinySizes, build_tiny_instructblip, build_tiny_llava
from vseam_pl.vlm import VLM, find_decoder, model_family

CAPTION_PROMPT = "Describe the image briefly."
#: Seed-stream tag: pretraining scenes never come from the benchmark generator's streams.
STREAM = "vseam-pretrain"


def trainable_vlm(model, processor, name: str) -> VLM:
    """A VLM view of a model we are *training* (load_vlm/wrap_vlm freeze weights; here we must not)."""
    decoder = find_decoder(model)
    cfg = model.config.get_text_config()
    return VLM(model, processor, name, model_family(model), decoder, len(decoder.layers), cfg.num_attention_heads,
               cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads, cfg.hidden_size)  # fmt: skip


def sample_batch(world: SceneWorld, rng: random.Random, vlm: VLM, size: int, caption_share: float):
    prompts, images, answers = [], [], []
    for _ in range(size):
        scene = world.sample_scene(rng)
        if rng.random() < caption_share:
            question, answer, instruction = CAPTION_PROMPT, world.caption(scene, rng), None
        else:
            qa = rng.choice(world.qa_pairs(scene, rng))
            question, answer, instruction = qa.question, qa.answer, "default"
        prompt = build_prompt(vlm, question) if instruction else build_prompt(vlm, question, instruction=None)
        prompts.append(prompt)
        images.append(world.render(scene))
        answers.append(answer)
    return prompts, images, answers


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["llava", "instructblip"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default); 1 lets both models train side by side")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--caption-share", type=float, default=0.2, help="share of caption examples in the mixture")
    ap.add_argument("--reduction", choices=["example", "token"], default="example",
                    help="loss averaging: per example, or per answer token (captions then weigh more)")
    ap.add_argument("--init-from", default=None, help="continue from a saved model folder (a second stage)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    world = SceneWorld(image_size=64)
    builder = build_tiny_llava if args.arch == "llava" else build_tiny_instructblip
    sizes = TinySizes(text_kv_heads=8 if args.arch == "llava" else 4)
    if args.init_from:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(args.init_from, dtype=torch.float32)
        processor = AutoProcessor.from_pretrained(args.init_from)
    else:
        model, processor = builder(world.vocabulary() + CAPTION_PROMPT.lower().replace(".", "").split(), sizes)
    vlm = trainable_vlm(model, processor, Path(args.out).name)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.arch}: {n_params / 1e6:.2f}M parameters, decoder {vlm.num_layers} layers x {vlm.num_heads} heads")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    stage = f"-from-{Path(args.init_from).name}" if args.init_from else ""
    rng = random.Random(f"{STREAM}-{args.seed}{stage}")
    start, running = time.time(), None
    history = []
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        prompts, images, answers = sample_batch(world, rng, vlm, args.batch_size, args.caption_share)
        loss = answer_loss(vlm, prompts, images, answers, reduction=args.reduction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % args.log_every == 0 or step == 0:
            elapsed = time.time() - start
            print(f"step {step + 1}/{args.steps} loss {running:.3f} ({elapsed / 60:.1f} min)", flush=True)
            history.append({"step": step + 1, "loss": round(running, 4), "minutes": round(elapsed / 60, 2)})

    model.eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    stages = []
    if args.init_from:  # keep the earlier stages' record
        prev = json.loads((Path(args.init_from) / "pretraining.json").read_text())
        stages = prev.get("stages") or [{k: prev[k] for k in ("args", "minutes", "history")}]
    stage = {"args": vars(args), "minutes": round((time.time() - start) / 60, 2), "history": history}
    (out / "pretraining.json").write_text(json.dumps({
        "script": "scripts/pretrain_tiny.py", "parameters": n_params, "torch": torch.__version__,
        "stages": [*stages, stage],
    }, indent=2) + "\n")  # fmt: skip
    print(f"saved {out} ({(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
