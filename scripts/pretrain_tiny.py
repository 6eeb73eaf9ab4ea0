"""Train the embedded tiny VLMs from scratch on the synthetic scene world, reproducibly, on CPU.

    python scripts/pretrain_tiny.py --arch llava --out /tmp/final/tiny-llava-stage1          # stages 1 + 2
    python scripts/pretrain_tiny.py --arch llava --init-from /tmp/final/tiny-llava-stage1 --steps 3000 \
        --out checkpoints/tiny-llava                                                       # stage 3
    python scripts/pretrain_tiny.py --arch instructblip --threads 2 --vision-steps 4000 --steps 5500 --lr 3e-4 \
        --out checkpoints/tiny-instructblip                                               # stages 1 + 2
    (stage 3's data stream is keyed on the name of the --init-from folder)

Stage 1 (the "CLIP" stage, `--vision-steps`) teaches the vision tower dense per-patch labels of the scenes (which
class, colour, material and size covers each patch, and the place), as LLaVA and InstructBLIP start from a pretrained
vision tower. The language stages then train projector/Q-Former and decoder (the tower frozen) on a *general*
mixture — captions and mixed questions of every kind drawn on the fly from a seed stream that no benchmark split
uses; the V-SEAM benchmark questions are only a part of it, so the models are decent but imperfect on them, as real
VLMs are. Held-out yes/no accuracy (GQA-style levels, POPE) is logged every `--eval-every` steps. The result is an
ordinary Hugging Face folder (safetensors, processor, tokenizer) that `vseam_pl.load_vlm` loads like a hub model.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vseam_pl.io import read_json, write_json
from vseam_pl.prompts import DEFAULT_INSTRUCTION, build_prompt
from vseam_pl.scoring import answer_loss, predict
from vseam_pl.synth import PLACES, SceneWorld
from vseam_pl.synth.labels import PATCH_LABELS, patch_label_shares, place_index
from vseam_pl.synth.questions import pope_question
from vseam_pl.synth.shift import IID, SHIFTS, StreamShift, cooccurring_absent, draw_question, shift_from
from vseam_pl.tiny import TinySizes, build_tiny_instructblip, build_tiny_llava
from vseam_pl.vlm import VLM, find_decoder, model_family

CAPTION_PROMPT = "Describe the image briefly."
#: Seed-stream tag: pretraining scenes never come from the benchmark generator's streams.
STREAM = "vseam-pretrain"


def trainable_vlm(model, processor, name: str) -> VLM:
    """A VLM view of a model we are *training* (load_vlm/wrap_vlm freeze weights; here we must not)."""
    decoder = find_decoder(model)
    cfg = model.config.get_text_config()
    return VLM(
        model,
        processor,
        name,
        model_family(model),
        decoder,
        len(decoder.layers),
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.hidden_size // cfg.num_attention_heads,
        cfg.hidden_size,
    )


def sample_batch(
    world: SceneWorld,
    rng: random.Random,
    vlm: VLM,
    size: int,
    caption_share: float,
    verify_weight: float = 1.0,
    shift: StreamShift = IID,
):
    """`size` examples: captions with probability `caption_share`, else one of the scene's questions, yes/no ones
    drawn `verify_weight` times as often as open ones (verification is what is slowest to learn); `shift` shapes
    scenes and questions like instruction data (`vseam_pl.synth.shift`; IID draws today's stream bit for bit)."""
    prompts, images, answers = [], [], []
    for _ in range(size):
        scene = world.sample_scene(rng, theme=shift.theme)
        if rng.random() < caption_share:
            question, answer, instruction = CAPTION_PROMPT, world.caption(scene, rng), None
        else:
            qa = draw_question(world.qa_pairs(scene, rng), scene, rng, shift, verify_weight)
            question, answer, instruction = qa.question, qa.answer, DEFAULT_INSTRUCTION
        prompts.append(build_prompt(vlm, question, instruction))
        images.append(world.render(scene))
        answers.append(answer)
    return prompts, images, answers


def vision_tower(model) -> nn.Module:
    return model.model.vision_tower if model.config.model_type == "llava" else model.vision_model


def optimizer_step(
    opt: torch.optim.Optimizer, params: list, loss: torch.Tensor, running: float | None
) -> float:
    """One clipped step; returns the smoothed loss for the log."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item() if running is None else 0.95 * running + 0.05 * loss.item()


def vision_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The patch features the language side reads: LLaVA's `vision_feature_layer`, InstructBLIP's last layer."""
    tower = vision_tower(model)
    if model.config.model_type == "llava":
        return tower(pixel_values, output_hidden_states=True).hidden_states[
            model.config.vision_feature_layer
        ][:, 1:]
    return tower(pixel_values).last_hidden_state[:, 1:]


class PatchHeads(nn.Module):
    """Linear read-outs of per-patch label shares (name, colour, material, size) and the place, for stage 1 only."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {attr: nn.Linear(dim, len(labels)) for attr, labels in PATCH_LABELS.items()}
        )
        self.place = nn.Linear(dim, len(PLACES))

    def loss(self, feats: torch.Tensor, shares: dict[str, torch.Tensor], places: torch.Tensor):
        logits = {attr: head(feats) for attr, head in self.heads.items()}
        losses = {attr: -(shares[attr] * F.log_softmax(logits[attr], -1)).sum(-1).mean() for attr in logits}
        place_logits = self.place(feats)
        losses["place"] = F.cross_entropy(
            place_logits.flatten(0, 1), places[:, None].expand(feats.shape[:2]).flatten()
        )
        # which object class, on patches at least a quarter covered by objects
        mostly = shares["name"][..., 1:].sum(-1) >= 0.25
        hit = logits["name"][..., 1:].argmax(-1) == shares["name"][..., 1:].argmax(-1)
        return sum(losses.values()), float(hit[mostly].float().mean()) if mostly.any() else float("nan")


def vision_batch(world: SceneWorld, rng: random.Random, processor, size: int, patch: int):
    """`size` scenes as pixel values, with their per-patch label shares and place index (the vision stage's targets)."""
    scenes = [world.sample_scene(rng) for _ in range(size)]
    pixels = processor.image_processor([world.render(s) for s in scenes], return_tensors="pt")["pixel_values"]
    targets = [patch_label_shares(s, patch) for s in scenes]
    shares = {a: torch.tensor(np.stack([t[a] for t in targets]), dtype=torch.float32) for a in PATCH_LABELS}
    return pixels, shares, torch.tensor([place_index(s) for s in scenes])


def pretrain_vision(model, processor, world: SceneWorld, rng: random.Random, args) -> list[dict]:
    """Stage 1 (the CLIP stage): teach the vision tower dense per-patch labels of the synthetic scenes."""
    patch = model.config.vision_config.patch_size
    heads = PatchHeads(model.config.vision_config.hidden_size)
    params = [*vision_tower(model).parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=args.vision_lr, weight_decay=0.01)
    start, running, history = time.time(), None, []
    for step in range(args.vision_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.vision_steps, args.vision_lr, args.warmup)
        pixels, shares, places = vision_batch(world, rng, processor, args.vision_batch_size, patch)
        loss, acc = heads.loss(vision_features(model, pixels), shares, places)
        running = optimizer_step(opt, params, loss, running)
        if (step + 1) % args.log_every == 0 or step == 0 or step + 1 == args.vision_steps:
            elapsed = time.time() - start
            print(
                f"vision step {step + 1}/{args.vision_steps} loss {running:.3f} class acc {acc:.2f} ({elapsed / 60:.1f} min)",
                flush=True,
            )
            history.append(
                {
                    "step": step + 1,
                    "loss": round(running, 4),
                    "class_acc": round(acc, 3),
                    "minutes": round(elapsed / 60, 2),
                }
            )
    return history


HELDOUT_KINDS = ("gqa-object", "gqa-attribute", "gqa-relation", "pope", "pope-cooccur")


def heldout_questions(world: SceneWorld, per_kind: int) -> dict[str, list]:
    """Fixed yes/no (question, image, answer) rows per kind (GQA levels, POPE, POPE with co-occurring negatives) from
    the benchmarks' i.i.d. world (balanced answers), on a stream no training or benchmark split uses."""
    rng = random.Random(f"{STREAM}-heldout")
    kinds: dict[str, list] = {k: [] for k in HELDOUT_KINDS}
    while any(len(v) < per_kind for v in kinds.values()):
        scene = world.sample_scene(rng)
        image = world.render(scene)
        for qa in world.qa_pairs(scene, rng):
            kind = f"gqa-{qa.level}" if qa.benchmark == "gqa" else qa.benchmark
            if kind in kinds and len(kinds[kind]) < per_kind:
                kinds[kind].append((qa.question, image, qa.answer))
        negative, present = cooccurring_absent(scene), scene.present()
        if negative and present and len(kinds["pope-cooccur"]) < per_kind:
            kinds["pope-cooccur"].append((pope_question(present[0]), image, "yes"))
            kinds["pope-cooccur"].append((pope_question(negative), image, "no"))
    return kinds


@torch.no_grad()
def heldout_accuracy(vlm: VLM, kinds: dict[str, list]) -> dict[str, float]:
    """Accuracy per kind, and `yes_rate`: the share of "yes" answers over all of them (0.5 is unbiased)."""
    out, said_yes, total = {}, 0, 0
    for kind, rows in kinds.items():
        questions, images, answers = zip(*rows, strict=True)
        predicted = predict(vlm, questions, images, [("yes", "no")] * len(rows), batch_size=64)
        out[kind] = round(sum(p == a for p, a in zip(predicted, answers, strict=True)) / len(rows), 4)
        said_yes, total = said_yes + sum(p == "yes" for p in predicted), total + len(rows)
    out["yes_rate"] = round(said_yes / total, 4)
    return out


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
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default). The vision stage's float rounding depends on it, so a recipe "
        "reproduces bit for bit only at the thread count it was run with (bench/pretraining.py)",
    )
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument(
        "--caption-share", type=float, default=0.1, help="share of caption examples in the mixture"
    )
    ap.add_argument(
        "--verify-weight",
        type=float,
        default=2.0,
        help="how much more often yes/no questions are drawn than open ones",
    )
    ap.add_argument(
        "--reduction",
        choices=["example", "token"],
        default="example",
        help="loss averaging: per example, or per answer token (captions then weigh more)",
    )
    ap.add_argument(
        "--shift",
        choices=sorted(SHIFTS),
        default="iid",
        help="the stream's departure from the benchmarks (vseam_pl/synth/shift.py): iid (the benchmarks' world) or "
        "realistic (yes-prior, themed scenes, salience skew, like VLM instruction data)",
    )
    ap.add_argument(
        "--yes-share", type=float, default=None, help="override the shift's share of 'yes' answers"
    )
    ap.add_argument("--theme", type=float, default=None, help="override the shift's place-prior exponent")
    ap.add_argument("--salience", type=float, default=None, help="override the shift's large-object weight")
    ap.add_argument("--init-from", default=None, help="continue from a saved model folder (a second stage)")
    ap.add_argument("--patch-size", type=int, default=16, help="vision patch size on the 64-pixel images")
    ap.add_argument("--vision-hidden", type=int, default=128, help="vision tower width")
    ap.add_argument(
        "--vision-steps",
        type=int,
        default=3000,
        help="stage 1: dense patch-label steps (0 skips; not with --init-from)",
    )
    ap.add_argument("--vision-batch-size", type=int, default=32)
    ap.add_argument("--vision-lr", type=float, default=2e-3)
    ap.add_argument(
        "--train-vision",
        action="store_true",
        help="also train the vision tower in the language stage (default: frozen, as LLaVA keeps CLIP)",
    )
    ap.add_argument(
        "--eval-every",
        type=int,
        default=500,
        help="held-out yes/no accuracy every N steps (0: only at the end)",
    )
    ap.add_argument("--eval-per-kind", type=int, default=200)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    shift = shift_from(args.shift, yes_share=args.yes_share, theme=args.theme, salience=args.salience)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    world = SceneWorld(image_size=64)
    builder = build_tiny_llava if args.arch == "llava" else build_tiny_instructblip
    sizes = TinySizes(
        patch_size=args.patch_size,
        vision_hidden=args.vision_hidden,
        text_kv_heads=8 if args.arch == "llava" else 4,
    )
    if args.init_from:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(args.init_from, dtype=torch.float32)
        processor = AutoProcessor.from_pretrained(args.init_from)
    else:
        model, processor = builder(
            world.vocabulary() + CAPTION_PROMPT.lower().replace(".", "").split(), sizes
        )
    vlm = trainable_vlm(model, processor, Path(args.out).name)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.arch}: {n_params / 1e6:.2f}M parameters, decoder {vlm.num_layers} layers x {vlm.num_heads} heads"
    )
    heldout = heldout_questions(world, args.eval_per_kind)
    continuation = f"-from-{Path(args.init_from).name}" if args.init_from else ""
    rng = random.Random(f"{STREAM}-{args.seed}{continuation}")

    start = time.time()
    vision_history = (
        [] if args.init_from or not args.vision_steps else pretrain_vision(model, processor, world, rng, args)
    )
    vision_tower(model).requires_grad_(args.train_vision)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    running, history = None, []
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        prompts, images, answers = sample_batch(
            world, rng, vlm, args.batch_size, args.caption_share, args.verify_weight, shift
        )
        loss = answer_loss(vlm, prompts, images, answers, reduction=args.reduction)
        running = optimizer_step(opt, params, loss, running)
        if (step + 1) % args.log_every == 0 or step == 0 or step + 1 == args.steps:
            elapsed = time.time() - start
            print(f"step {step + 1}/{args.steps} loss {running:.3f} ({elapsed / 60:.1f} min)", flush=True)
            history.append({"step": step + 1, "loss": round(running, 4), "minutes": round(elapsed / 60, 2)})
        if (args.eval_every and (step + 1) % args.eval_every == 0) or step + 1 == args.steps:
            model.eval()
            accuracy = heldout_accuracy(vlm, heldout)
            model.train()
            print(f"step {step + 1} held-out yes/no accuracy {accuracy}", flush=True)
            history.append({"step": step + 1, "heldout_accuracy": accuracy})

    model.eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    stages = []
    if args.init_from:  # keep the earlier stages' record
        prev = read_json(Path(args.init_from) / "pretraining.json", "pretraining record")
        stages = prev.get("stages") or [{k: prev[k] for k in ("args", "minutes", "history")}]
    stage = {
        "args": vars(args),
        "shift": shift.to_dict(),
        "minutes": round((time.time() - start) / 60, 2),
        "vision_history": vision_history,
        "history": history,
    }
    write_json(
        out / "pretraining.json",
        {
            "script": "scripts/pretrain_tiny.py",
            "parameters": n_params,
            "torch": torch.__version__,
            "stages": [*stages, stage],
        },
    )
    print(f"saved {out} ({(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
