"""Answer parsers: a table of generated replies and what each toolkit's rule reads from them (worked out by hand from
lmms-eval's pope/utils.py + gqa.yaml, LLaVA's eval_pope.py + convert_gqa_for_eval.py, VLMEvalKit's yorn.py), and
the POPE metrics each parser implies."""

from __future__ import annotations

import pytest

from vseam_pl.evaluation import make_outcomes
from vseam_pl.metrics import POPEMetrics, VQAAccuracy
from vseam_pl.records import QARecord
from vseam_pl.report import pope_rows
from vseam_pl.text import (
    _VLMEVALKIT_CONTRACTIONS,
    ANSWER_PARSERS,
    answers_match,
    parse_yes_no,
    vlmevalkit_process_answer,
)

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
    # A whole reply (toolkit generation): only VLMEvalKit's word split reads it; LLaVA splits on " " only.
    "The answer is:\nNo": (None, None, "yes", "no"),
    "The answer is:": (None, None, "yes", None),  # its first line, all that vseam generation keeps
}


@pytest.mark.parametrize("reply", list(YES_NO_TABLE))
def test_yes_no_table(reply):
    got = tuple(parse_yes_no(reply, p) for p in ANSWER_PARSERS)
    assert got == YES_NO_TABLE[reply], dict(zip(ANSWER_PARSERS, got, strict=True))


# GQA (prediction, gold): (vseam, lmms_eval, llava, vlmevalkit). VLMEvalKit scores GQA by `process_line(...,
# method="accuracy")` in vlmeval/dataset/utils/vqa_eval.py: `strip().lower()` of both sides, nothing else.
OPEN_TABLE = {
    ("Red.", "red"): (True, True, True, False),
    ("Yes.", "yes"): (True, True, True, False),
    ("the red one", "red one"): (True, False, False, False),  # VQA normalisation drops articles
    ("Two", "2"): (True, False, False, False),  # ... and maps number words
    ("left-side", "left side"): (True, False, False, False),  # VQA turns the lone "-" into a space
    ("leftside", "left-side"): (False, True, False, False),  # lmms-eval deletes it
    ("  red", "red"): (True, False, False, True),  # lmms-eval's exact match keeps whitespace
    ("RED...", "red"): (True, True, True, False),
    ("red!", "red"): (True, True, False, False),  # LLaVA strips trailing periods only
    (" Red ", "red"): (True, False, False, True),
}


@pytest.mark.parametrize("pair", list(OPEN_TABLE))
def test_open_answer_table_gqa(pair):
    got = tuple(answers_match(*pair, parser=p, benchmark="gqa") for p in ANSWER_PARSERS)
    assert got == OPEN_TABLE[pair], dict(zip(ANSWER_PARSERS, got, strict=True))


# A benchmark VLMEvalKit names no method for (COCO-QA): its default branch, `process_answer` on both sides. Its
# own punctuation and contraction rules differ from the MMF normaliser's (vseam column).
VLMEVALKIT_DEFAULT_TABLE = {
    ("Red.", "red"): (True, True),
    ("Two", "2"): (True, True),
    ("3.", "3"): (True, False),  # its period rule is a real look-behind: a period after a digit stays
    ("dont", "don't"): (True, False),  # its contraction table has only words with two apostrophes
    ("a,b", "a b"): (False, True),  # MMF removes every comma first; VLMEvalKit turns a lone "," into a space
    ("shouldnt've", "shouldn't've"): (True, True),
}


@pytest.mark.parametrize("pair", list(VLMEVALKIT_DEFAULT_TABLE))
def test_vlmevalkit_default_branch(pair):
    got = (
        answers_match(*pair, parser="vseam"),
        answers_match(*pair, parser="vlmevalkit", benchmark="cocoqa"),
    )
    assert got == VLMEVALKIT_DEFAULT_TABLE[pair]


def test_vlmevalkit_contraction_table_is_its_own():
    # Every key of VLMEvalKit's `_process_digit_article` table that a lowercased word can reach (its "Im", "Ive",
    # "Id've", "I'dve" keys are capitalised; "let's" and "she's" map to themselves), written out from the file.
    expected = set(
        "couldn'tve couldnt've hadnt've hadn'tve hed've he'dve itd've it'dve mightnt've mightn'tve ow's'at 'ows'at "
        "'ow'sat shed've she'dve shouldnt've shouldn'tve somebody'd somebodyd've somebody'dve someoned've "
        "someone'dve somethingd've something'dve thered've there'dve theyd've they'dve wed've we'dve whod've "
        "who'dve wouldnt've wouldn'tve yall'll y'allll yall'd've y'alld've y'all'dve youd've you'dve".split()
    )
    assert set(_VLMEVALKIT_CONTRACTIONS) == expected
    assert vlmevalkit_process_answer("  The Two  dogs\n") == "2 dogs"


def test_vlmevalkit_needs_the_benchmark():
    with pytest.raises(ValueError, match="pass benchmark="):
        answers_match("red", "red", parser="vlmevalkit")
    assert VQAAccuracy(parser="vlmevalkit", benchmark="gqa").update(["Red."], ["red"]) is None


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
        "vlmevalkit": [True, False],  # GQA: "the red." is not "red" after strip().lower()
    }
