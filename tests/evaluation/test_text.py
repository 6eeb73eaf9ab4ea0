import csv
import json

import pytest

from tests.release_files import SHARED_DATA as DATA
from vseam_pl.text import answers_match, is_yes_no, normalize_answer, parse_yes_no


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # case, whitespace, trailing punctuation
        ("Yes", "yes"),
        ("  No.  ", "no"),
        ("\tred\n", "red"),
        ("What?", "what"),
        # number words up to ten become digits; others stay words
        ("two", "2"),
        ("Two dogs", "2 dogs"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        # articles are dropped as whole words only
        ("a dog", "dog"),
        ("The Table", "table"),
        ("an apple and the pear", "apple and pear"),
        ("theater", "theater"),
        # periods: kept inside numbers, dropped elsewhere
        ("3.5", "3.5"),
        ("end.", "end"),
        ("e.g", "eg"),
        # commas are removed before anything else; "'s" is split off
        ("1,000", "1000"),
        ("red, white", "red white"),
        ("man's", "man 's"),
        # other punctuation: a space inside a word, deleted when next to a space
        ("black-and-white", "black and white"),
        ("black - white", "black white"),
        ("(red)", "red"),
        ("red/blue", "red blue"),
        ("yes!", "yes"),
        # contractions from the VQA table
        ("dont", "don't"),
        ("isnt", "isn't"),
        ("couldnt've", "couldn't've"),
        ("oclock", "o'clock"),
        ("yall", "y'all"),
        ("it's", "it 's"),
    ],
)
def test_normalize_answer_matches_lmms_eval(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_rule_depends_on_the_whole_answer():
    # a mark next to a space anywhere makes that mark vanish everywhere instead of becoming a space (VQA quirk)
    assert normalize_answer("black-and-white") == "black and white"
    assert normalize_answer("black-and-white - yes") == "blackandwhite yes"


def test_answers_match_and_yes_no():
    assert answers_match("Two", "2")
    assert answers_match("A red car.", "red car")
    assert not answers_match("red", "blue")
    assert not answers_match("yes", "no")
    assert answers_match("YES", "yes")
    assert is_yes_no("Yes.") and is_yes_no(" no ")
    assert not is_yes_no("yes it is") and not is_yes_no("maybe")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Yes", "yes"),
        ("no.", "no"),
        ("Yes, there is a dog in the image.", "yes"),
        ("  **No**, it is a cat", "no"),
        ("<think>maybe yes</think> No", "no"),
        ("There is no dog.", None),
        ("Nope", None),
        ("yesterday", None),
        ("", None),
        ("2 dogs", None),
    ],
)
def test_parse_yes_no_reads_the_first_word(reply, expected):
    assert parse_yes_no(reply) == expected


@pytest.mark.usefixtures("shared_data")
def test_real_answers_normalise_as_expected():
    with open(DATA / "COCOQA" / "count_coco_qa.csv", newline="") as f:
        counts = [row[3] for row in list(csv.reader(f))[1:]]
    # COCO-QA writes counts as words; a model answering "2" must match "two"
    assert all(normalize_answer(a).isdigit() for a in counts if a in {"one", "two", "three", "ten"})
    assert sum(answers_match(str(i), w) for i, w in enumerate(["zero", "one", "two", "three"])) == 4
    gqa = json.loads((DATA / "GQA" / "Material.json").read_text())
    assert all(is_yes_no(q["answer"]) for q in gqa)
    labels = [json.loads(line)["label"] for line in (DATA / "POPE" / "coco_pope_random.json").open()]
    assert len(labels) == 2910 and all(parse_yes_no(label) == label for label in labels)
