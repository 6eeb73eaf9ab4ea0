"""Text of the synthetic world: GQA/POPE/COCO-QA question templates, captions and the closed vocabulary.

All text is built from the templates and word lists here, so :func:`vocabulary` is exact: every word any caption,
question, full answer or answer can contain (lowercased), plus the punctuation tokens "?", "." and ",".
:func:`tokenize` is the matching word-level split.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from typing import Any

from .edits import GQA_CATEGORIES, GQAItem, answer_on, ask
from .scene import (
    CLASSES,
    COLORS,
    MATERIALS,
    NUMBER_WORDS,
    PLACES,
    PLURALS,
    RELATION_PHRASES,
    SIZES,
    SUPERCATEGORIES,
    Scene,
    SceneObject,
    horizontal_relation,
    object_id,
    vertical_relation,
)

PUNCTUATION: tuple[str, ...] = ("?", ".", ",")
POPE_MODES: tuple[str, ...] = ("random", "popular", "adversarial")
COCOQA_TYPES: tuple[str, ...] = ("color", "count", "location")

# Templates; every literal word in them is part of the vocabulary.
GQA_QUESTION = {
    "exist": "Is there a {name} in this picture?",
    "color": "Is the {name} {value}?",
    "material": "Is the {name} made of {value}?",
    "rel": "Is the {a} {phrase} the {b}?",
}
GQA_FULL_ANSWER = {
    ("exist", "yes"): "Yes, there is a {name} in this picture.",
    ("exist", "no"): "No, there is no {name} in this picture.",
    ("color", "yes"): "Yes, the {name} is {value}.",
    ("color", "no"): "No, the {name} is {actual}.",
    ("material", "yes"): "Yes, the {name} is made of {value}.",
    ("material", "no"): "No, the {name} is made of {actual}.",
    ("rel", "yes"): "Yes, the {a} is {phrase} the {b}.",
    ("rel", "no"): "No, the {a} is {actual} the {b}.",
}
POPE_QUESTION = "Is there a {name} in the image?"
COCOQA_QUESTION = {
    "color": "what is the color of the {name}",
    "count": "how many {plural} are there",
    "location": "where is the {name}",
}
OPEN_QUESTION = {
    "color": "What color is the {name}?",
    "material": "What is the {name} made of?",
    "size": "What size is the {name}?",
    "Animal": "What animal is in the image?",
    "Vehicle": "What vehicle is in the image?",
    "where": "Where is the {name}?",
}
CAPTION_WORDS = "a an and on the"  # glue words of :func:`caption`


@dataclass(frozen=True)
class SynthQA:
    """One pretraining question: `answer` is lowercase; `benchmark` is "gqa", "pope", "cocoqa" or "open"."""

    question: str
    answer: str
    benchmark: str
    level: str | None = None
    category: str | None = None


def tokenize(text: str) -> list[str]:
    """Lowercase words and the punctuation tokens "?", ".", "," (the split :func:`vocabulary` is closed under)."""
    return re.findall(r"[a-z]+|[?.,]", text.lower())


def vocabulary() -> list[str]:
    """Sorted words (lowercase) of every template and word list, followed by the punctuation tokens."""
    words: set[str] = set(CAPTION_WORDS.split()) | {"yes", "no"}
    templates = [
        *GQA_QUESTION.values(),
        *GQA_FULL_ANSWER.values(),
        POPE_QUESTION,
        *COCOQA_QUESTION.values(),
        *OPEN_QUESTION.values(),
    ]
    for template in templates:
        for literal, *_ in string.Formatter().parse(template):
            words.update(w for w in tokenize(literal) if w not in PUNCTUATION)
    fillers = [
        *CLASSES,
        *PLURALS.values(),
        *COLORS,
        *MATERIALS,
        *SIZES,
        *PLACES,
        *NUMBER_WORDS,
        *RELATION_PHRASES.values(),
    ]
    for filler in fillers:
        words.update(tokenize(filler))
    return sorted(words) + list(PUNCTUATION)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# --- GQA --------------------------------------------------------------------------------------------------------


def gqa_text(item: GQAItem) -> tuple[str, str]:
    """(question, fullAnswer) of a GQA item, phrased like GQA's balanced questions."""
    spec, scene = item.spec, item.scene
    if spec["op"] == "exist":
        key, slots = "exist", {"name": spec["name"]}
    elif spec["op"] == "attr":
        actual = getattr(scene.objects[item.objects[0]], spec["attr"])
        key, slots = spec["attr"], {"name": spec["name"], "value": spec["value"], "actual": actual}
    else:
        a, b = (scene.objects[k] for k in item.objects)
        actual = horizontal_relation(a, b) if spec["rel"] in ("left", "right") else vertical_relation(a, b)
        key = "rel"
        slots = {
            "a": spec["a"],
            "b": spec["b"],
            "phrase": RELATION_PHRASES[spec["rel"]],
            "actual": RELATION_PHRASES[actual],
        }
    return GQA_QUESTION[key].format(**slots), GQA_FULL_ANSWER[(key, item.answer)].format(**slots)


def _positions(text: str, names: dict[str, str]) -> dict[str, str]:
    """GQA `annotations`: space-token index -> object id for each object name in `text`."""
    tokens = [t.strip("?.,") for t in text.split()]
    return {str(k): names[t] for k, t in enumerate(tokens) if t in names}


def gqa_record(item: GQAItem, image_id: str, question_id: str) -> dict[str, Any]:
    """The item in the official GQA question schema (the keys of the V-SEAM release files)."""
    spec, scene = item.spec, item.scene
    question, full_answer = gqa_text(item)
    objs = [scene.objects[k] for k in item.objects]
    present = spec["op"] != "exist" or item.answer == "yes"
    ids = [object_id(image_id, k) if present else "-" for k in item.objects]
    if spec["op"] == "exist":
        semantic = [
            {"operation": "select", "dependencies": [], "argument": f"{spec['name']} ({ids[0]})"},
            {"operation": "exist", "dependencies": [0], "argument": "?"},
        ]
        types = {"detailed": "exist", "semantic": "obj", "structural": "verify"}
        groups = {"global": None, "local": f"03-{spec['name']}"}
        named = {spec["name"]: ids[0]} if present else {}
    elif spec["op"] == "attr":
        semantic = [
            {"operation": "select", "dependencies": [], "argument": f"{spec['name']} ({ids[0]})"},
            {"operation": f"verify {spec['attr']}", "dependencies": [0], "argument": spec["value"]},
        ]
        detailed = "materialVerify" if spec["attr"] == "material" else "verifyAttr"
        types = {"detailed": detailed, "semantic": "attr", "structural": "verify"}
        groups = {"global": spec["attr"], "local": f"10v-{spec['name']}_{spec['attr']}"}
        named = {spec["name"]: ids[0]}
    else:
        phrase = RELATION_PHRASES[spec["rel"]]
        semantic = [
            {"operation": "select", "dependencies": [], "argument": f"{spec['b']} ({ids[1]})"},
            {
                "operation": "verify rel",
                "dependencies": [0],
                "argument": f"{spec['a']},{phrase},s ({ids[0]})",
            },
        ]
        types = {"detailed": "relVerify", "semantic": "rel", "structural": "verify"}
        groups = {"global": None, "local": f"13-{spec['b']}_{phrase},s"}
        named = {spec["a"]: ids[0], spec["b"]: ids[1]}
    semantic_str = "->".join(
        f"{op['operation']}: {op['argument']}" + (f" {op['dependencies']}" if op["dependencies"] else "")
        for op in semantic
    )
    record: dict[str, Any] = {
        "semantic": semantic,
        "entailed": [],
        "equivalent": [question_id],
        "question": question,
        "imageId": image_id,
        "isBalanced": True,
        "groups": groups,
        "answer": item.answer.capitalize(),
        "semanticStr": semantic_str,
        "annotations": {
            "answer": {},
            "question": _positions(question, named),
            "fullAnswer": _positions(full_answer, named),
        },
        "types": types,
        "fullAnswer": full_answer,
    }
    names = [spec["name"]] if spec["op"] != "rel" else [spec["a"], spec["b"]]
    record["relevant_objects" if item.level == "object" else "involved_objects"] = names
    record["question_id"] = question_id
    record["object_positions"] = [{"x": o.x, "y": o.y, "w": o.w, "h": o.h} for o in objs]
    return record


# --- POPE -------------------------------------------------------------------------------------------------------


def pope_negatives(
    present: list[str],
    k: int,
    mode: str,
    rng: random.Random,
    frequency: dict[str, int],
    cooccurrence: dict[tuple[str, str], int],
) -> list[str]:
    """`k` absent classes sampled POPE's way: "random" uniformly, "popular" the most frequent classes of the split,
    "adversarial" the classes that co-occur most with the present ones (ties broken by name, so it is exact)."""
    absent = [c for c in CLASSES if c not in present]
    if len(absent) < k:
        raise ValueError(f"need {k} absent classes, only {len(absent)} absent from {present}")
    if mode == "random":
        return rng.sample(absent, k)
    if mode == "popular":
        return sorted(absent, key=lambda c: (-frequency.get(c, 0), c))[:k]
    if mode == "adversarial":
        score = {c: sum(cooccurrence.get((p, c), 0) for p in present) for c in absent}
        return sorted(absent, key=lambda c: (-score[c], c))[:k]
    raise ValueError(f"unknown POPE mode {mode!r}; expected one of {POPE_MODES}")


def pope_question(name: str) -> str:
    return POPE_QUESTION.format(name=name)


# --- COCO-QA ----------------------------------------------------------------------------------------------------


def cocoqa_questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, str]]:
    """(type, question, one-word answer) for each COCO-QA type the scene supports."""
    present = scene.present()
    out: list[tuple[str, str, str]] = []
    unique = [c for c in present if scene.count(c) == 1]
    if unique:
        name = rng.choice(unique)
        color = scene.objects[scene.unique_index(name)].color
        out.append(("color", COCOQA_QUESTION["color"].format(name=name), color))
    if present:
        name = rng.choice(present)
        count = NUMBER_WORDS[scene.count(name)]
        out.append(("count", COCOQA_QUESTION["count"].format(plural=PLURALS[name]), count))
        name = rng.choice(present)
        out.append(("location", COCOQA_QUESTION["location"].format(name=name), scene.place))
    return out


# --- captions and pretraining questions --------------------------------------------------------------------------


def _phrase(obj: SceneObject) -> str:
    words = f"{obj.size} {obj.color} {obj.material} {obj.name}"
    return f"{article(words)} {words}"


def caption(scene: Scene, rng: random.Random) -> str:
    """E.g. "a small red metal dog to the left of a large blue plastic car on the grass." (objects shuffled)."""
    objs = list(scene.objects)
    rng.shuffle(objs)
    parts: list[str] = []
    k = 0
    while k < len(objs):
        if k + 1 < len(objs):
            rel = rng.choice([horizontal_relation, vertical_relation])(objs[k], objs[k + 1])
            if rel is not None:
                parts.append(f"{_phrase(objs[k])} {RELATION_PHRASES[rel]} {_phrase(objs[k + 1])}")
                k += 2
                continue
        parts.append(_phrase(objs[k]))
        k += 1
    if not parts:
        return f"the {scene.place}."
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{body} on the {scene.place}."


def qa_pairs(scene: Scene, rng: random.Random) -> list[SynthQA]:
    """A mix of every question kind this scene supports (one GQA question per feasible category)."""
    out: list[SynthQA] = []
    for category in GQA_CATEGORIES:
        item = ask(scene, category, rng.choice(("yes", "no")), rng)
        if item is not None:
            out.append(SynthQA(gqa_text(item)[0], item.answer, "gqa", item.level, category))
    present = scene.present()
    absent = [c for c in CLASSES if c not in present]
    if present:
        out.append(SynthQA(pope_question(rng.choice(present)), "yes", "pope", None, "random"))
    out.append(SynthQA(pope_question(rng.choice(absent)), "no", "pope", None, "random"))
    for kind, question, answer in cocoqa_questions(scene, rng):
        out.append(SynthQA(question, answer, "cocoqa", None, kind))
    unique = [i for i, o in enumerate(scene.objects) if scene.count(o.name) == 1]
    if unique:
        obj = scene.objects[rng.choice(unique)]
        for attr in ("color", "material", "size"):
            out.append(
                SynthQA(OPEN_QUESTION[attr].format(name=obj.name), getattr(obj, attr), "open", None, attr)
            )
        out.append(SynthQA(OPEN_QUESTION["where"].format(name=obj.name), scene.place, "open", None, "where"))
    for sup, names in SUPERCATEGORIES.items():
        kinds = {o.name for o in scene.objects if o.name in names}
        if len(kinds) == 1:
            out.append(SynthQA(OPEN_QUESTION[sup], kinds.pop(), "open", None, sup))
    return out


__all__ = [
    "COCOQA_TYPES",
    "POPE_MODES",
    "SynthQA",
    "answer_on",
    "caption",
    "cocoqa_questions",
    "gqa_record",
    "gqa_text",
    "pope_negatives",
    "qa_pairs",
    "tokenize",
    "vocabulary",
]
