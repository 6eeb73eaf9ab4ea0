"""The synthetic world: determinism, exact counterfactual edits, split hygiene, POPE sampling, real file formats,
the CLI and idempotent/conflicting reruns."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.release_files import SHARED_DATA as SHARED
from vseam_pl.pairs import read_pairs
from vseam_pl.synth import (
    CLASSES,
    GQA_CATEGORIES,
    Scene,
    SceneObject,
    SceneWorld,
    generate_benchmarks,
    tokenize,
)
from vseam_pl.synth.__main__ import main as synth_main
from vseam_pl.synth.labels import PATCH_LABELS, patch_label_shares
from vseam_pl.synth.render import glyph_mask
from vseam_pl.synth.scene import PLURALS
from vseam_pl.synth.writers import SPLITS, write_split

SIZES = {"n_train": 30, "n_val": 12, "n_test": 48}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return generate_benchmarks(tmp_path_factory.mktemp("synth") / "a", seed=0, **SIZES)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def scene_graphs(split_dir: Path) -> dict[str, Scene]:
    return {
        k: Scene.from_scene_graph(v)
        for k, v in json.loads((split_dir / "scene_graphs.json").read_text()).items()
    }


def pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


# --- an evaluator written independently of vseam_pl.synth.edits, straight from the question text -----------------


def truth(question: str, scene: Scene) -> str:
    def the(name: str) -> SceneObject:
        (obj,) = [o for o in scene.objects if o.name == name]  # questions only name unique objects
        return obj

    if m := re.fullmatch(r"Is there a (\w+) in this picture\?", question):
        ok = any(o.name == m[1] for o in scene.objects)
    elif m := re.fullmatch(r"Is the (\w+) made of (\w+)\?", question):
        ok = the(m[1]).material == m[2]
    elif m := re.fullmatch(r"Is the (\w+) to the (left|right) of the (\w+)\?", question):
        a, b = the(m[1]), the(m[3])
        ok = a.x + a.w <= b.x if m[2] == "left" else b.x + b.w <= a.x
        assert ok or (b.x + b.w <= a.x if m[2] == "left" else a.x + a.w <= b.x), (
            "ambiguous relation was asked"
        )
    elif m := re.fullmatch(r"Is the (\w+) (above|below) the (\w+)\?", question):
        a, b = the(m[1]), the(m[3])
        ok = a.y + a.h <= b.y if m[2] == "above" else b.y + b.h <= a.y
        assert ok or (b.y + b.h <= a.y if m[2] == "above" else a.y + a.h <= b.y), (
            "ambiguous relation was asked"
        )
    elif m := re.fullmatch(r"Is the (\w+) (\w+)\?", question):
        ok = the(m[1]).color == m[2]
    else:
        raise AssertionError(f"unexpected question {question!r}")
    return "yes" if ok else "no"


def edited_scene(scene: Scene, edit: dict) -> Scene:
    for after in edit["after"]:
        fields = {k: v for k, v in after.items() if k != "index"}
        scene = scene.with_object(after["index"], SceneObject(**fields))
    return scene


# --- the Python API -----------------------------------------------------------------------------------------------


def test_scenes_are_deterministic_valid_and_rendered_exactly():
    world = SceneWorld(image_size=64)
    a = [world.sample_scene(random.Random(s)) for s in range(200)]
    b = [world.sample_scene(random.Random(s)) for s in range(200)]
    assert a == b
    assert len({s for s in a}) > 190
    assert all(1 <= len(s.objects) <= 4 and s.is_valid() for s in a)
    assert Counter(len(s.objects) for s in a).keys() >= {1, 2, 3, 4}
    img = world.render(a[0])
    assert img.mode == "RGB" and img.size == (64, 64)
    assert img.tobytes() == world.render(b[0]).tobytes()
    assert Scene.from_scene_graph(a[5].to_scene_graph("123")) == a[5]


def test_glyphs_are_distinct_silhouettes():
    for size in (16, 24):
        masks = {c: np.asarray(glyph_mask(c, size, size)) > 0 for c in CLASSES}
        for i, x in enumerate(CLASSES):
            for y in CLASSES[i + 1 :]:
                diff = (masks[x] != masks[y]).mean()
                assert diff > 0.12, f"{x} and {y} differ in only {diff:.0%} of pixels at {size}px"


def test_captions_and_questions_stay_in_the_vocabulary():
    world = SceneWorld()
    vocab = world.vocabulary()
    assert len(vocab) == len(set(vocab)) and all(w == w.lower() for w in vocab)
    assert {"?", ".", ","} <= set(vocab)
    benchmarks: Counter = Counter()
    for s in range(150):
        rng = random.Random(s)
        scene = world.sample_scene(rng)
        caption = world.caption(scene, rng)
        assert caption.endswith(f"on the {scene.place}.") and set(tokenize(caption)) <= set(vocab), caption
        for obj in scene.objects:
            assert obj.name in caption
        for qa in world.qa_pairs(scene, rng):
            assert qa.answer == qa.answer.lower() and qa.answer in vocab, qa
            assert set(tokenize(qa.question)) <= set(vocab), qa
            benchmarks[qa.benchmark] += 1
            if qa.benchmark == "gqa":
                assert qa.answer == truth(qa.question, scene), qa
    assert set(benchmarks) == {"gqa", "pope", "cocoqa", "open"}


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        SceneWorld(image_size=16)
    with pytest.raises(ValueError, match="n_val"):
        generate_benchmarks(tmp_path, n_train=2, n_val=-1, n_test=2)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json"):
        generate_benchmarks(tmp_path, n_train=2, n_val=2, n_test=2)


# --- the written benchmarks ----------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(out, tmp_path):
    again = files(generate_benchmarks(tmp_path / "b", seed=0, **SIZES))
    assert again == files(out)
    other = files(generate_benchmarks(tmp_path / "c", seed=1, **SIZES))
    assert other.keys() != again.keys() or any(other[k] != again[k] for k in again)
    assert other["test/images/3000000.png"] != again["test/images/3000000.png"]
    assert other["train/GQA/Color.json"] != again["train/GQA/Color.json"]


def test_splits_are_disjoint_and_self_contained(out):
    ids = {}
    for split in SPLITS:
        root = out / split
        ids[split] = {p.stem for p in (root / "images").glob("*.png")}
        assert len(ids[split]) == SIZES[f"n_{split}"]
        for cat in GQA_CATEGORIES:
            for rec in json.loads((root / "GQA" / f"{cat}.json").read_text()):
                assert rec["imageId"] in ids[split]
        for line in (root / "POPE" / "coco_pope_random.json").read_text().splitlines():
            assert Path(json.loads(line)["image"]).stem in ids[split]
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])


def test_every_edit_is_exact_and_its_answer_correct(out):
    world = SceneWorld()
    for split in SPLITS:
        root = out / split
        scenes = scene_graphs(root)
        gqa = {
            r["question_id"]: r
            for c in GQA_CATEGORIES
            for r in json.loads((root / "GQA" / f"{c}.json").read_text())
        }
        pairs = list(read_pairs(root / "pairs" / "pairs.jsonl"))
        assert sorted(p.pair_id for p in pairs) == sorted(gqa)  # one pair per GQA question
        for p in pairs:
            rec = gqa[p.question_id]
            assert rec["question"] == p.question and rec["answer"] == p.answer.capitalize()
            assert p.candidates == ("yes", "no") and p.model_id == "synthetic" and p.seed == 0
            assert p.edited_answer != p.answer
            clean_scene = scenes[rec["imageId"]]
            assert truth(p.question, clean_scene) == p.answer
            new_scene = edited_scene(clean_scene, p.edit)
            assert new_scene.is_valid()
            assert truth(p.question, new_scene) == p.edited_answer, (p.pair_id, p.edit)
            clean, edited = pixels(p.clean_image), pixels(p.edited_image)
            assert np.array_equal(edited, np.asarray(world.render(new_scene)).astype(int))
            changed = (clean != edited).any(axis=2)
            assert changed.any(), f"{p.pair_id}: edited image identical to clean"
            x, y, w, h = p.mask_box
            outside = changed.copy()
            outside[y : y + h, x : x + w] = False
            assert not outside.any(), f"{p.pair_id}: pixels changed outside mask_box {p.mask_box}"


def test_gqa_answers_are_balanced_per_category(out):
    for split in SPLITS:
        for cat in GQA_CATEGORIES:
            answers = Counter(
                r["answer"] for r in json.loads((out / split / "GQA" / f"{cat}.json").read_text())
            )
            assert set(answers) <= {"Yes", "No"} and abs(answers["Yes"] - answers["No"]) <= 1, (
                split,
                cat,
                answers,
            )
    assert (
        sum(len(json.loads((out / "test" / "GQA" / f"{c}.json").read_text())) for c in GQA_CATEGORIES) >= 48
    )


def test_pope_labels_balanced_and_negative_sampling_modes(out):
    root = out / "test"
    scenes = scene_graphs(root)
    freq = Counter(c for s in scenes.values() for c in s.present())
    cooc = Counter((p, c) for s in scenes.values() for p in s.present() for c in s.present() if p != c)
    negatives = {}
    for mode in ("random", "popular", "adversarial"):
        recs = [
            json.loads(line) for line in (root / "POPE" / f"coco_pope_{mode}.json").read_text().splitlines()
        ]
        assert [r["question_id"] for r in recs] == list(range(1, len(recs) + 1))
        assert [r["label"] for r in recs] == ["yes", "no"] * (len(recs) // 2)  # interleaved like real POPE
        negatives[mode] = []
        for r in recs:
            present = scenes[Path(r["image"]).stem].present()
            name = re.fullmatch(r"Is there a (\w+) in the image\?", r["text"])[1]
            assert (name in present) == (r["label"] == "yes"), r
            if r["label"] == "no":
                absent = [c for c in CLASSES if c not in present]
                asked = [
                    re.fullmatch(r"Is there a (\w+) in the image\?", q["text"])[1]
                    for q in recs
                    if q["image"] == r["image"] and q["label"] == "no"
                ]
                others = [c for c in absent if c not in asked]
                if mode == "popular":
                    assert all(freq[name] >= freq[c] for c in others), (r, freq)
                if mode == "adversarial":
                    score = {c: sum(cooc[p, c] for p in present) for c in absent}
                    assert all(score[name] >= score[c] for c in others), (r, score)
                negatives[mode].append(name)
    assert len(negatives["random"]) == len(negatives["popular"]) == len(negatives["adversarial"])
    assert negatives["random"] != negatives["popular"] and negatives["popular"] != negatives["adversarial"]
    # popular negatives concentrate on the split's most frequent classes; random ones spread out
    top = {c for c, _ in freq.most_common(4)}
    assert np.mean([n in top for n in negatives["popular"]]) > np.mean(
        [n in top for n in negatives["random"]]
    )


def test_cocoqa_answers_match_scenes(out):
    root = out / "val"
    scenes = scene_graphs(root)
    numbers = ["zero", "one", "two", "three", "four"]
    for kind in ("color", "count", "location"):
        with (root / "COCOQA" / f"{kind}_coco_qa.csv").open(newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["", "train_image_id_count", "question_count", "answer_count"]
        assert len(rows) > 1
        for k, (index, image_id, question, answer) in enumerate(rows[1:]):
            assert int(index) == k
            scene = scenes[image_id]
            if kind == "color":
                name = re.fullmatch(r"what is the color of the (\w+)", question)[1]
                assert [o.color for o in scene.objects if o.name == name] == [answer]
            elif kind == "count":
                plural = re.fullmatch(r"how many (\w+) are there", question)[1]
                n = sum(PLURALS[o.name] == plural for o in scene.objects)
                assert answer == numbers[n] and n >= 1
            else:
                assert re.fullmatch(r"where is the (\w+)", question) and answer == scene.place


@pytest.mark.usefixtures("shared_data")
def test_files_have_the_real_formats(out):
    root = out / "test"
    real_keys = {
        level: set(json.loads((SHARED / "GQA" / f"{name}.json").read_text())[0])
        for level, name in (("obj", "Animal"), ("attr", "Material"), ("rel", "Spatial"))
    }
    for cat in GQA_CATEGORIES:
        for rec in json.loads((root / "GQA" / f"{cat}.json").read_text()):
            assert set(rec) == real_keys[rec["types"]["semantic"]], (
                cat,
                set(rec) ^ real_keys[rec["types"]["semantic"]],
            )
            assert isinstance(rec["imageId"], str) and isinstance(rec["question_id"], str)
            assert set(rec["types"]) == {"detailed", "semantic", "structural"}
            assert all(set(p) == {"x", "y", "w", "h"} for p in rec["object_positions"])
            assert rec["semanticStr"].startswith("select: ")
            tokens = rec["question"].rstrip("?").split()
            for index, _ in rec["annotations"]["question"].items():
                assert tokens[int(index)] in rec.get("relevant_objects", rec.get("involved_objects"))
    real_pope = json.loads((SHARED / "POPE" / "coco_pope_random.json").read_text().splitlines()[0])
    for mode in ("random", "popular", "adversarial"):
        for line in (root / "POPE" / f"coco_pope_{mode}.json").read_text().splitlines():
            rec = json.loads(line)
            assert rec.keys() == real_pope.keys() and all(type(rec[k]) is type(real_pope[k]) for k in rec)
    for kind in ("color", "count", "location"):
        real_header = (SHARED / "COCOQA" / f"{kind}_coco_qa.csv").read_text().splitlines()[0]
        mine = (root / "COCOQA" / f"{kind}_coco_qa.csv").read_text().splitlines()
        assert mine[0] == real_header
        assert all(len(row) == 4 and row[1].isdigit() for row in csv.reader(mine[1:]))


def test_written_text_stays_in_the_vocabulary(out):
    vocab = set(SceneWorld().vocabulary())
    root = out / "train"
    texts = []
    for cat in GQA_CATEGORIES:
        for rec in json.loads((root / "GQA" / f"{cat}.json").read_text()):
            texts += [rec["question"], rec["fullAnswer"], rec["answer"]]
    for line in (root / "POPE" / "coco_pope_adversarial.json").read_text().splitlines():
        texts.append(json.loads(line)["text"])
    for kind in ("color", "count", "location"):
        for row in list(csv.reader((root / "COCOQA" / f"{kind}_coco_qa.csv").read_text().splitlines()))[1:]:
            texts += row[2:]
    unknown = {w for t in texts for w in tokenize(t)} - vocab
    assert not unknown


def test_the_data_readers_load_every_split(out):
    data = pytest.importorskip("vseam_pl.data")
    manifest = json.loads((out / "manifest.json").read_text())
    for split in SPLITS:
        counts = manifest["splits"][split]
        for bench, expected, kw in (
            ("gqa", sum(counts["gqa"].values()), {}),
            ("pope", sum(counts["pope"].values()), {}),
            (
                "cocoqa",
                sum(counts["cocoqa"].values()),
                {"image_pattern": manifest["conventions"]["cocoqa_image_pattern"]},
            ),
        ):
            recs = list(data.iter_records(bench, root=str(out), split=split, **kw))
            assert len(recs) == expected, (split, bench)
            for r in recs[:20]:
                assert Path(r.image_path).with_suffix(".png").is_file()


def test_default_test_split_meets_the_size_targets(tmp_path):
    counts = write_split(tmp_path / "test", "test", seed=0, n=1200, world=SceneWorld())
    assert sum(counts["gqa"].values()) >= 1000 and counts["pairs"] == sum(counts["gqa"].values())
    assert min(counts["gqa"].values()) >= 150
    assert min(counts["pope"].values()) >= 1000
    assert sum(counts["cocoqa"].values()) >= 600


# --- CLI, reruns, resume ---------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m vseam_pl.synth ARGS`, in-process (its `main` is what `-m` runs): exit status and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        returncode = synth_main(list(args))
    return subprocess.CompletedProcess(args, returncode, stderr=err.getvalue())


def test_cli_rerun_is_a_noop_and_a_conflict_errors(tmp_path):
    d = tmp_path / "cli"
    args = ["--out", str(d), "--seed", "3", "--n-images", "6", "--n-val", "3", "--n-test", "4"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["n_images"] == {"train": 6, "val": 3, "test": 4}
    before = {p: p.stat().st_mtime_ns for p in d.rglob("*")}
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*")} == before
    clash = run_cli(*args[:2], "--seed", "4", *args[4:])
    assert clash.returncode == 2 and "manifest.json" in clash.stderr and "overwrite" in clash.stderr
    assert json.loads((d / "manifest.json").read_text())["seed"] == 3
    forced = run_cli(*args[:2], "--seed", "4", *args[4:], "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((d / "manifest.json").read_text())["seed"] == 4


def test_interrupted_output_resumes_to_identical_files(tmp_path):
    kw = {"seed": 5, "n_train": 5, "n_val": 3, "n_test": 4}
    d = generate_benchmarks(tmp_path / "r", **kw)
    complete = files(d)
    # simulate a crash after `train` was finished: no manifest, later splits missing, a stale temp folder
    (d / "manifest.json").unlink()
    for split in ("val", "test"):
        for p in sorted((d / split).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (d / split).rmdir()
    (d / ".synth-val-x.tmp").mkdir()
    train_mtime = (d / "train" / "images" / "1000000.png").stat().st_mtime_ns
    generate_benchmarks(d, **kw)
    assert files(d) == complete and not (d / ".synth-val-x.tmp").exists()
    assert (d / "train" / "images" / "1000000.png").stat().st_mtime_ns == train_mtime


def test_patch_label_shares_locate_each_object_in_its_patches():
    obj = SceneObject(
        "cat", "red", "metal", "small", 2, 2, 16, 16
    )  # inside the top-left 16x16 patch and its right/bottom neighbours
    scene = Scene(place="grass", objects=(obj,))
    shares = patch_label_shares(scene, 16)
    assert set(shares) == set(PATCH_LABELS)
    for attr, table in shares.items():
        assert table.shape == (16, len(PATCH_LABELS[attr]))
        np.testing.assert_allclose(table.sum(axis=1), 1.0)
    cat, red = PATCH_LABELS["name"].index("cat"), PATCH_LABELS["color"].index("red")
    # the silhouette's pixels fall in patches 0, 1, 4, 5 only, most of them in patch 0
    covered = np.flatnonzero(shares["name"][:, cat] > 0)
    assert set(covered) <= {0, 1, 4, 5} and 0 in covered
    assert shares["name"][0, cat] == shares["color"][0, red] > 0.3
    assert shares["name"][15, 0] == 1.0  # far corner: background only
    # the shares count exactly the silhouette's pixels
    total = sum(shares["name"][:, cat]) * 16 * 16
    assert round(total) == int((np.asarray(glyph_mask("cat", 16, 16)) > 0).sum())
    with pytest.raises(ValueError, match="multiple of patch size"):
        patch_label_shares(scene, 24)
