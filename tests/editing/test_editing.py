"""Visual semantic editing: edit planning on the real V-SEAM files, masks, inpainting + compositing with a tiny
random-weight diffusers pipeline (loaded by path through the same code path as a hub id), manifest, resume, filters
and the CLI. The tiny pipeline paints noise; everything around it is real."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.release_files import release_file
from vseam_pl.data.readers import BadRecordError
from vseam_pl.edit import cli as edit_cli
from vseam_pl.edit import main as edit_main
from vseam_pl.editing import (
    EditPlanner,
    EditSettings,
    EditVocab,
    Inpainter,
    Refusal,
    VocabError,
    box_mask,
    check_region,
    load_inpaint_pipeline,
    load_user_mask,
    outside_change,
    read_gqa_questions,
    read_scene_graphs,
    run_edits,
    soft_mask,
)
from vseam_pl.editing.gqa import GQAFormatError
from vseam_pl.editing.tiny_pipeline import main as tiny_main
from vseam_pl.pairs import read_pairs
from vseam_pl.records import ImagePair

SIZE = 64


# ---------------------------------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Path:
    """A random-weight StableDiffusionInpaintPipeline (9-channel UNet) saved to a folder by the package's CLI."""
    return tiny_main([str(tmp_path_factory.mktemp("tiny-inpaint") / "pipeline")])


@pytest.fixture(scope="session")
def tiny_pipe(tiny_pipeline_dir):
    """Loaded by path through `AutoPipelineForInpainting`, exactly as a hub id would be."""
    return load_inpaint_pipeline(tiny_pipeline_dir, device="cpu", dtype="float32")


def _record(
    qid: str,
    image_id: str,
    question: str,
    names: list[str],
    boxes: list[tuple[int, int, int, int]],
    answer: str = "Yes",
    semantic: str = "obj",
    program: list[dict] | None = None,
    full_answer: str = "",
) -> dict:
    """A question in the GQA/V-SEAM release schema; `boxes` are given in the order of `names`."""
    key = "relevant_objects" if semantic == "obj" else "involved_objects"
    if (
        program is None and semantic == "rel"
    ):  # GQA's form: select the object, relate the subject to it (",s")
        relation = question.split(f" {names[0]} ", 1)[1].rsplit(" the ", 1)[0]
        program = [
            {"operation": "select", "dependencies": [], "argument": f"{names[1]} (200{qid[-1]})"},
            {
                "operation": "relate",
                "dependencies": [0],
                "argument": f"{names[0]},{relation},s (100{qid[-1]})",
            },
        ]
        boxes = boxes[1::-1] + boxes[2:]  # object_positions follow the program: object first, then subject
    program = program or [
        {"operation": "select", "dependencies": [], "argument": f"{names[0]} (100{qid[-1]})"}
    ]
    return {
        "semantic": program,
        "question": question,
        "imageId": image_id,
        "answer": answer,
        "types": {"detailed": "x", "semantic": semantic, "structural": "verify"},
        "fullAnswer": full_answer,
        "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
        key: names,
        "question_id": qid,
        "object_positions": [{"x": x, "y": y, "w": w, "h": h} for x, y, w, h in boxes],
    }


@pytest.fixture()
def gqa(tmp_path) -> dict:
    """Three categories of small questions with 64x64 stand-in images (Animal as an id-keyed object)."""
    images = tmp_path / "images"
    images.mkdir()
    animal = {
        "a1": _record("a1", "img1", "Is there a dog in this picture?", ["dog"], [(8, 10, 20, 24)]),
        "a2": _record(
            "a2", "img2", "Is there a gizmo in this picture?", ["gizmo"], [(5, 5, 10, 10)], answer="No"
        ),
    }
    material = [
        _record(
            "m1",
            "img2",
            "Is the table made of wood?",
            ["table"],
            [(30, 30, 20, 16)],
            semantic="attr",
            full_answer="The table is made of wood.",
        ),
        _record(
            "m2",
            "img1",
            "Is the chair made of metal?",
            ["chair"],
            [(2, 40, 16, 16)],
            answer="No",
            semantic="attr",
            full_answer="No, the chair is made of plastic.",
        ),
    ]
    spatial = [
        _record(
            "s1",
            "img3",
            "Is the cat to the left of the car?",
            ["cat", "car"],
            [(4, 20, 12, 12), (40, 18, 18, 20)],
            semantic="rel",
        ),
    ]
    rng = np.random.RandomState(0)
    for image_id in ("img1", "img2", "img3"):
        Image.fromarray(rng.randint(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(images / f"{image_id}.png")
    (tmp_path / "Animal.json").write_text(json.dumps(animal))
    (tmp_path / "Material.json").write_text(json.dumps(material))
    (tmp_path / "Spatial.json").write_text(json.dumps(spatial))
    files = [tmp_path / f"{c}.json" for c in ("Animal", "Material", "Spatial")]
    records = [r for f in files for r in read_gqa_questions(f, images)]
    return {"root": tmp_path, "images": images, "files": files, "records": records}


# ---------------------------------------------------------------------------------------------------- planning
@pytest.mark.parametrize("category", ["Animal", "Material", "Spatial"])
def test_prompt_generation_on_every_shared_record(category):
    path = release_file("GQA", f"{category}.json")
    records = read_gqa_questions(path)
    planner = EditPlanner(EditVocab.load(), seed=0)
    plans, unresolved = planner.plan_all(records)
    rate = len(plans) / len(records)
    print(
        f"{category}: substitute for {len(plans)}/{len(records)} records ({rate:.1%}); unresolved {unresolved[:5]}"
    )
    assert rate >= 0.98
    assert len(plans) + len(unresolved) == len(records)
    assert all(r.reason.strip() and r.kind.strip() for r in unresolved)
    expected_level = {"Animal": "object", "Material": "attribute", "Spatial": "relation"}[category]
    for plan in plans:
        assert plan.level == expected_level
        assert plan.substitute and plan.substitute.lower() != plan.target.lower()
        assert plan.substitute in plan.prompt
        assert plan.boxes and all(w > 0 and h > 0 for _, _, w, h in plan.boxes)
        assert plan.edited_answer == {"yes": "no", "no": "yes"}[plan.record.answer]
    # deterministic per seed, independent of record order; another seed picks other substitutes
    again = {p.record.question_id: p for p in planner.plan_all(reversed(records))[0]}
    assert all(again[p.record.question_id] == p for p in plans)
    other = EditPlanner(EditVocab.load(), seed=1).plan_all(records)[0]
    if expected_level != "relation":  # spatial relations mostly have a single opposite
        assert sum(a.substitute != b.substitute for a, b in zip(plans, other, strict=True)) > len(plans) // 4


def test_edit_prompts_per_level(gqa):
    plans, unresolved = EditPlanner(EditVocab.load(), seed=3).plan_all(gqa["records"])
    by_id = {p.record.question_id: p for p in plans}
    dog = by_id["a1"]
    assert (
        dog.target == "dog"
        and dog.group == "animals"
        and dog.substitute in EditVocab.load().data["object"]["animals"]
    )
    assert (
        dog.edited_question
        == f"Is there {'an' if dog.substitute[0] in 'aeiou' else 'a'} {dog.substitute} in this picture?"
    )
    assert dog.boxes == ((8, 10, 20, 24),) and "dog" in dog.negative_prompt
    wood = by_id["m1"]
    assert (wood.target, wood.edited_answer) == ("wood", "no") and wood.prompt.endswith(
        f"table made of {wood.substitute}"
    )
    # a "no" record is edited the other way: paint in the asked material (observed one from fullAnswer)
    metal = by_id["m2"]
    assert (metal.target, metal.substitute, metal.edited_answer) == ("plastic", "metal", "yes")
    rel = by_id["s1"]
    assert (rel.target, rel.substitute) == ("to the left of", "to the right of")
    assert rel.edited_question == "Is the cat to the right of the car?"
    assert rel.boxes == ((4, 20, 12, 12), (40, 18, 18, 20))
    assert EditPlanner(EditVocab.load(), relation_region="subject").plan(rel.record).boxes == (
        (4, 20, 12, 12),
    )


def test_edit_prompts_for_categories_without_a_shared_file(tmp_path):
    """Action, Vehicle, Indoor and Color records (the release's other categories) in the same schema."""
    two = [(1, 1, 5, 5), (3, 3, 8, 8)]
    files = {
        "Action": [_record("x1", "i", "Is the man riding the horse?", ["man", "horse"], two, semantic="rel")],
        "Vehicle": [_record("v1", "i", "Is there a bus in this picture?", ["bus"], two[:1])],
        "Indoor": [_record("n1", "i", "Are there chairs in the image?", ["chairs"], two[:1])],
        "Color": [
            _record("c1", "i", "Is the car red?", ["car"], two[:1], semantic="attr"),
            _record(
                "c2",
                "i",
                "Is the shirt blue?",
                ["shirt"],
                two[:1],
                answer="No",
                semantic="attr",
                full_answer="No, the shirt is white.",
            ),
        ],
    }
    vocab = EditVocab.load()
    plans = {}
    for category, records in files.items():
        (tmp_path / f"{category}.json").write_text(json.dumps(records))
        done, unresolved = EditPlanner(vocab, seed=0).plan_all(
            read_gqa_questions(tmp_path / f"{category}.json")
        )
        assert not unresolved
        plans.update({p.record.question_id: p for p in done})
    ride = plans["x1"]
    assert (ride.level, ride.group, ride.target) == ("relation", "action", "riding")
    assert ride.substitute in vocab.data["relation"]["action"]["riding"]  # the curated alternatives
    assert ride.edited_question == f"Is the man {ride.substitute} the horse?" and ride.boxes == tuple(two)
    bus = plans["v1"]
    assert (
        bus.group == "vehicles"
        and bus.substitute in vocab.data["object"]["vehicles"]
        and bus.substitute != "bus"
    )
    chairs = plans["n1"]  # a plural mention gets a plural substitute
    assert chairs.group == "indoor" and chairs.substitute.endswith("s") and chairs.substitute != "chairs"
    red, blue = plans["c1"], plans["c2"]
    assert (red.target, red.edited_answer) == ("red", "no") and red.substitute in vocab.data["attribute"][
        "color"
    ]
    assert red.prompt.endswith(f"{red.substitute} car")
    assert (blue.target, blue.substitute, blue.edited_answer) == ("white", "blue", "yes")


def test_scene_graph_gives_boxes_attributes_and_excludes_present_objects(tmp_path):
    path = release_file("GQA", "scene_graph_example.json")
    graphs = read_scene_graphs(path)
    questions = [
        _record(
            "c1",
            "2353884",
            "Are the shorts blue?",
            ["shorts"],
            [],
            answer="No",
            semantic="attr",
            program=[
                {"operation": "select", "dependencies": [], "argument": "shorts (3576178)"},
                {"operation": "verify color", "dependencies": [0], "argument": "blue"},
            ],
        ),
        _record(
            "c2",
            "2353884",
            "Is there a man in this picture?",
            ["man"],
            [],
            program=[{"operation": "select", "dependencies": [], "argument": "man (2449847)"}],
        ),
    ]
    (tmp_path / "Color.json").write_text(json.dumps(questions[:1]))
    (tmp_path / "Animal.json").write_text(json.dumps(questions[1:]))  # any object-level category
    (shorts,), (man,) = (
        read_gqa_questions(tmp_path / "Color.json"),
        read_gqa_questions(tmp_path / "Animal.json"),
    )
    planner = EditPlanner(EditVocab.load(), scene_graphs=graphs)
    plan = planner.plan(shorts)
    assert (plan.level, plan.group, plan.target, plan.substitute) == ("attribute", "color", "gray", "blue")
    assert plan.boxes == ((300, 148, 62, 111),) and plan.edited_answer == "yes"
    assert planner.plan(man).boxes == ((237, 33, 174, 228),)
    # every person word but "girl" is in the image's scene graph, so "girl" is the only valid substitute
    people = EditVocab.load().data["object"]["people"]
    crowd = {
        "2353884": {
            "objects": {
                str(i): {"name": n, "x": 0, "y": 0, "w": 1, "h": 1}
                for i, n in enumerate(people)
                if n != "girl"
            }
        }
    }
    crowd["2353884"]["objects"]["2449847"] = graphs["2353884"]["objects"]["2449847"]
    assert EditPlanner(EditVocab.load(), scene_graphs=crowd).plan(man).substitute == "girl"


def test_unresolvable_records_are_reported_with_reasons(gqa):
    records = read_gqa_questions(gqa["files"][0], gqa["images"])
    base = records[0]
    broken = [
        replace(base, question_id="no1", answer="no"),
        replace(base, question_id="nobox", extra={**base.extra, "object_positions": []}),
        replace(base, question_id="lvl", level=None),
    ]
    plans, unresolved = EditPlanner(EditVocab.load()).plan_all(records + broken)
    reasons = {r.question_id: r.reason for r in unresolved}
    assert [p.record.question_id for p in plans] == ["a1"]
    assert "answer is 'no'" in reasons["a2"]
    assert Counter(r.kind for r in unresolved) == {
        "object answer is 'no'": 2,
        "no box": 1,
        "unknown level": 1,  # summary counts kinds, not words or paths
    }
    assert "answer is 'no'" in reasons["no1"]
    assert "no box for 'dog'" in reasons["nobox"]
    assert "unknown level" in reasons["lvl"]


def test_user_vocabulary_is_merged(gqa, tmp_path):
    user = tmp_path / "my_vocab.json"
    user.write_text(json.dumps({"object": {"indoor": {"gizmo": ["gadget"]}}}))
    vocab = EditVocab.load(user)
    plans, unresolved = EditPlanner(vocab).plan_all(gqa["records"])
    assert {r.question_id for r in unresolved} == {"a2"}  # answered "no": nothing to replace, vocab or not
    assert vocab.find("gadgets", "object").canonical == "gizmo"
    assert "dog" in vocab.data["object"]["animals"]  # the packaged groups are kept
    user.write_text(json.dumps({"object": {"toys": {"kitten": []}}}))  # already an alias of cat
    with pytest.raises(VocabError, match=r"my_vocab\.json.*'kitten' is listed under both"):
        EditVocab.load(user)
    user.write_text("[1, 2]")
    with pytest.raises(VocabError, match=r"my_vocab\.json: expected a JSON object"):
        EditVocab.load(user)


def test_overlapping_objects_never_substitute_each_other(tmp_path):
    """A swan painted for "Is there a bird?" would leave the answer "yes": kinds/roles are excluded both ways."""
    vocab = EditVocab.load()
    bird, swan = vocab.find("bird", "object"), vocab.find("swans", "object")
    assert bird.group == swan.group == "animals"
    assert not {"duck", "swan", "owl", "chicken"} & set(
        vocab.substitutes(bird)
    ) and "dog" in vocab.substitutes(bird)
    assert "bird" not in vocab.substitutes(swan) and "duck" in vocab.substitutes(swan)
    assert set(vocab.substitutes(vocab.find("man", "object"))) == {"woman", "boy", "girl", "child", "baby"}
    (tmp_path / "Indoor.json").write_text(
        json.dumps(
            [
                _record("p1", "i", "Is there a person in this picture?", ["person"], [(1, 1, 4, 4)]),
                _record("b1", "i", "Is there a bird in this picture?", ["bird"], [(1, 1, 4, 4)]),
            ]
        )
    )
    plans, unresolved = EditPlanner(vocab).plan_all(read_gqa_questions(tmp_path / "Indoor.json"))
    assert [p.record.question_id for p in plans] == ["b1"] and plans[0].substitute not in ("swan", "duck")
    assert unresolved == [
        Refusal(
            "p1", "no substitute", "no substitute for 'person' in the vocabulary (all candidates excluded)"
        )
    ]
    user = tmp_path / "v.json"
    user.write_text(json.dumps({"object_overlaps": {"bird": ["dragon"]}}))
    with pytest.raises(
        VocabError, match=r"v\.json: object_overlaps.'bird' names 'dragon', which is no object term"
    ):
        EditVocab.load(user)


def test_bad_gqa_inputs_name_file_record_and_field(tmp_path):
    bad = tmp_path / "Animal.json"
    bad.write_text(json.dumps([{"question": "Is there a dog?", "answer": "yes"}]))
    with pytest.raises(BadRecordError, match=r"Animal\.json:0: missing required field 'imageId'"):
        read_gqa_questions(bad)
    bad.write_text("{not json")
    with pytest.raises(BadRecordError, match=r"Animal\.json.*malformed JSON"):
        read_gqa_questions(bad)
    with pytest.raises(FileNotFoundError, match=r"Nope\.json: question file not found"):
        read_gqa_questions(tmp_path / "Nope.json")
    graphs = tmp_path / "graphs.json"
    graphs.write_text(json.dumps({"img1": {"objects": {"7": {"name": "dog", "x": 1, "y": 2, "w": 3}}}}))
    with pytest.raises(GQAFormatError, match=r"graphs\.json: image 'img1' object '7' lacks \['h'\]"):
        read_scene_graphs(graphs)
    graphs.write_text(json.dumps({"img1": {"width": 5}}))
    with pytest.raises(GQAFormatError, match=r"graphs\.json: image 'img1' needs an 'objects' mapping"):
        read_scene_graphs(graphs)


# ---------------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize(("dilate", "feather"), [(0, 0), (3, 0), (3, 2), (5, 4)])
def test_mask_matches_box_with_dilation_and_feather(dilate, feather):
    box = (10, 12, 20, 8)
    binary = box_mask((SIZE, SIZE), [box])
    assert binary.sum() == 20 * 8 and binary[12:20, 10:30].all()
    alpha = soft_mask(binary, dilate, feather)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    dx = np.maximum.reduce([10 - xx, np.zeros_like(xx), xx - 29])
    dy = np.maximum.reduce([12 - yy, np.zeros_like(yy), yy - 19])
    dist = np.sqrt(dx**2 + dy**2)  # Euclidean px distance to the box
    assert (alpha[dist <= dilate] == 1).all()
    assert (alpha[dist >= dilate + max(feather, 1e-9)] == 0).all()
    ramp = (dist > dilate) & (dist < dilate + feather)
    if feather:
        assert ramp.any() and np.allclose(alpha[ramp], 1 - (dist[ramp] - dilate) / feather, atol=1e-5)
    # clipping at the border
    assert box_mask((SIZE, SIZE), [(-5, 60, 10, 10)]).sum() == 5 * 4


def test_user_mask_must_match_image_size(tmp_path):
    Image.new("L", (10, 10), 255).save(tmp_path / "q.png")
    assert load_user_mask(tmp_path / "q.png", (10, 10)).all()
    with pytest.raises(ValueError, match=r"q\.png: mask is 10x10 but the image is 64x64"):
        load_user_mask(tmp_path / "q.png", (SIZE, SIZE))


# ---------------------------------------------------------------------------------------------------- inpainting
def test_inpainting_changes_only_the_masked_region(tiny_pipe):
    rng = np.random.RandomState(1)
    image = Image.fromarray(rng.randint(0, 255, (50, 70, 3), dtype=np.uint8))  # not a multiple of 8: resized
    alpha = soft_mask(box_mask(image.size, [(20, 10, 15, 12)]), dilate=2, feather=3)
    inpainter = Inpainter(tiny_pipe, steps=2, guidance=7.5, resolution=SIZE // 2)
    edited = inpainter(image, alpha, "a photo of a cat", "dog", seed=0)
    assert edited.size == image.size and inpainter.calls == 1
    a, b = np.asarray(image), np.asarray(edited)
    assert np.array_equal(a[alpha == 0], b[alpha == 0])
    assert outside_change(image, edited, alpha) == 0
    assert np.abs(a.astype(int) - b)[alpha == 1].mean() > 5  # the noise model did repaint the box
    assert check_region(image, edited, alpha, min_inside=1.0) is None
    tampered = b.copy()
    tampered[0, 0] ^= 0xFF
    assert "outside the mask changed" in check_region(image, Image.fromarray(tampered), alpha)
    again = inpainter(image, alpha, "a photo of a cat", "dog", seed=0)
    assert np.array_equal(np.asarray(again), b)  # seeded


def _answer_exact_clean(clean_dir: Path):
    """A stand-in VLM: "yes" exactly for unedited clean images, "no" for anything else."""
    cleans = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(clean_dir.glob("*.png"))]

    def answer(questions, images, candidates):
        assert len(questions) == len(images) == len(candidates)
        return ["yes" if any(np.array_equal(np.asarray(im), c) for c in cleans) else "no" for im in images]

    return answer


def test_job_writes_pairs_manifest_round_trips_and_resumes(gqa, tiny_pipe, tmp_path):
    out = tmp_path / "out"
    planner = EditPlanner(EditVocab.load(), seed=0)
    plans, unresolved = planner.plan_all(gqa["records"])
    inpainter = Inpainter(tiny_pipe, steps=2, resolution=SIZE // 2)
    settings = EditSettings(dilate=2, feather=2, check_outside=True, model_id="tiny")
    report = run_edits(plans, out, inpainter, settings, unresolved=unresolved, progress=False)
    assert (report.generated, report.written, report.resumed, inpainter.calls) == (4, 4, 0, 4)
    assert json.loads((out / "unresolved.json").read_text()) == [
        {"question_id": "a2", "kind": unresolved[0].kind, "reason": unresolved[0].reason}
    ]
    pairs = list(read_pairs(out / "pairs.jsonl"))
    assert all(isinstance(p, ImagePair) for p in pairs)
    assert [p.pair_id for p in pairs] == [p.pair_id for p in plans]
    by_id = {p.pair_id: p for p in pairs}
    m1 = by_id["m1"]
    assert m1.clean_image == str(out / "clean" / "img2.png") and m1.edited_image == str(
        out / "edited" / "m1.png"
    )
    assert (m1.answer, m1.edited_answer, m1.level, m1.category, m1.candidates) == (
        "yes",
        "no",
        "attribute",
        "Material",
        ("yes", "no"),
    )
    assert m1.edit["target"] == "wood" and {
        "level",
        "substitute",
        "prompt",
        "negative_prompt",
        "steps",
        "guidance",
    } <= set(m1.edit)
    assert (m1.edit["steps"], m1.model_id, m1.mask_box) == (2, "tiny", (27, 27, 26, 22))
    for pair in pairs:
        clean, edited = (
            Image.open(pair.clean_image).convert("RGB"),
            Image.open(pair.edited_image).convert("RGB"),
        )
        original = Image.open(gqa["images"] / Path(pair.clean_image).name).convert("RGB")
        assert np.array_equal(np.asarray(clean), np.asarray(original))
        alpha = np.asarray(Image.open(out / "masks" / f"{pair.pair_id}.png")) / 255.0
        assert outside_change(clean, edited, alpha) == 0
        x, y, w, h = pair.mask_box
        outside = np.ones(alpha.shape, bool)
        outside[y : y + h, x : x + w] = False
        assert np.array_equal(np.asarray(clean)[outside], np.asarray(edited)[outside])
    # resume: nothing is redone; a pair whose image vanished is redone once, without duplicate lines
    again = run_edits(plans, out, inpainter, settings, progress=False)
    assert (again.generated, again.resumed, inpainter.calls) == (0, 4, 4)
    (out / "edited" / "s1.png").unlink()
    third = run_edits(plans, out, inpainter, settings, progress=False)
    assert (third.generated, third.resumed, inpainter.calls) == (1, 3, 5)
    ids = [p.pair_id for p in read_pairs(out)]
    assert sorted(ids) == sorted(by_id) and len(ids) == len(set(ids))


def test_user_masks_replace_boxes(gqa, tiny_pipe, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    user = np.zeros((SIZE, SIZE), np.uint8)
    user[40:50, 44:60] = 255  # far from a1's dog box (8, 10, 20, 24)
    Image.fromarray(user).save(masks / "a1.png")
    record = gqa["records"][0]
    record.extra["object_positions"] = []  # with a user mask, no box is needed
    planner = EditPlanner(EditVocab.load(), user_masks={"a1"})
    plan = planner.plan(record)
    assert plan.boxes == ()
    out = tmp_path / "out"
    run_edits(
        [plan],
        out,
        Inpainter(tiny_pipe, steps=2, resolution=SIZE // 2),
        EditSettings(dilate=1, feather=0, masks=str(masks)),
        progress=False,
    )
    (pair,) = read_pairs(out)
    assert pair.edit["mask_source"] == "user" and pair.mask_box == (43, 39, 18, 12)
    clean = np.asarray(Image.open(pair.clean_image).convert("RGB"))
    edited = np.asarray(Image.open(pair.edited_image).convert("RGB"))
    changed = np.abs(clean.astype(int) - edited).sum(-1) > 0
    assert changed[40:50, 44:60].mean() > 0.5 and not changed[:38].any() and not changed[:, :42].any()


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_photo_is_edited_as_displayed(tiny_pipe, tmp_path, orientation):
    """A phone JPEG stored 48x32 with EXIF orientation 6/8 displays 32x48: the box (2, 30, 10, 12) is in displayed
    coordinates (it lies outside the stored frame), and clean and edited images are written upright and alike."""
    images = tmp_path / "images"
    images.mkdir()
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :]  # left-right ramp: shows the rotation
    stored[..., 1] = np.linspace(0, 255, 32, dtype=np.uint8)[:, None]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(images / "phone.jpg", "JPEG", quality=95, exif=exif.tobytes())
    (tmp_path / "Animal.json").write_text(
        json.dumps(
            [
                _record("e1", "phone", "Is there a dog in this picture?", ["dog"], [(2, 30, 10, 12)]),
            ]
        )
    )
    (record,) = read_gqa_questions(tmp_path / "Animal.json", images)
    plan = EditPlanner(EditVocab.load()).plan(record)
    out = tmp_path / "out"
    report = run_edits(
        [plan],
        out,
        Inpainter(tiny_pipe, steps=2, resolution=32),
        EditSettings(dilate=0, feather=0, check_outside=True),
        progress=False,
    )
    assert report.written == 1, report.summary()
    (pair,) = read_pairs(out)
    with Image.open(images / "phone.jpg") as raw:
        assert raw.size == (48, 32)
        upright = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"))
    rotated = np.rot90(
        np.asarray(Image.open(images / "phone.jpg").convert("RGB")), -1 if orientation == 6 else 1
    )
    assert np.array_equal(upright, rotated)  # the reference: PIL's own transpose is the expected rotation
    clean_img, edited_img = Image.open(pair.clean_image), Image.open(pair.edited_image)
    assert clean_img.format == "PNG" and clean_img.getexif().get(0x0112) in (None, 1)
    assert clean_img.size == edited_img.size == (32, 48) and pair.mask_box == (2, 30, 10, 12)
    clean, edited = np.asarray(clean_img.convert("RGB")), np.asarray(edited_img.convert("RGB"))
    assert np.array_equal(clean, upright)
    changed = np.abs(clean.astype(int) - edited).sum(-1) > 0
    assert not changed[:30].any() and not changed[:, 12:].any() and changed[30:42, 2:12].mean() > 0.5
    mask = np.asarray(Image.open(out / "masks" / "e1.png")) > 0
    assert mask[30:42, 2:12].all() and mask.sum() == 10 * 12


def test_vseam_filter_keeps_pairs_the_vlm_sees_differently(gqa, tiny_pipe, tmp_path):
    plans, _ = EditPlanner(EditVocab.load()).plan_all(gqa["records"])
    plans = [p for p in plans if p.record.answer == "yes"]  # a1, m1, s1
    inpainter = Inpainter(tiny_pipe, steps=2, resolution=SIZE // 2)
    out = tmp_path / "keep"
    exact, batches = _answer_exact_clean(gqa["images"]), []

    def counted(questions, images, candidates):
        batches.append(len(images))
        return exact(questions, images, candidates)

    settings = EditSettings(filter_batch_size=2)
    report = run_edits(plans, out, inpainter, settings, answer_fn=counted, progress=False)
    assert (report.written, len(report.rejected)) == (3, 0)
    assert batches == [4, 2]  # pairs are judged two at a time, clean + edited image each

    def always_yes(questions, images, candidates):
        return ["Yes."] * len(questions)

    out = tmp_path / "stubborn"
    report = run_edits(plans, out, inpainter, answer_fn=always_yes, progress=False)
    assert (report.written, len(report.rejected)) == (0, 3)
    assert "same as the clean one" in report.rejected[0][1]
    assert json.loads((out / "summary.json").read_text())["rejected"] == 3
    assert not (out / "pairs.jsonl").exists()
    lines = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [x["pair_id"] for x in lines] == [p.pair_id for p in plans]
    calls = inpainter.calls
    assert run_edits(plans, out, inpainter, answer_fn=always_yes, progress=False).resumed == 3
    assert inpainter.calls == calls  # rejected pairs are not redone on resume

    def always_no(questions, images, candidates):
        return ["no"] * len(questions)

    report = run_edits(plans, tmp_path / "blind", inpainter, answer_fn=always_no, progress=False)
    assert all("answers the clean image 'no', expected 'yes'" in r for _, r in report.rejected)


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_end_to_end(gqa, tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [
        "--questions",
        *map(str, gqa["files"]),
        "--images",
        str(gqa["images"]),
        "--out",
        str(out),
        "--pipeline",
        str(tiny_pipeline_dir),
        "--steps",
        "2",
        "--guidance",
        "5",
        "--seed",
        "7",
        "--dilate",
        "2",
        "--feather",
        "1",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--resolution",
        "32",
        "--levels",
        "object",
        "relation",
        "--check-outside",
        "--no-progress",
    ]
    report = edit_main(argv)
    captured = capsys.readouterr()
    assert "2 pairs written" in captured.err and "1 unresolved" in captured.err
    assert json.loads(captured.out)["unresolved_reasons"] == {"object answer is 'no'": 1}
    assert [(r.question_id, r.kind) for r in report.unresolved] == [("a2", "object answer is 'no'")]
    assert json.loads(captured.out)["planned_with_notes"] == 0  # s1's question follows its program
    pairs = list(read_pairs(out))
    assert sorted(p.pair_id for p in pairs) == ["a1", "s1"]
    assert all(p.edit["guidance"] == 5.0 and p.model_id == str(tiny_pipeline_dir) for p in pairs)
    assert edit_main(argv).resumed == 2


def test_cli_vocab_masks_and_scene_graphs(gqa, tiny_pipeline_dir, tmp_path, capsys):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"object": {"indoor": {"gizmo": ["gadget"]}}}))  # gizmo: an indoor object
    animal = json.loads(gqa["files"][0].read_text())
    animal["a2"]["answer"] = "Yes"  # a gizmo the image has, so it can be replaced
    gqa["files"][0].write_text(json.dumps(animal))
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.pad(np.full((6, 6), 255, np.uint8), ((50, 8), (50, 8)))).save(masks / "a1.png")
    graphs = (
        tmp_path / "graphs.json"
    )  # a2's program selects "gizmo (1002)": its box comes from the scene graph
    graphs.write_text(
        json.dumps(
            {
                "img2": {
                    "width": SIZE,
                    "height": SIZE,
                    "objects": {"1002": {"name": "gizmo", "x": 40, "y": 40, "w": 10, "h": 12}},
                }
            }
        )
    )
    out = tmp_path / "cli"
    edit_main(
        [
            "--questions",
            str(gqa["files"][0]),
            "--images",
            str(gqa["images"]),
            "--out",
            str(out),
            "--pipeline",
            str(tiny_pipeline_dir),
            "--steps",
            "2",
            "--resolution",
            "32",
            "--device",
            "cpu",
            "--vocab",
            str(vocab),
            "--masks",
            str(masks),
            "--scene-graphs",
            str(graphs),
            "--dilate",
            "0",
            "--feather",
            "0",
            "--no-progress",
        ]
    )
    capsys.readouterr()
    pairs = {p.pair_id: p for p in read_pairs(out)}
    assert sorted(pairs) == ["a1", "a2"]
    assert pairs["a1"].edit["mask_source"] == "user" and pairs["a1"].mask_box == (50, 50, 6, 6)
    assert pairs["a2"].edit["target_boxes"] == [[40, 40, 10, 12]] and pairs["a2"].mask_box == (40, 40, 10, 12)
    assert pairs["a2"].edit["target"] == "gizmo" and pairs["a2"].edit["group"] == "indoor"
    assert pairs["a2"].edit["substitute"] in EditVocab.load(vocab).data["object"]["indoor"]


def test_offline_demo_from_the_docs(tiny_pipeline_dir, tmp_path, capsys):
    """The README's offline editing commands ("Making edited pairs"): synthetic GQA-format questions + images + scene graphs, tiny pipeline."""
    from vseam_pl.synth.__main__ import main as synth_main

    assert (
        synth_main(["--out", str(tmp_path / "synth"), "--n-images", "4", "--n-val", "2", "--n-test", "6"])
        == 0
    )
    test = tmp_path / "synth" / "test"
    files = sorted((test / "GQA").glob("*.json"))
    out = tmp_path / "edit-demo"
    report = edit_main(
        [
            "--questions",
            *map(str, files),
            "--images",
            str(test / "images"),
            "--scene-graphs",
            str(test / "scene_graphs.json"),
            "--out",
            str(out),
            "--pipeline",
            str(tiny_pipeline_dir),
            "--steps",
            "2",
            "--resolution",
            "32",
            "--device",
            "cpu",
            "--check-outside",
            "--no-progress",
        ]
    )
    capsys.readouterr()
    n_records = sum(len(read_gqa_questions(f)) for f in files)
    assert report.written > 0
    assert (
        report.written + len(report.unresolved) + len(report.rejected) == n_records
    )  # nothing silently dropped
    assert len(list(read_pairs(out))) == report.written
    assert {p.level for p in read_pairs(out)} >= {"object", "attribute"}


def test_cli_bad_inputs_exit_with_a_clear_message(gqa, tmp_path, capsys):
    base = ["--images", str(gqa["images"]), "--out", str(tmp_path / "o"), "--pipeline", "unused"]
    assert edit_cli(["--questions", str(tmp_path / "Nope.json"), *base]) == 2
    assert "Nope.json: question file not found" in capsys.readouterr().err
    vocab = tmp_path / "vocab.json"
    vocab.write_text("[]")
    assert edit_cli(["--questions", str(gqa["files"][0]), "--vocab", str(vocab), *base]) == 2
    assert "vocab.json: expected a JSON object" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_inpaint_pipeline("unused", dtype="int8")


def test_missing_images_are_reported_not_dropped(gqa, tiny_pipe, tmp_path):
    plans, _ = EditPlanner(EditVocab.load()).plan_all(gqa["records"])
    (gqa["images"] / "img3.png").unlink()  # s1's image
    report = run_edits(
        plans, tmp_path / "out", Inpainter(tiny_pipe, steps=2, resolution=SIZE // 2), progress=False
    )
    assert report.written == len(plans) - 1
    ((qid, kind, reason),) = ((r.question_id, r.kind, r.reason) for r in report.unresolved)
    assert qid == "s1" and "image file not found" in reason and "img3" in reason
    assert report.summary()["unresolved_reasons"] == {
        "image missing or unreadable": 1
    }  # by kind, not by path
    saved = json.loads((tmp_path / "out" / "unresolved.json").read_text())
    assert saved == [{"question_id": "s1", "kind": kind, "reason": reason}]


def test_cli_vseam_filter_with_tiny_llava(gqa, tiny_pipeline_dir, tiny_llava_dir, tmp_path, capsys):
    """The real filter path: `--filter-model` loads a (random tiny) LLaVA with `vseam_pl.vlm.load_vlm` and judges
    pairs with `vseam_pl.scoring.predict`; its answers are arbitrary, so check the bookkeeping, not accuracy."""
    out = tmp_path / "filtered"
    argv = [
        "--questions",
        *map(str, gqa["files"]),
        "--images",
        str(gqa["images"]),
        "--out",
        str(out),
        "--pipeline",
        str(tiny_pipeline_dir),
        "--steps",
        "2",
        "--resolution",
        "32",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--limit",
        "4",
        "--filter-model",
        str(tiny_llava_dir),
        "--filter-batch-size",
        "3",
        "--no-progress",
    ]
    report = edit_main(argv)
    summary = json.loads(capsys.readouterr().out)
    assert (
        report.planned == 3 and len(report.unresolved) == 1
    )  # --limit 4 keeps a1, a2 (unresolvable), m1, m2
    assert report.generated == 3 and report.written + len(report.rejected) == 3
    assert (summary["written"], summary["rejected"]) == (report.written, len(report.rejected))
    allowed = ("VLM answers the clean image", "VLM answers the edited image the same")
    assert all(r.startswith(allowed) for _, r in report.rejected)
    rejected = (
        [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()] if report.rejected else []
    )
    assert [x["pair_id"] for x in rejected] == [pid for pid, _ in report.rejected]
    written = [p.pair_id for p in read_pairs(out)] if report.written else []
    assert sorted(written + [x["pair_id"] for x in rejected]) == ["a1", "m1", "m2"]
    again = edit_main(argv)  # judged pairs, kept or rejected, are not redone
    assert (again.generated, again.resumed) == (0, 3)
