"""File readers: the real V-SEAM question files, dict-keyed GQA, streamed JSON, and every bad-input error."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from test_data_support import gqa_rows

from tests.release_files import SHARED_DATA as SHARED
from vseam_pl.data import BadRecordError, iter_records
from vseam_pl.data.jsonstream import JSONStreamError, iter_json_items
from vseam_pl.data.readers import read_cocoqa, read_gqa, read_pope

# Only the tests that read the release files need them; the rest build their inputs in tmp_path.
needs_shared = pytest.mark.usefixtures("shared_data")


@needs_shared
@pytest.mark.parametrize("category,n", [("Animal", 1000), ("Material", 1115), ("Spatial", 1000)])
def test_gqa_release_files(category: str, n: int) -> None:
    raw = json.loads((SHARED / "GQA" / f"{category}.json").read_text())
    records = list(read_gqa(SHARED / "GQA" / f"{category}.json", "/imgs"))
    assert len(records) == len(raw) == n
    assert Counter(r.answer for r in records) == Counter(x["answer"].lower() for x in raw)
    level = {"Animal": "object", "Material": "attribute", "Spatial": "relation"}[category]
    r, x = records[5], raw[5]
    assert (r.benchmark, r.category, r.level, r.candidates) == ("gqa", category, level, ("yes", "no"))
    assert (r.question_id, r.question, r.image_id) == (x["question_id"], x["question"], x["imageId"])
    assert r.image_path == f"/imgs/{x['imageId']}.jpg"
    assert r.extra["object_positions"] == x["object_positions"] and r.extra["fullAnswer"] == x["fullAnswer"]
    assert r.source.endswith(f"{category}.json:5")


@needs_shared
@pytest.mark.parametrize(
    "split,n,yes", [("random", 2910, 1500), ("popular", 3000, 1500), ("adversarial", 3000, 1500)]
)
def test_pope_release_files(split: str, n: int, yes: int) -> None:
    records = list(iter_records("pope", str(SHARED), splits=[split]))
    assert len(records) == n
    assert Counter(r.answer for r in records) == {"yes": yes, "no": n - yes}
    assert {r.category for r in records} == {split} and {r.candidates for r in records} == {("yes", "no")}
    first = json.loads((SHARED / "POPE" / f"coco_pope_{split}.json").open().readline())
    r = records[0]
    assert (r.question, r.image_id, r.question_id) == (first["text"], first["image"][:-4], f"{split}-1")
    assert r.image_path.endswith(first["image"]) and r.source.endswith(f"coco_pope_{split}.json:1")


@needs_shared
@pytest.mark.parametrize("qtype,n", [("color", 13113), ("count", 5711), ("location", 4799)])
def test_cocoqa_release_files(qtype: str, n: int) -> None:
    with open(SHARED / "COCOQA" / f"{qtype}_coco_qa.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    records = list(iter_records("cocoqa", str(SHARED), types=[qtype]))
    assert len(records) == n
    assert Counter(r.answer for r in records) == Counter(row[3].lower() for row in rows)
    r = records[1]
    assert (r.category, r.candidates, r.question, r.image_id) == (qtype, None, rows[1][2], rows[1][1])
    assert r.image_path.endswith(f"COCO_train2014_{int(rows[1][1]):012d}.jpg")
    assert r.source.endswith(f"{qtype}_coco_qa.csv:3")  # header is line 1


@needs_shared
def test_gqa_scene_graph_file_is_not_read_as_questions() -> None:
    cats = Counter(r.category for r in iter_records("gqa", str(SHARED)))
    assert cats == {"Animal": 1000, "Material": 1115, "Spatial": 1000}
    assert Counter(r.level for r in iter_records("gqa", str(SHARED), levels=["relation"])) == {
        "relation": 1000
    }


def test_gqa_dict_keyed_file_matches_list_file(tmp_path) -> None:
    rows = gqa_rows(25, 7, "Animal")
    (tmp_path / "list").mkdir()
    (tmp_path / "dict").mkdir()
    (tmp_path / "list" / "Animal.json").write_text(json.dumps(rows))
    for r in rows[::2]:
        del r["question_id"]  # official files carry the id only as the key
    (tmp_path / "dict" / "Animal.json").write_text(
        json.dumps({str(i): r for i, r in enumerate(rows)}, indent=1)
    )
    listed = list(read_gqa(tmp_path / "list" / "Animal.json", "/i"))
    keyed = list(read_gqa(tmp_path / "dict" / "Animal.json", "/i"))
    assert len(keyed) == 25 and keyed[0].source.endswith("Animal.json:0") and keyed[0].question_id == "0"
    assert [(r.question, r.answer, r.image_id) for r in keyed] == [
        (r.question, r.answer, r.image_id) for r in listed
    ]


@pytest.mark.parametrize(
    "doc", [[], {}, [1, {"a": [1, 2.5e3, "x,]}"]}, None, True, -7], {"k": {"n": 12345678901}}]
)
@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_json_stream_matches_json_load(tmp_path, doc, chunk: int) -> None:
    p = tmp_path / "d.json"
    p.write_text(json.dumps(doc, indent=2))
    items = list(iter_json_items(p, chunk_size=chunk))
    expected = list(doc.items()) if isinstance(doc, dict) else list(enumerate(doc))
    assert items == expected


@pytest.mark.parametrize(
    "text,where",
    [
        ('[{"a": 1}, {"a": ]', "character"),
        ('[{"a": 1} {"a": 2}]', "after record 0"),
        ('"just a string"', "start of the document"),
        ('{"k": 1, 2: 3}', "record 1"),
    ],
)
def test_json_stream_malformed(tmp_path, text: str, where: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(JSONStreamError, match=rf"bad\.json: malformed JSON.*{where}"):
        list(iter_json_items(p, chunk_size=5))


def test_gqa_malformed_document_is_fatal_even_in_skip_mode(tmp_path) -> None:
    p = tmp_path / "Animal.json"
    p.write_text(json.dumps(gqa_rows(3, 2, "Animal"))[:-30])
    with pytest.raises(BadRecordError, match=r"Animal\.json.*malformed JSON.*cannot be skipped"):
        list(read_gqa(p, "/i", on_bad=lambda e: None))


def test_missing_fields_name_file_record_and_field(tmp_path) -> None:
    rows = gqa_rows(4, 2, "Animal")
    del rows[2]["imageId"]
    p = tmp_path / "Animal.json"
    p.write_text(json.dumps(rows))
    with pytest.raises(BadRecordError, match=r"Animal\.json:2: missing required field 'imageId'"):
        list(read_gqa(p, "/i"))
    seen: list[BadRecordError] = []
    assert len(list(read_gqa(p, "/i", on_bad=seen.append))) == 3
    assert [e.source for e in seen] == [f"{p}:2"]

    pope = tmp_path / "coco_pope_random.json"
    pope.write_text(
        '{"question_id": 1, "image": "a.jpg", "text": "Q?", "label": "yes"}\n'
        '{"question_id": 2, "image": "a.jpg", "text": "Q?", "label": "yes"\n'
        '{"question_id": 3, "image": "a.jpg", "label": "no"}\n'
        '{"question_id": 4, "image": "a.jpg", "text": "Q?", "label": "maybe"}\n'
    )
    with pytest.raises(BadRecordError, match=r"coco_pope_random\.json:2: malformed JSON line"):
        list(read_pope(pope, "/i"))
    seen.clear()
    assert [r.question_id for r in read_pope(pope, "/i", on_bad=seen.append)] == ["random-1"]
    assert [(e.source.rsplit(":", 1)[1], e.reason.split(" (")[0]) for e in seen] == [
        ("2", "malformed JSON line"),
        ("3", "missing required field 'text'"),
        ("4", "field 'label' must be 'yes' or 'no', got 'maybe'"),
    ]


def test_cocoqa_bad_header_rows_and_pattern(tmp_path) -> None:
    p = tmp_path / "color_coco_qa.csv"
    p.write_text("idx,image,question,answer\n0,1,what,red\n")
    with pytest.raises(BadRecordError, match=r"color_coco_qa\.csv:1: expected the COCO-QA header"):
        list(read_cocoqa(p, "/i"))
    p.write_text(
        ",train_image_id_count,question_count,answer_count\n0,1,what,red\n1,2,what\n2,,what,blue\n3,x7,q,a\n"
    )
    with pytest.raises(BadRecordError, match=r"color_coco_qa\.csv:3: expected 4 columns"):
        list(read_cocoqa(p, "/i"))
    seen: list[BadRecordError] = []
    kept = list(read_cocoqa(p, "/i", on_bad=seen.append))
    assert [r.question_id for r in kept] == ["color-0"] and kept[
        0
    ].image_path == "/i/COCO_train2014_000000000001.jpg"
    assert [e.source.rsplit(":", 1)[1] for e in seen] == ["3", "4", "5"]
    assert "missing required field 'train_image_id_count'" in str(seen[1])
    assert "does not fit image_pattern" in str(seen[2])
    assert [r.image_path for r in read_cocoqa(p, "/i", pattern="{id}.png", on_bad=seen.append)][
        -1
    ] == "/i/x7.png"
