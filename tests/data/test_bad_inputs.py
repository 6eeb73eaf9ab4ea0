"""Inputs that used to be read wrongly without a word: a GQA document followed by more data, bytes that are not UTF-8
(in a record, in a file or folder name), and JSON values of the wrong type (stringified before)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_data_support import gqa_rows

from vseam_pl.data import BadRecordError
from vseam_pl.data.jsonstream import JSONStreamError, iter_json_items
from vseam_pl.data.readers import read_cocoqa, read_gqa, read_pope
from vseam_pl.evaluation import example_key, make_outcomes
from vseam_pl.pairs import ManifestError, read_pairs

POPE_LINE = {"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"}


# -- 5: a GQA JSON document is read to its end ------------------------------------------------------------------
@pytest.mark.parametrize("tail", [json.dumps(gqa_rows(3, 2, "Animal", start=3)), "garbage", "]", '{"k": 1}'])
def test_data_after_the_closing_bracket_is_an_error_naming_file_and_offset(tmp_path, tail):
    """Two concatenated lists gave 3 of 6 records and trailing garbage was ignored."""
    p = tmp_path / "Animal.json"
    head = json.dumps(gqa_rows(3, 2, "Animal"))
    p.write_text(head + "\n" + tail)
    with pytest.raises(
        JSONStreamError, match=rf"Animal\.json: malformed JSON at character {len(head) + 1}: "
    ):
        list(iter_json_items(p, chunk_size=7))
    with pytest.raises(BadRecordError, match=r"Animal\.json.*after the end of the document"):
        list(read_gqa(p, "/i", on_bad=lambda e: None))  # not skippable: records would be lost
    p.write_text(head + "\n  \n")  # trailing whitespace is fine
    assert len(list(read_gqa(p, "/i"))) == 3
    p.write_text("[] x")
    with pytest.raises(JSONStreamError, match="after the end"):
        list(iter_json_items(p))


# -- 7: bytes that are not UTF-8 -----------------------------------------------------------------------------------
def test_a_latin1_byte_names_file_and_line_and_is_skippable(tmp_path):
    good = json.dumps(POPE_LINE).encode()
    bad = json.dumps(
        {**POPE_LINE, "question_id": 2, "text": "Is there a caf\u00e9?"}, ensure_ascii=False
    ).encode("latin-1")
    pope = tmp_path / "coco_pope_random.json"
    pope.write_bytes(good + b"\n" + bad + b"\n" + good.replace(b": 1", b": 3") + b"\n")
    with pytest.raises(
        BadRecordError, match=r"coco_pope_random\.json:2: the line is not UTF-8 text \(byte 0xe9"
    ):
        list(read_pope(pope, "/i"))
    seen: list[BadRecordError] = []
    assert [r.question_id for r in read_pope(pope, "/i", on_bad=seen.append)] == ["random-1", "random-3"]
    assert [e.source for e in seen] == [f"{pope}:2"]

    csv = tmp_path / "color_coco_qa.csv"
    csv.write_bytes(
        b",train_image_id_count,question_count,answer_count\n0,1,what color is the caf\xe9,red\n1,2,what,blue\n"
    )
    with pytest.raises(BadRecordError, match=r"color_coco_qa\.csv:2: the line is not UTF-8"):
        list(read_cocoqa(csv, "/i"))
    assert [r.question_id for r in read_cocoqa(csv, "/i", on_bad=seen.append)] == ["color-1"]

    gqa = tmp_path / "Animal.json"
    rows = gqa_rows(3, 2, "Animal")
    rows[1]["question"] = "Is the caf\u00e9 open?"
    gqa.write_bytes(json.dumps(rows, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(BadRecordError, match=r"Animal\.json:1: the record is not UTF-8 text"):
        list(read_gqa(gqa, "/i"))
    assert len(list(read_gqa(gqa, "/i", on_bad=seen.append))) == 2


def test_file_and_folder_names_that_are_not_utf8(tmp_path):
    """Such a name reaches Python as lone surrogates: the run crashed after the forward pass (example_key)."""
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    gqa = folder / os.fsdecode(b"Anim\xe9l.json")
    gqa.write_text(json.dumps(gqa_rows(2, 2, "Animal")))
    records = list(read_gqa(gqa, str(folder / "images")))
    assert records[0].category == "Anim\\xe9l" and "caf\\xe9" in records[0].source
    assert Path(records[0].image_path).parent == folder / "images"  # the real bytes: the file opens
    outcomes = make_outcomes(records, ["yes", "no"], None)
    assert len({o.key for o in outcomes}) == 2
    json.dumps([o.__dict__ for o in outcomes])  # and reports can be written
    assert example_key(records[0]) != example_key(
        type(records[0])(**{**records[0].__dict__, "image_id": os.fsdecode(b"x\xe9")})
    )


# -- 8: JSON values of the wrong type ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value,message",
    [
        ("text", ["Is there a dog?"], "field 'text' must be a string, got a list"),
        ("text", 12345, "field 'text' must be a string, got a number"),
        ("label", True, "field 'label' must be a string, got a boolean"),
        ("question_id", {"id": 1}, "field 'question_id' must be a string or an integer, got an object"),
        ("image", ["a.jpg"], "field 'image' must be a string"),
    ],
)
def test_pope_field_of_the_wrong_type(tmp_path, field, value, message):
    pope = tmp_path / "coco_pope_random.json"
    pope.write_text(json.dumps({**POPE_LINE, field: value}) + "\n")
    with pytest.raises(BadRecordError, match=rf"coco_pope_random\.json:1: {message}"):
        list(read_pope(pope, "/i"))


@pytest.mark.parametrize(
    "field,value",
    [("answer", ["yes"]), ("question", {"text": "Is it?"}), ("imageId", [1]), ("question_id", 1.5)],
)
def test_gqa_field_of_the_wrong_type(tmp_path, field, value):
    """A GQA answer ["yes"] made a yes/no record an open one; a dict question was stringified."""
    rows = gqa_rows(2, 2, "Animal")
    rows[1][field] = value
    p = tmp_path / "Animal.json"
    p.write_text(json.dumps(rows))
    with pytest.raises(BadRecordError, match=rf"Animal\.json:1: field '{field}' must be a string"):
        list(read_gqa(p, "/i"))
    assert len(list(read_gqa(p, "/i", on_bad=lambda e: None))) == 1


PAIR = {
    "pair_id": "p0",
    "question": "Is there a dog?",
    "clean_image": "c.png",
    "edited_image": "e.png",
    "answer": "yes",
    "edited_answer": "no",
    "candidates": ["yes", "no"],
    "mask_box": [1, 2, 3, 4],
}


@pytest.mark.parametrize(
    "line,message",
    [
        ("null", "expected a JSON object \\(one pair\\), got NoneType"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({**PAIR, "answer": 1}), "field 'answer' must be a non-empty string, got an integer 1"),
        (json.dumps({**PAIR, "pair_id": 7}), "field 'pair_id' must be a non-empty string"),
        (json.dumps({**PAIR, "clean_image": 3}), "field 'clean_image' must be a non-empty string"),
        (json.dumps({**PAIR, "candidates": "yes,no"}), "field 'candidates' must be a list"),
        (
            json.dumps({**PAIR, "candidates": ["yes", 2]}),
            "field 'candidates' must be a list of non-empty strings",
        ),
        (json.dumps({**PAIR, "mask_box": [1, 2, 3]}), "field 'mask_box' must be \\[x, y, width, height\\]"),
        (json.dumps({**PAIR, "mask_box": ["a", 2, 3, 4]}), "field 'mask_box'"),
        (json.dumps({**PAIR, "mask_box": [1, 2, 0, 4]}), "field 'mask_box'"),
        (json.dumps({**PAIR, "mask_box": "1,2,3,4"}), "field 'mask_box' must be a list"),
        (json.dumps({**PAIR, "edit": "recolour"}), "field 'edit' must be an object"),
        (json.dumps({**PAIR, "seed": "3"}), "field 'seed' must be an integer"),
    ],
)
def test_pairs_manifest_field_of_the_wrong_type(tmp_path, line, message):
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(json.dumps(PAIR) + "\n" + line + "\n")
    with pytest.raises(ManifestError, match=rf"pairs\.jsonl:2: {message}"):
        list(read_pairs(manifest))


def test_pairs_manifest_valid_lines_and_non_utf8(tmp_path):
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(
        json.dumps(PAIR) + "\n" + json.dumps({**PAIR, "pair_id": "p1", "mask_box": None}) + "\n"
    )
    pairs = list(read_pairs(manifest))
    assert (
        pairs[0].mask_box == (1, 2, 3, 4)
        and pairs[0].candidates == ("yes", "no")
        and pairs[1].mask_box is None
    )
    manifest.write_bytes(
        json.dumps(PAIR).encode()
        + b"\n"
        + json.dumps({**PAIR, "question": "caf\u00e9?"}, ensure_ascii=False).encode("latin-1")
    )
    with pytest.raises(ManifestError, match=r"pairs\.jsonl:2: not UTF-8"):
        list(read_pairs(manifest))


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
def test_the_record_holding_a_non_utf8_byte_is_flagged_whatever_the_chunking(tmp_path, chunk):
    rows = gqa_rows(4, 2, "Animal")
    rows[2]["question"] = "Is the caf\u00e9 open?"
    p = tmp_path / "Animal.json"
    p.write_bytes(json.dumps(rows, ensure_ascii=False).encode("latin-1"))
    seen: dict[str, bool] = {}
    for index, record in iter_json_items(p, chunk_size=chunk, seen=seen):
        if index == 2:
            assert seen["undecodable"] and "\udce9" in record["question"]
