"""Action-category records in the release's schema (a category with the Spatial schema), one per common GQA relation
between a subject and an object, written to `tests/editing/data/Action.json` for `plan-table` (docs/editing.md):

    python -m tests.editing.action_relations   # rewrites the file; the test checks it is current
"""

from __future__ import annotations

import json
from pathlib import Path

FILE = Path(__file__).parent / "data" / "Action.json"

#: (subject, relation as GQA's program and the question word it, object, answer)
ACTION_RELATIONS: list[tuple[str, str, str, str]] = [
    ("man", "holding", "umbrella", "Yes"),
    ("woman", "wearing", "hat", "Yes"),
    ("boy", "riding", "horse", "Yes"),
    ("man", "riding", "skateboard", "Yes"),
    ("person", "sitting on", "bench", "Yes"),
    ("woman", "eating", "sandwich", "Yes"),
    ("man", "carrying", "bag", "Yes"),
    ("man", "walking on", "sidewalk", "Yes"),
    ("woman", "walking on", "street", "Yes"),
    ("girl", "looking at", "phone", "Yes"),
    ("child", "playing with", "ball", "Yes"),
    ("man", "using", "laptop", "Yes"),
    ("woman", "watching", "television", "Yes"),
    ("man", "throwing", "frisbee", "Yes"),
    ("dog", "catching", "frisbee", "Yes"),
    ("woman", "pulling", "cart", "Yes"),
    ("man", "pushing", "bicycle", "Yes"),
    ("picture", "hanging on", "wall", "Yes"),
    ("clock", "hanging on", "wall", "Yes"),
    ("cat", "lying on", "bed", "Yes"),
    ("dog", "lying on", "ground", "Yes"),
    ("man", "standing on", "ground", "Yes"),
    ("woman", "standing on", "sidewalk", "Yes"),
    ("people", "standing on", "beach", "Yes"),
    ("skier", "standing on", "snow", "Yes"),
    ("bird", "standing on", "fence", "Yes"),
    ("car", "parked on", "street", "Yes"),
    ("truck", "parked on", "road", "Yes"),
    ("bus", "driving on", "road", "Yes"),
    ("table", "covered by", "cloth", "Yes"),
    ("field", "covered in", "snow", "Yes"),
    ("woman", "standing on", "floor", "No"),
    ("child", "flying", "kite", "Yes"),
    ("girl", "drinking", "coffee", "Yes"),
    ("man", "cutting", "cake", "Yes"),
    ("woman", "leaning on", "fence", "Yes"),
    ("man", "touching", "horse", "Yes"),
    ("player", "hitting", "ball", "Yes"),
    ("player", "swinging", "bat", "Yes"),
    ("man", "talking on", "phone", "Yes"),
    ("boy", "kicking", "ball", "Yes"),
    ("woman", "feeding", "giraffe", "Yes"),
    ("girl", "petting", "dog", "Yes"),
    ("man", "sitting on", "ground", "Yes"),
    ("woman", "sitting on", "grass", "Yes"),
    ("cow", "grazing on", "grass", "Yes"),
    ("sheep", "grazing on", "field", "Yes"),
    ("giraffe", "eating", "leaves", "Yes"),
    ("man", "reading", "book", "Yes"),
    ("woman", "typing on", "keyboard", "Yes"),
    ("man", "leaning against", "wall", "Yes"),
    ("dog", "biting", "frisbee", "Yes"),
    ("man", "driving", "car", "Yes"),
    ("people", "crossing", "street", "Yes"),
    ("bowl", "filled with", "soup", "Yes"),
    ("basket", "full of", "apples", "Yes"),
    ("man", "sitting at", "table", "Yes"),
    ("boat", "floating on", "water", "Yes"),
    ("duck", "swimming in", "water", "Yes"),
    ("bird", "flying over", "water", "Yes"),
    ("man", "running on", "beach", "Yes"),
    ("woman", "lying on", "sand", "Yes"),
    ("dog", "walking on", "grass", "Yes"),
    ("frisbee", "on", "ground", "Yes"),
    ("ball", "on", "grass", "Yes"),
    ("boy", "on", "floor", "Yes"),
    ("plate", "on", "table", "Yes"),
    ("cat", "sitting on top of", "car", "Yes"),
    ("man", "waiting for", "bus", "Yes"),
    ("person", "surrounded by", "trees", "Yes"),
    ("man", "walking toward", "building", "Yes"),
    ("woman", "wearing", "glasses", "No"),
    ("man", "holding", "racket", "No"),
    ("horse", "pulling", "carriage", "Yes"),
    ("man", "skiing on", "snow", "Yes"),
    ("man", "standing in", "water", "Yes"),
    ("girl", "sitting in", "chair", "Yes"),
    ("dog", "sniffing", "grass", "Yes"),
    ("woman", "walking with", "dog", "Yes"),
    ("man", "washing", "car", "Yes"),
]


def record(i: int, subject: str, relation: str, obj: str, answer: str) -> dict:
    """A release-schema relation record: `select: obj -> relate: subject,relation,s`, two boxes in program order."""
    be = "Are" if subject in ("people",) else "Is"
    return {
        "semantic": [
            {"operation": "select", "dependencies": [], "argument": f"{obj} (2)"},
            {"operation": "relate", "dependencies": [0], "argument": f"{subject},{relation},s (1)"},
            {"operation": "exist", "dependencies": [1], "argument": "?"},
        ],
        "question": f"{be} the {subject} {relation} the {obj}?",
        "imageId": f"a{i}",
        "answer": answer,
        "question_id": f"action{i}",
        "types": {"detailed": "relVerify", "semantic": "rel", "structural": "verify"},
        "fullAnswer": "",
        "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
        "involved_objects": sorted({subject, obj}),
        "object_positions": [{"x": 10, "y": 60, "w": 80, "h": 30}, {"x": 30, "y": 10, "w": 30, "h": 60}],
    }


def records() -> list[dict]:
    return [record(i, *row) for i, row in enumerate(ACTION_RELATIONS)]


def render() -> str:
    return json.dumps(records(), indent=1) + "\n"


if __name__ == "__main__":
    FILE.parent.mkdir(parents=True, exist_ok=True)
    FILE.write_text(render())
    print(f"{FILE}: {len(ACTION_RELATIONS)} records")
