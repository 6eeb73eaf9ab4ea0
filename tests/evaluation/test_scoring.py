"""Answer scoring: candidate log-probs over full token sequences (case-insensitive), generation, answer loss."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_images
from vseam_pl.encoding import encode
from vseam_pl.prompts import build_prompts
from vseam_pl.scoring import answer_loss, continuation_logprobs, forward_logits, predict, score_candidates
from vseam_pl.vlm import load_vlm


@pytest.mark.parametrize("fixture", ["tiny_llava_dir", "tiny_instructblip_dir"])
def test_single_token_fast_path_equals_teacher_forcing(request, fixture):
    # Also guards InstructBLIP's Q-Former, which reads the text: it must never see the answer being scored.
    tiny_vlm = load_vlm(str(request.getfixturevalue(fixture)))
    prompts = build_prompts(tiny_vlm, ["is there a dog?", "is the car red?"])
    images = make_images(2)
    fast = score_candidates(tiny_vlm, prompts, images, [("yes", "no"), ("Yes", "No")])
    enc = encode(tiny_vlm, prompts * 2, images * 2, ["yes", "yes", "no", "no"])
    slow = continuation_logprobs(forward_logits(tiny_vlm, enc), enc)
    torch.testing.assert_close(torch.stack(fast), slow.view(2, 2).T, atol=1e-5, rtol=1e-5)
    # case-insensitive: Yes/yes pool into one candidate score (one token here, counted once)
    same = score_candidates(tiny_vlm, [prompts[0]] * 2, [images[0]] * 2, [("yes", "no"), ("YES", "No")])
    torch.testing.assert_close(same[0], same[1])
    torch.testing.assert_close(same[0], fast[0])


def test_multi_token_candidates_sum_token_logprobs(tiny_vlm):
    prompts = build_prompts(tiny_vlm, ["what color is the dog?"])
    images = make_images(1)
    (scores,) = score_candidates(tiny_vlm, prompts, images, [("red dog", "blue")])
    enc = encode(tiny_vlm, prompts, images, ["red"])
    first = continuation_logprobs(forward_logits(tiny_vlm, enc), enc)
    enc2 = encode(tiny_vlm, [prompts[0] + " red"], images, ["dog"])
    second = continuation_logprobs(forward_logits(tiny_vlm, enc2), enc2)
    torch.testing.assert_close(scores[0], (first + second)[0], atol=1e-4, rtol=1e-4)


def test_batched_scoring_equals_one_by_one(tiny_vlm):
    qs = ["is there a dog?", "is there a cat in the image?", "is the bus blue?"]
    images = make_images(3)
    prompts = build_prompts(tiny_vlm, qs)
    batched = score_candidates(tiny_vlm, prompts, images, [("yes", "no")] * 3)
    for i in range(3):
        (single,) = score_candidates(tiny_vlm, [prompts[i]], [images[i]], [("yes", "no")])
        torch.testing.assert_close(batched[i], single, atol=1e-5, rtol=1e-5)


def test_predict_picks_the_likelier_candidate_and_generates_open_answers(tiny_vlm):
    qs = ["is there a dog?", "what color is it?", "is the bus blue?"]
    images = make_images(3)
    cands = [("yes", "no"), None, ("no", "yes")]  # mixed closed/open, candidates in both orders
    answers = predict(tiny_vlm, qs, images, cands, instruction=None, max_new_tokens=3, batch_size=2)
    prompts = build_prompts(tiny_vlm, qs, instruction=None)
    for i in (0, 2):  # reference: teacher-forced log-probability of each candidate, one row each
        enc = encode(tiny_vlm, [prompts[i]] * 2, [images[i]] * 2, list(cands[i]))
        logprobs = continuation_logprobs(forward_logits(tiny_vlm, enc), enc)
        assert abs(logprobs[0] - logprobs[1]) > 1e-3  # a real choice, not a tie
        assert answers[i] == cands[i][int(logprobs.argmax())]
    # reference: transformers' greedy generation of the open question alone, its new tokens decoded
    inputs = tiny_vlm.processor(images=[images[1]], text=[prompts[1]], return_tensors="pt")
    out = tiny_vlm.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    reply = tiny_vlm.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answers[1] == reply.strip().split("\n")[0].strip()


def test_answer_loss_is_mean_answer_token_nll(tiny_vlm):
    prompts = build_prompts(tiny_vlm, ["is there a dog?"])
    images = make_images(1)
    loss = answer_loss(tiny_vlm, prompts, images, ["yes"])
    enc = encode(tiny_vlm, prompts, images, ["yes"], add_eos=True)
    nll = -continuation_logprobs(forward_logits(tiny_vlm, enc), enc, reduce="mean")
    torch.testing.assert_close(loss, nll[0], atol=1e-5, rtol=1e-5)


def test_toolkit_generation_keeps_the_whole_reply_and_fits_the_context(tiny_vlm, monkeypatch):
    from vseam_pl.context import max_context
    from vseam_pl.scoring import generate_answers
    from vseam_pl.text import generation_settings, parse_yes_no

    asked = []

    def fake_generate(input_ids, max_new_tokens, **kwargs):  # the tiny tokenizer has no newline token
        asked.append(max_new_tokens)
        return torch.cat([input_ids, input_ids[:, -3:]], dim=1)

    monkeypatch.setattr(tiny_vlm.model, "generate", fake_generate)
    monkeypatch.setattr(
        tiny_vlm.tokenizer, "batch_decode", lambda new, **kw: [" The answer is:\nNo \n"] * len(new)
    )
    prompts, images = build_prompts(tiny_vlm, ["is there a dog?"]), make_images(1)
    vseam = generation_settings("vseam", "vlmevalkit", "pope", 8)
    short = generate_answers(
        tiny_vlm, prompts, images, vseam.max_new_tokens, vseam.first_line, vseam.fit_context
    )
    toolkit = generation_settings("toolkit", "vlmevalkit", "pope")
    whole = generate_answers(
        tiny_vlm, prompts, images, toolkit.max_new_tokens, toolkit.first_line, toolkit.fit_context
    )
    assert short == ["The answer is:"] and whole == ["The answer is:\nNo"]
    assert parse_yes_no(short[0], "vlmevalkit") is None and parse_yes_no(whole[0], "vlmevalkit") == "no"
    # VLMEvalKit's 2048 new tokens do not fit the tiny model's 512 positions: cut to what the prompt leaves.
    prompt_len = int(
        tiny_vlm.processor(images=images, text=prompts, return_tensors="pt")["input_ids"].shape[1]
    )
    assert asked == [8, max_context(tiny_vlm) - prompt_len]
    # Without fit_context the same request is refused, as before.
    with pytest.raises(ValueError, match="to generate"):
        generate_answers(tiny_vlm, prompts, images, 2048)


def test_toolkit_generation_settings_per_benchmark():
    from vseam_pl.text import batch_generation, generation_settings

    assert generation_settings("toolkit", "lmms_eval", "pope").max_new_tokens == 128  # pope.yaml
    assert generation_settings("toolkit", "lmms_eval", "gqa").max_new_tokens == 16  # gqa.yaml
    assert generation_settings("toolkit", "llava", "gqa").max_new_tokens == 128  # model_vqa_loader.py
    assert generation_settings("toolkit", "vlmevalkit", "cocoqa").max_new_tokens == 2048  # llava.py kwargs
    assert not generation_settings("toolkit", "llava", "pope").first_line
    assert generation_settings("toolkit", "vseam", "pope", 8) == generation_settings(
        "vseam", "llava", "pope", 8
    )
    with pytest.raises(ValueError, match="generation must be one of"):
        generation_settings("lmms", "llava", "pope")
    with pytest.raises(ValueError, match="mixes benchmarks"):
        batch_generation("toolkit", "lmms_eval", ["pope", "gqa"])
    assert batch_generation("toolkit", "llava", ["pope", "gqa"]).max_new_tokens == 128
