import math
import random
from dataclasses import asdict

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vseam_pl.metrics import PairedOutcomes, POPEMetrics, VQAAccuracy, pope_scores
from vseam_pl.records import QARecord

GROUPS = ["Animal", "Color", "Spatial"]

# One POPE split with every confusion cell: TP=2, FP=1, TN=2, FN=1, unanswered (gt yes)=1, unanswered (gt no)=1.
RANDOM = [
    ("Yes", "yes"),
    ("yes, it is", "yes"),
    ("No", "yes"),
    ("yes", "no"),
    ("no.", "no"),
    ("No", "no"),
    ("I cannot tell", "yes"),
    ("There is none", "no"),
]
POPULAR_ALL_YES = [("yes", "yes"), ("Yes", "no"), ("yes", "no"), ("yes", "no")]
ADVERSARIAL_NO_YES = [("no", "yes"), ("no", "yes"), ("no", "no")]


def _pope(metric: POPEMetrics, split: str, pairs) -> None:
    preds, targets = zip(*pairs, strict=True)
    metric.update(list(preds), list(targets), split)


def test_pope_metrics_hand_computed():
    m = POPEMetrics()
    _pope(m, "random", RANDOM)
    _pope(m, "popular", POPULAR_ALL_YES)
    _pope(m, "adversarial", ADVERSARIAL_NO_YES)
    out = {k: v.item() for k, v in m.compute().items()}

    assert out["random/n"] == 8
    assert out["random/accuracy"] == pytest.approx(4 / 8)
    assert out["random/precision"] == pytest.approx(2 / 3)
    assert out["random/recall"] == pytest.approx(2 / 4)  # the unanswered gt-yes counts as a miss
    assert out["random/f1"] == pytest.approx(4 / 7)
    assert out["random/yes_ratio"] == pytest.approx(3 / 8)  # predicted yes
    assert out["random/gt_yes_ratio"] == pytest.approx(4 / 8)  # lmms-eval's pope_yes_ratio
    assert out["random/unanswered"] == pytest.approx(2 / 8)

    # degenerate: everything answered "yes"
    assert out["popular/accuracy"] == pytest.approx(0.25)
    assert out["popular/precision"] == pytest.approx(0.25)
    assert out["popular/recall"] == 1.0
    assert out["popular/f1"] == pytest.approx(0.4)
    assert out["popular/yes_ratio"] == 1.0

    # degenerate: nothing answered "yes" -> precision 0 by convention, F1 0
    assert out["adversarial/accuracy"] == pytest.approx(1 / 3)
    assert out["adversarial/precision"] == 0.0
    assert out["adversarial/recall"] == 0.0
    assert out["adversarial/f1"] == 0.0
    assert out["adversarial/yes_ratio"] == 0.0

    assert out["avg/accuracy"] == pytest.approx((0.5 + 0.25 + 1 / 3) / 3)
    assert out["avg/f1"] == pytest.approx((4 / 7 + 0.4 + 0) / 3)


def test_pope_empty_split_is_nan_and_left_out_of_the_average():
    m = POPEMetrics()
    _pope(m, "random", RANDOM)
    out = m.compute()
    assert out["popular/n"] == 0 and math.isnan(out["popular/f1"]) and math.isnan(out["popular/accuracy"])
    assert out["avg/accuracy"] == pytest.approx(0.5)


def test_pope_scores_no_positives_at_all():
    s = pope_scores(torch.tensor([0, 0, 5, 0, 0, 0]))  # only true negatives
    assert s["accuracy"] == 1.0 and s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0


def test_pope_rejects_bad_input():
    m = POPEMetrics()
    with pytest.raises(ValueError, match="'maybe'"):
        m.update(["yes"], ["maybe"], "random")
    with pytest.raises(ValueError, match="unknown split"):
        m.update(["yes"], ["yes"], "hard")
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        m.update(["yes", "no"], ["yes"], "random")


def test_vqa_accuracy_overall_and_per_group():
    m = VQAAccuracy(groups=GROUPS)
    m.update(["Two", "a red car."], ["2", "red car"], ["Animal", "Color"])
    m.update(["blue", "left"], ["red", "left"], ["Color", "Color"])
    out = m.compute()
    assert out["accuracy"].item() == pytest.approx(3 / 4)
    assert out["accuracy/Animal"].item() == 1.0
    assert out["accuracy/Color"].item() == pytest.approx(2 / 3)
    assert math.isnan(out["accuracy/Spatial"].item())  # stable keys, no examples


def test_vqa_accuracy_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown group\(s\) \['Weather'\]"):
        VQAAccuracy(groups=GROUPS).update(["a"], ["a"], ["Weather"])
    with pytest.raises(ValueError, match="built without groups"):
        VQAAccuracy().update(["a"], ["a"], ["Animal"])
    with pytest.raises(ValueError, match="group names are required"):
        VQAAccuracy(groups=GROUPS).update(["a"], ["a"])


def _record(i: int, answer: str, image: str, group: str = "Animal", bench: str = "gqa") -> QARecord:
    return QARecord(
        bench, str(i), f"question {i}?", answer, image, category=group, source=f"{group}.json:{i}"
    )


def test_paired_outcomes_score_replies_and_drop_sampler_repeats():
    m = PairedOutcomes()
    a, b, c = (
        _record(1, "2", "img1"),
        _record(2, "red", "img1", "Color"),
        _record(3, "yes", "img2", bench="pope"),
    )
    m.update([a, b], ["Two", "blue"], ["3", "Red."])
    m.update([c, a], ["No", "Two"], ["Yes, it is", "3"])  # `a` again: DistributedSampler padding
    out = {o.source: o for o in m.compute()}
    assert len(m.compute()) == 3 and sorted(o.key for o in out.values()) == [o.key for o in m.compute()]
    assert (out["Animal.json:1"].baseline_correct, out["Animal.json:1"].modulated_correct) == (True, False)
    assert (out["Color.json:2"].baseline_correct, out["Color.json:2"].modulated_correct) == (False, True)
    assert (out["Animal.json:3"].baseline_correct, out["Animal.json:3"].modulated_correct) == (False, True)
    o = out["Color.json:2"]  # the strings come back as they went in
    assert (o.benchmark, o.question_id, o.group, o.answer, o.baseline, o.modulated, o.image_id) == (
        "gqa",
        "2",
        "Color",
        "red",
        "blue",
        "Red.",
        "img1",
    )


def test_paired_outcomes_parser_decides_correctness():
    rec = [_record(1, "yes", "img1", bench="pope")]
    replies = ["Yes, there is a dog."]
    strict, lenient = PairedOutcomes(parser="lmms_eval"), PairedOutcomes(parser="vseam")
    strict.update(rec, replies)
    lenient.update(rec, replies)
    assert strict.compute()[0].baseline_correct is False and lenient.compute()[0].baseline_correct is True


def test_paired_outcomes_one_system_and_mixed():
    m = PairedOutcomes()
    m.update([_record(0, "a", "i")], None, ["a"])  # validation without the baseline
    (o,) = m.compute()
    assert o.baseline is None and o.baseline_correct is None and o.modulated_correct is True
    m.update([_record(1, "a", "i")], ["a"], ["b"])
    with pytest.raises(ValueError, match="some updates had baseline replies and some did not"):
        m.compute()
    with pytest.raises(ValueError, match="at least one system"):
        m.update([_record(2, "a", "i")])
    with pytest.raises(ValueError, match="got 2 baseline replies for 1 records"):
        m.update([_record(2, "a", "i")], ["a", "b"])
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert PairedOutcomes().compute() == []


# ---------------------------------------------------------------- DDP: 2 gloo processes == 1 process


def _data(n: int = 40):
    rng = random.Random(0)
    answers = ["red", "blue", "two", "2", "a dog", "dog"]
    vqa = [(rng.choice(answers), rng.choice(answers), rng.choice(GROUPS)) for _ in range(n)]
    replies = ["Yes", "no", "No.", "yes, there is", "unsure"]
    pope = [
        (rng.choice(replies), rng.choice(["yes", "no"]), rng.choice(["random", "popular", "adversarial"]))
        for _ in range(n)
    ]
    paired = [
        (
            _record(i, rng.choice(answers), f"img{i % 7}", rng.choice(GROUPS)),
            rng.choice(answers),
            rng.choice(answers),
        )
        for i in range(n)
    ]
    return vqa, pope, paired


def _run(vqa, pope, paired):
    a, b, c = VQAAccuracy(groups=GROUPS), POPEMetrics(), PairedOutcomes()
    if vqa:
        a.update(*map(list, zip(*vqa, strict=True)))
    if pope:
        b.update(*map(list, zip(*pope, strict=True)))
    if paired:
        c.update(*map(list, zip(*paired, strict=True)))
    return a.compute(), b.compute(), [asdict(o) for o in c.compute()]


def _ddp_worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        vqa, pope, paired = _data()
        cut = 15  # uneven shards, and rank 1 repeats example 0 like DistributedSampler padding
        if rank == 0:
            shard = vqa[:cut], pope[:cut], paired[:cut]
        else:
            shard = vqa[cut:], pope[cut:], paired[cut:] + paired[:1]
        result = _run(*shard)
        lonely = PairedOutcomes()  # a rank that sees no examples must not break the gather
        if rank == 0:
            lonely.update([_record(5, "a", "x"), _record(2, "b", "y")], ["a", "a"], ["c", "b"])
        result = (*result, [asdict(o) for o in lonely.compute()])
        if rank == 0:
            torch.save(result, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes that each import torch and torchmetrics
def test_ddp_two_processes_equal_single_process(tmp_path):
    out_file = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    vqa_d, pope_d, paired_d, lonely = torch.load(out_file, weights_only=True)
    assert sorted((o["question_id"], o["baseline_correct"], o["modulated_correct"]) for o in lonely) == [
        ("2", False, True),
        ("5", True, False),
    ]
    vqa_s, pope_s, paired_s = _run(*_data())

    assert vqa_d.keys() == vqa_s.keys()
    for k in vqa_s:
        torch.testing.assert_close(vqa_d[k], vqa_s[k], equal_nan=True)
    assert pope_d.keys() == pope_s.keys()
    for k in pope_s:
        torch.testing.assert_close(pope_d[k], pope_s[k], equal_nan=True, rtol=0, atol=0)
    assert len(paired_d) == 40 and paired_d == paired_s  # every field of every example, the repeat once
