"""Answer parsers: a table of generated replies and what each toolkit's rule reads from them (worked out by hand from
lmms-eval's pope/utils.py + gqa.yaml, LLaVA's eval_pope.py + convert_gqa_for_eval.py, VLMEvalKit's yorn.py), and
the POPE metrics each parser implies."""

from __future__ import annotations

import pytest

from vseam_pl.evaluation import make_outcomes
from vseam_pl.metrics import POPEMetrics
from vseam_pl.records import QARecord
from vseam_pl.report import pope_rows
from vseam_pl.text import ANSWER_PARSERS, answers_match, parse_yes_no

# reply: (vseam, lmms_eval, llava, vlmevalkit)
YES_NO_TABLE = {
    "yes": ("yes", "yes", "yes", "yes"),
    "  No \n": ("no", "no", "no", "no"),
    "Yes.": ("yes", None, "yes", "yes"),
    "Yes, there is a dog in the image.": ("yes", None, "yes", "yes"),
    "No, there is no cat.": ("no", None, "no", "no"),
    "There is no dog.": (None, None, "no", "no"),
    "The dog is not red": (None, None, "no", None),
    "I see a dog. It is not a cat.": (None, None, "yes", None),  # LLaVA keeps the first sentence only
    "Nope": (None, None, "yes", None),  # LLaVA: anything without no/not is yes
    "yes and no": ("yes", None, "no", None),
    "NO": ("no", "no", "yes", "no"),  # LLaVA only knows "No", "no", "not"
    "no,": ("no", None, "no", "no"),
    "<think>maybe no</think> Yes": ("yes", None, "yes", None),  # only vseam-pl strips a reasoning trace
    "": (None, None, "yes", None),
}


@pytest.mark.parametrize("reply", list(YES_NO_TABLE))
def test_yes_no_table(reply):
    got = tuple(parse_yes_no(reply, p) for p in ANSWER_PARSERS)
    assert got == YES_NO_TABLE[reply], dict(zip(ANSWER_PARSERS, got, strict=True))


# (prediction, gold): (vseam, lmms_eval, llava, vlmevalkit)
OPEN_TABLE = {
    ("Red.", "red"): (True, True, True, True),
    ("the red one", "red one"): (True, False, False, True),  # VQA normalisation drops articles
    ("Two", "2"): (True, False, False, True),  # ... and maps number words
    ("left-side", "left side"): (
        True,
        False,
        False,
        True,
    ),  # VQA turns the lone "-" into a space; lmms-eval deletes
    ("leftside", "left-side"): (False, True, False, False),
    ("  red", "red"): (True, False, False, True),  # lmms-eval's exact match keeps whitespace
    ("RED...", "red"): (True, True, True, True),
    ("red!", "red"): (True, True, False, True),  # LLaVA strips trailing periods only
}


@pytest.mark.parametrize("pair", list(OPEN_TABLE))
def test_open_answer_table(pair):
    got = tuple(answers_match(*pair, parser=p) for p in ANSWER_PARSERS)
    assert got == OPEN_TABLE[pair], dict(zip(ANSWER_PARSERS, got, strict=True))


def test_unknown_parser_is_refused():
    with pytest.raises(ValueError, match="unknown answer parser 'gpt'"):
        parse_yes_no("yes", "gpt")
    with pytest.raises(ValueError, match="unknown answer parser"):
        POPEMetrics(parser="lmms-eval")


def test_pope_recall_convention_follows_the_parser():
    # gold yes x4: "Yes." (unparsed by lmms-eval), "yes" (TP), "no" (FN), "Yes it is" (unparsed by lmms-eval)
    # gold no x2: "no" (TN), "yes" (FP)
    targets = ["yes", "yes", "yes", "yes", "no", "no"]
    preds = ["Yes.", "yes", "no", "Yes it is", "no", "yes"]
    by_parser = {}
    for parser in ("lmms_eval", "vseam"):
        rows = pope_rows(targets, preds, parser=parser, n_resamples=50)
        by_parser[parser] = {r["metric"]: r["baseline"] for r in rows if r["split"] == "random"}
    lm = by_parser["lmms_eval"]
    # lmms-eval: TP=1, FN=1, FP=1, TN=1, 2 unparsed. recall = 1/(1+1); precision = 1/2; accuracy = 2/6.
    assert lm["recall"] == pytest.approx(0.5) and lm["precision"] == pytest.approx(0.5)
    assert lm["accuracy"] == pytest.approx(2 / 6) and lm["yes_ratio"] == pytest.approx(2 / 6)
    vs = by_parser["vseam"]
    # vseam-pl reads all four gold-yes replies: TP=3, FN=1, FP=1, TN=1.
    assert vs["recall"] == pytest.approx(3 / 4) and vs["precision"] == pytest.approx(3 / 4)
    assert vs["accuracy"] == pytest.approx(4 / 6)


def test_outcomes_use_the_parser_for_pope_and_open_questions():
    records = [
        QARecord("pope", "1", "is there a dog?", "yes", "img1", candidates=("yes", "no")),
        QARecord("gqa", "2", "what color?", "red", "img2"),
    ]
    replies = ["Yes, there is.", "The red."]
    got = {p: [o.baseline_correct for o in make_outcomes(records, replies, None, p)] for p in ANSWER_PARSERS}
    assert got == {
        "vseam": [True, True],
        "lmms_eval": [False, False],
        "llava": [True, False],
        "vlmevalkit": [True, True],
    }
