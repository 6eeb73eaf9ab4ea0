"""Edit planning: from a GQA record, choose the concept to change, its substitute, the region and the prompts.

No LLM: the target comes from the question text (checked against the vocabulary), then the `semantic` program,
then `fullAnswer`; the substitute is drawn from the target's vocabulary group with a generator seeded by
``(seed, question_id)``, so a plan is the same whatever order or subset of records is planned. For these yes/no
verification questions the edit flips the answer: a "yes" record has its asked concept replaced (edited answer "no");
a "no" record (attributes, relations) has the asked concept painted in (edited answer "yes").
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..records import QARecord
from .gqa import Box, as_box, object_names, program_attributes, program_objects, program_relations
from .vocab import EditVocab, Mention, Term

#: GQA category → the attribute group it asks about.
ATTRIBUTE_GROUP = {"color": "color", "material": "material", "size": "size"}
_ARTICLE_BEFORE = re.compile(r"\b(a|an)\s+$", re.IGNORECASE)


class Unresolved(Exception):
    """The record's edit cannot be planned; `reason` says why (reported, never silently dropped)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EditPlan:
    """One planned edit. `boxes` are the regions (x, y, w, h) to repaint; their union is the mask before dilation."""

    record: QARecord
    level: str
    group: str
    target: str
    substitute: str
    prompt: str
    negative_prompt: str
    edited_answer: str | None
    edited_question: str | None
    boxes: tuple[Box, ...]
    regions: tuple[str, ...]  # the object names the boxes belong to

    @property
    def pair_id(self) -> str:
        return re.sub(r"[^\w.-]", "_", self.record.question_id)

    def edit_dict(self, steps: int, guidance: float) -> dict[str, Any]:
        return {
            "level": self.level,
            "group": self.group,
            "target": self.target,
            "substitute": self.substitute,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "steps": steps,
            "guidance": guidance,
            "edited_question": self.edited_question,
            "regions": list(self.regions),
        }


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def flip(answer: str) -> str | None:
    """The opposite yes/no answer, keeping the casing style; None for open answers."""
    low = answer.strip().lower()
    if low not in ("yes", "no"):
        return None
    out = "no" if low == "yes" else "yes"
    return out.capitalize() if answer[:1].isupper() else out


def _replace(text: str, start: int, end: int, new: str) -> str:
    """Replace text[start:end], fixing a preceding 'a'/'an' for the new word."""
    head = text[:start]
    m = _ARTICLE_BEFORE.search(head)
    if m and not new.endswith("s"):
        art = article(new)
        head = head[: m.start(1)] + (art.capitalize() if m.group(1)[0].isupper() else art) + head[m.end(1) :]
    return head + new + text[end:]


class EditPlanner:
    """Plans edits for records of any level with one vocabulary, seed and optional GQA scene graphs."""

    def __init__(
        self,
        vocab: EditVocab,
        seed: int = 0,
        scene_graphs: Mapping[str, dict[str, Any]] | None = None,
        relation_region: str = "union",
        negative_prompt: str | None = None,
        user_masks: Collection[str] = (),
    ) -> None:
        if relation_region not in ("union", "subject"):
            raise ValueError(f"relation_region must be 'union' or 'subject', got {relation_region!r}")
        self.vocab = vocab
        self.seed = seed
        self.scene_graphs = scene_graphs or {}
        self.relation_region = relation_region
        self.negative_prompt = negative_prompt  # overrides the vocabulary's negative templates when given
        self.user_masks = set(user_masks)  # question ids with a user mask: no box needed

    # ------------------------------------------------------------------ entry points
    def plan(self, record: QARecord) -> EditPlan:
        """Plan one record's edit or raise `Unresolved` with the reason."""
        level = record.level
        if level == "object":
            return self._plan_object(record)
        if level == "attribute":
            return self._plan_attribute(record)
        if level == "relation":
            return self._plan_relation(record)
        raise Unresolved(
            f"unknown level {level!r}: the category/`types.semantic` name no object/attribute/relation"
        )

    def plan_all(self, records: Iterable[QARecord]) -> tuple[list[EditPlan], list[tuple[str, str]]]:
        """Plans for all resolvable records, and (question_id, reason) for the others."""
        plans, unresolved = [], []
        for record in records:
            try:
                plans.append(self.plan(record))
            except Unresolved as e:
                unresolved.append((record.question_id, e.reason))
        return plans, unresolved

    # ------------------------------------------------------------------ shared helpers
    def _rng(self, record: QARecord) -> random.Random:
        return random.Random(f"{self.seed}:{record.question_id}")

    def _scene_objects(self, record: QARecord) -> dict[str, dict[str, Any]]:
        return (self.scene_graphs.get(record.image_id) or {}).get("objects", {})

    def _same(self, a: str, b: str) -> bool:
        sa, sb = set(self.vocab.singulars(a)), set(self.vocab.singulars(b))
        return bool(sa & sb)

    def locate(self, record: QARecord, name: str) -> Box | None:
        """The box of the object called `name`: the scene graph (by program object id) first, then the record's
        `object_positions`, which are aligned with `relevant_objects`/`involved_objects`."""
        raw = record.extra
        sg = self._scene_objects(record)
        for pname, oid in program_objects(raw):
            obj = sg.get(oid or "")
            if obj is not None and (self._same(name, obj["name"]) or (pname and self._same(name, pname))):
                return as_box(obj, f"scene graph of image {record.image_id}, object {oid}")
        positions = raw.get("object_positions") or []
        for i, n in enumerate(object_names(raw)):
            if i < len(positions) and self._same(name, n):
                return as_box(positions[i], f"{record.source}: object_positions[{i}]")
        return None

    def _box(self, record: QARecord, name: str) -> Box | None:
        box = self.locate(record, name)
        if box is None and record.question_id in self.user_masks:
            return None
        if box is None:
            raise Unresolved(f"no box for '{name}' in object_positions or the scene graph")
        if box[2] <= 0 or box[3] <= 0:
            raise Unresolved(f"box of '{name}' is empty: {box}")
        return box

    def _choose(self, record: QARecord, options: list[str], exclude: set[str], what: str) -> str:
        pool = [o for o in options if o.lower() not in exclude]
        if not pool:
            raise Unresolved(f"no substitute for {what} in the vocabulary (all candidates excluded)")
        return self._rng(record).choice(pool)

    def _finish(
        self,
        record: QARecord,
        *,
        level: str,
        group: str,
        target: str,
        substitute: str,
        template: str,
        edited_question: str | None,
        boxes: list[Box | None],
        regions: list[str],
        **fields: str,
    ) -> EditPlan:
        fill = {"substitute": substitute, "target": target, **fields}
        first = template.split("{article}", 1)[1].strip().split(" ", 1)[0] if "{article}" in template else ""
        word = first.format(**fill) if first else ""
        fill["article"] = "" if not word or self.vocab.is_plural(word) else article(word)
        return EditPlan(
            record=record,
            level=level,
            group=group,
            target=target,
            substitute=substitute,
            prompt=" ".join(template.format(**fill).split()),
            negative_prompt=" ".join(self._negative(level).format(**fill).split()),
            edited_answer=flip(record.answer),
            edited_question=edited_question,
            boxes=tuple(b for b in boxes if b is not None),
            regions=tuple(regions),
        )

    def _negative(self, level: str) -> str:
        if self.negative_prompt is not None:
            return self.negative_prompt
        return self.vocab.templates["relation_negative" if level == "relation" else "negative"]

    # ------------------------------------------------------------------ object level
    def _plan_object(self, record: QARecord) -> EditPlan:
        raw = record.extra
        names = object_names(raw) or [n for n, _ in program_objects(raw) if n]
        if record.answer == "no":
            raise Unresolved(
                "answer is 'no': the asked object is not in the image, so there is nothing to replace"
            )
        mentions = self.vocab.mentions(record.question, "object")
        mention = next(
            (
                m
                for m in mentions
                if any(self._same(m.surface, n) or self.vocab.find(n, "object") == m.term for n in names)
            ),
            None,
        )
        if mention is None and mentions and not names:
            mention = mentions[0]
        if mention is None:
            asked = next(
                (n for n in names if n.lower() in record.question.lower()), names[0] if names else None
            )
            if asked is None:
                raise Unresolved("no object named in the question, relevant_objects or the program")
            term = self.vocab.find(asked, "object")
            if term is None:
                raise Unresolved(
                    f"object '{asked}' is in no object group of the vocabulary (extend it with --vocab)"
                )
            raise Unresolved(f"object '{asked}' ({term.group}) is not mentioned in the question")
        name = next(
            (
                n
                for n in names
                if self._same(mention.surface, n) or self.vocab.find(n, "object") == mention.term
            ),
            mention.surface,
        )
        exclude = self._present_objects(record, names)
        exclude.discard(mention.term.canonical)
        substitute = self._choose(
            record, self.vocab.substitutes(mention.term), exclude, f"'{mention.term.canonical}'"
        )
        surface = self.vocab.plural(substitute) if mention.plural else substitute
        return self._finish(
            record,
            level="object",
            group=mention.term.group,
            target=mention.surface.lower(),
            substitute=surface,
            template=self.vocab.templates["object"],
            edited_question=_replace(record.question, mention.start, mention.end, surface),
            boxes=[self._box(record, name)],
            regions=[name],
        )

    def _present_objects(self, record: QARecord, names: list[str]) -> set[str]:
        """Canonical names of objects the record or scene graph says are (or are asked to be) in the image:
        substituting one of them would not change the answer."""
        present = list(names) + [n for n, _ in program_objects(record.extra) if n]
        present += [o["name"] for o in self._scene_objects(record).values()]
        out = set()
        for n in present:
            term = self.vocab.find(n, "object")
            out.add(term.canonical if term else n.lower())
        return out

    # ------------------------------------------------------------------ attribute level
    def _plan_attribute(self, record: QARecord) -> EditPlan:
        raw = record.extra
        group = self._attribute_group(record)
        groups = (group,) if group else None
        names = object_names(raw) or [n for n, _ in program_objects(raw) if n]
        if not names:
            raise Unresolved(
                "no object whose attribute is asked (relevant/involved_objects and program are empty)"
            )
        obj = names[0]
        asked = self.vocab.mentions(record.question, "attribute", groups)
        full = self.vocab.mentions(str(raw.get("fullAnswer", "")), "attribute", groups)
        choice = len({m.term for m in asked}) > 1
        if choice:  # "Is the fence wooden or metallic?": the fullAnswer says which holds
            held = {m.term for m in full}
            mention = next((m for m in asked if m.term in held), asked[0])
        else:
            mention = asked[-1] if asked else None
        if mention is not None:
            term = mention.term
        else:
            term = next(
                (
                    t
                    for v in program_attributes(raw, group or "")
                    if (t := self.vocab.find(v, "attribute", groups))
                ),
                None,
            )
        if term is None:
            raise Unresolved(f"no {group or 'attribute'} term of the vocabulary in the question or program")
        group = term.group
        if record.answer == "no":
            observed = self._observed_attribute(record, obj, term, full)
            target, substitute = (observed.canonical if observed else f"not {term.canonical}"), term.canonical
            edited_question = None
        else:
            target = term.canonical
            options = (
                [m.term.canonical for m in asked if m.term != term]
                if choice
                else self.vocab.substitutes(term)
            )
            substitute = self._choose(record, options, {target}, f"{group} '{target}'")
            edited_question = (
                None
                if choice or mention is None
                else _replace(record.question, mention.start, mention.end, substitute)
            )
        return self._finish(
            record,
            level="attribute",
            group=group,
            target=target,
            substitute=substitute,
            template=self.vocab.templates.get(group, self.vocab.templates["color"]),
            edited_question=edited_question,
            boxes=[self._box(record, obj)],
            regions=[obj],
            object=obj,
        )

    def _attribute_group(self, record: QARecord) -> str | None:
        if record.category and record.category.lower() in ATTRIBUTE_GROUP:
            return ATTRIBUTE_GROUP[record.category.lower()]
        for step in record.extra.get("semantic") or []:
            op = str(step.get("operation", "")).split()
            if len(op) == 2 and op[1] in ATTRIBUTE_GROUP:
                return ATTRIBUTE_GROUP[op[1]]
        return None

    def _observed_attribute(
        self, record: QARecord, obj: str, asked: Term, full: list[Mention]
    ) -> Term | None:
        """The attribute the object really has, from the scene graph or the fullAnswer (a different one than asked)."""
        candidates = []
        for pname, oid in program_objects(record.extra):
            sg_obj = self._scene_objects(record).get(oid or "")
            if sg_obj is not None and (self._same(obj, sg_obj["name"]) or (pname and self._same(obj, pname))):
                candidates += [
                    self.vocab.find(a, "attribute", (asked.group,)) for a in sg_obj.get("attributes", [])
                ]
        candidates += [m.term for m in full]
        return next((t for t in candidates if t is not None and t != asked), None)

    # ------------------------------------------------------------------ relation level
    def _plan_relation(self, record: QARecord) -> EditPlan:
        raw = record.extra
        question = record.question
        mention, posture = self._relation_mention(question)
        if mention is not None:
            term = mention.term
            subject = re.sub(
                r"^(is|are|was|were)\s+(there\s+)?(the|an?)?\s*",
                "",
                question[: mention.start].strip(),
                flags=re.IGNORECASE,
            )
            if posture:
                subject = subject[: -len(posture)].strip()
            obj = re.sub(r"^(the|an?)\s+", "", question[mention.end :].strip(" ?"), flags=re.IGNORECASE)
        else:
            term, posture = next(
                ((t, p) for r in program_relations(raw) for t, p in [self._find_relation(r)] if t), (None, "")
            )
            names = object_names(raw)
            subject, obj = (names + ["", ""])[:2]
        if term is None:
            raise Unresolved(
                "no relation of the vocabulary in the question or program (extend relation.* with --vocab)"
            )
        if not subject or not obj:
            raise Unresolved("could not tell the relation's subject and object apart in the question")
        asked = f"{posture} {term.canonical}" if posture else term.canonical
        if record.answer == "no":
            target, substitute = f"not {asked}", asked
        else:
            choice = self._choose(
                record, self.vocab.substitutes(term), {term.canonical}, f"relation '{term.canonical}'"
            )
            target, substitute = asked, f"{posture} {choice}" if posture else choice
        sbox, obox = self.locate(record, subject), self.locate(record, obj)
        if sbox is None and obox is None and record.question_id not in self.user_masks:
            raise Unresolved(f"no box for '{subject}' or '{obj}' in object_positions or the scene graph")
        if self.relation_region == "subject" and sbox is not None:
            pairs = [(sbox, subject)]
        else:
            pairs = [(b, n) for b, n in ((sbox, subject), (obox, obj)) if b is not None]
        edited_question = None
        if mention is not None and record.answer != "no":
            start = mention.start - (len(posture) + 1 if posture else 0)
            edited_question = question[:start] + substitute + question[mention.end :]
        return self._finish(
            record,
            level="relation",
            group=term.group,
            target=target,
            substitute=substitute,
            template=self.vocab.templates["relation"],
            edited_question=edited_question,
            boxes=[b for b, _ in pairs],
            regions=[n for _, n in pairs],
            subject=subject,
            object=obj,
        )

    def _relation_mention(self, question: str) -> tuple[Mention | None, str]:
        """The relation between subject and object ("in front of"), and a posture word before it ("standing")."""
        for m in self.vocab.mentions(question, "relation"):
            if not re.match(r"\s+(the|an?)\s", question[m.end :], re.IGNORECASE):
                continue
            before = question[: m.start].rstrip().rsplit(" ", 1)[-1].lower()
            return m, before if before in self.vocab.postures else ""
        return None, ""

    def _find_relation(self, phrase: str) -> tuple[Term | None, str]:
        term = self.vocab.find(phrase, "relation")
        if term is not None:
            return term, ""
        first, _, rest = phrase.strip().partition(" ")
        if first.lower() in self.vocab.postures and rest:
            return self.vocab.find(rest, "relation"), first.lower()
        return None, ""
