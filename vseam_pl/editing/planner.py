"""Edit planning: from a GQA record, choose the concept to change, its substitute, the region and the prompts.

No LLM. Boxes and object names come from GQA's own evidence (program order, scene graphs, `fullAnswer`
annotations; see `EditPlanner`). The target comes from the question text, checked against the vocabulary and the
`semantic` program; a relation is the one of the program step the question words (its subject/object from GQA's
``s``/``o`` marker). Substitutes are drawn from the vocabulary with a generator seeded by ``(seed, question_id)``, so
a plan is the same whatever order or subset of records is planned; words the vocabulary lacks get generic in-class
substitutes (the category's object group, the attribute's group, the subject's "standing next to"). For these
yes/no verification questions the edit flips the answer: a "yes" record has its asked concept replaced (edited
answer "no"); a "no" record (attributes, relations) has the asked concept painted in (edited answer "yes").
See docs/editing.md.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..records import QARecord
from . import english
from .gqa import (
    Box,
    GQAFormatError,
    ProgramObject,
    ProgramRelation,
    annotated_words,
    as_box,
    object_names,
    program_attributes,
    program_boxes,
    program_objects,
    program_relations,
)
from .vocab import EditVocab, Mention, Term

#: GQA category → the attribute group it asks about.
ATTRIBUTE_GROUP = {"color": "color", "material": "material", "size": "size"}


class Unresolved(Exception):
    """The record's edit cannot be planned: `kind` is the short, record-independent cause the summary counts,
    `reason` the full message naming the record's words (reported, never silently dropped)."""

    def __init__(self, kind: str, reason: str | None = None) -> None:
        super().__init__(reason or kind)
        self.kind = kind
        self.reason = reason or kind


@dataclass(frozen=True)
class Refusal:
    """A record without a pair: question id, `kind` (counted in the summary) and the full `reason`."""

    question_id: str
    kind: str
    reason: str


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
    notes: tuple[str, ...] = ()  # doubts about the source record (e.g. the question reverses GQA's relation)

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
            "notes": list(self.notes),
        }


def flip(answer: str) -> str | None:
    """The opposite yes/no answer, keeping the casing style; None for open answers."""
    low = answer.strip().lower()
    if low not in ("yes", "no"):
        return None
    out = "no" if low == "yes" else "yes"
    return out.capitalize() if answer[:1].isupper() else out


#: Template -> the field whose noun decides the article ("a photo of {article} ...").
TEMPLATE_HEAD = {
    "object": "substitute",
    "color": "object",
    "material": "object",
    "size": "object",
    "relation": "subject",
}
_SHADES = ("light", "dark", "bright", "pale", "deep")
_LEAD = re.compile(r"^(is|are|was|were)\s+(?:there\s+)?(?:(?:the|an?)\s+)?", re.IGNORECASE)


@dataclass(frozen=True)
class _Object:
    """A program object with its box (None for distractors) and its specific name (`label`)."""

    obj: ProgramObject
    label: str
    box: Box | None


class EditPlanner:
    """Plans edits for records of any level with one vocabulary, seed and optional GQA scene graphs.

    Boxes come from GQA's own evidence: the scene graph by object id when given, else `object_positions`, which the
    release lists in *program order* (`gqa.program_boxes`). Each program object gets its specific name from the
    scene graph, the `fullAnswer` annotations, its program name, or by elimination against
    `relevant_objects`/`involved_objects` (whose order says nothing).
    """

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
            "unknown level",
            f"unknown level {level!r}: the category/`types.semantic` name no object/attribute/relation",
        )

    def plan_all(self, records: Iterable[QARecord]) -> tuple[list[EditPlan], list[Refusal]]:
        """Plans for all resolvable records, and a `Refusal` (id, kind, reason) for each of the others."""
        plans, unresolved = [], []
        for record in records:
            try:
                plans.append(self.plan(record))
            except Unresolved as e:
                unresolved.append(Refusal(record.question_id, e.kind, e.reason))
        return plans, unresolved

    # ------------------------------------------------------------------ objects and boxes
    def _rng(self, record: QARecord) -> random.Random:
        return random.Random(f"{self.seed}:{record.question_id}")

    def _scene_objects(self, record: QARecord) -> dict[str, dict[str, Any]]:
        return (self.scene_graphs.get(record.image_id) or {}).get("objects", {})

    def _same(self, a: str, b: str) -> bool:
        sa, sb = set(self.vocab.singulars(a)), set(self.vocab.singulars(b))
        return bool(sa & sb)

    def objects(self, record: QARecord) -> list[_Object]:
        """The record's program objects (first mention of each id; distractors too) with names and boxes."""
        raw, sg = record.extra, self._scene_objects(record)
        where = f"{record.source}: record {record.question_id}"
        progs: list[ProgramObject] = []  # first mention of each id, in program order
        for o in program_objects(raw):
            if o.oid is None or all(p.oid != o.oid for p in progs):
                progs.append(o)
        try:
            boxes = program_boxes(raw, where) if raw.get("object_positions") else {}
        except GQAFormatError as e:
            if not sg:
                raise Unresolved("object_positions do not match the program", str(e)) from None
            boxes = {}
        for o in progs:
            if o.oid in sg:
                boxes[o.oid] = as_box(sg[o.oid], f"scene graph of image {record.image_id}, object {o.oid}")
        names = object_names(raw)
        words = annotated_words(raw)
        labels: dict[int, str] = {}
        free = list(names)
        for i, o in enumerate(progs):  # GQA's own words for the object: scene graph, fullAnswer, program
            if o.oid is None:  # a "(-)" distractor is not in the image and names no box
                continue
            cands = ([sg[o.oid]["name"]] if o.oid in sg else []) + words.get(o.oid or "", []) + [o.name or ""]
            hit = next((n for n in free if any(c and self._same(n, c) for c in cands)), None)
            if hit is not None:
                labels[i] = hit
                free.remove(hit)
            elif o.oid in sg:
                labels[i] = str(sg[o.oid]["name"])
        # a class word ("animal", "he") names the one remaining name of that class
        for i, o in enumerate(progs):
            cls = self.vocab.object_class(o.name or "") if i not in labels and o.oid else None
            match = [n for n in free if cls and self.vocab.object_class(n) == cls]
            if len(match) == 1:
                labels[i] = match[0]
                free.remove(match[0])
        main = [i for i, o in enumerate(progs) if i not in labels and o.oid and self._names_step(raw, o)]
        if len(main) == 1 and len(free) == 1:  # elimination: one unnamed object, one unused name
            labels[main[0]] = free.pop()
        return [_Object(o, labels.get(i, o.name or ""), boxes.get(o.oid or "")) for i, o in enumerate(progs)]

    @staticmethod
    def _names_step(raw: dict[str, Any], o: ProgramObject) -> bool:
        """Objects of select/relate steps are the ones `relevant_objects`/`involved_objects` name."""
        op = str((raw.get("semantic") or [{}] * (o.step + 1))[o.step].get("operation", ""))
        return op == "select" or op == "relate"

    def _find_object(self, record: QARecord, name: str, among: list[_Object] | None = None) -> _Object | None:
        among = self.objects(record) if among is None else among
        return next((o for o in among if o.label and self._same(name, o.label)), None) or next(
            (o for o in among if o.obj.name and self._same(name, o.obj.name)), None
        )

    def locate(self, record: QARecord, name: str) -> Box | None:
        """The box of the object called `name` (scene graph by object id, else `object_positions` in program order)."""
        found = self._find_object(record, name)
        return found.box if found else None

    def _checked(self, record: QARecord, name: str, box: Box | None) -> Box | None:
        if box is None and record.question_id in self.user_masks:
            return None
        if box is None:
            raise Unresolved("no box", f"no box for '{name}' in object_positions or the scene graph")
        if box[2] <= 0 or box[3] <= 0:
            raise Unresolved("empty box", f"box of '{name}' is empty: {box}")
        return box

    def _box(self, record: QARecord, name: str) -> Box | None:
        return self._checked(record, name, self.locate(record, name))

    def _choose(self, record: QARecord, options: list[str], exclude: set[str], what: str) -> str:
        pool = [o for o in dict.fromkeys(options) if o.lower() not in exclude]
        if not pool:
            raise Unresolved(
                "no substitute", f"no substitute for {what} in the vocabulary (all candidates excluded)"
            )
        return self._rng(record).choice(pool)

    def _finish(
        self,
        record: QARecord,
        *,
        level: str,
        group: str,
        target: str,
        substitute: str,
        template_key: str,
        edited_question: str | None,
        boxes: list[Box | None],
        regions: list[str],
        notes: tuple[str, ...] = (),
        many: bool | None = None,
        **fields: str,
    ) -> EditPlan:
        template = self.vocab.templates.get(template_key, self.vocab.templates["color"])
        fill = {"substitute": substitute, "target": target, **fields}
        after = template.split("{article}", 1)[1].strip().split(" ", 1)[0] if "{article}" in template else ""
        word = after.format(**fill).split(" ")[0] if after else ""
        head = fill.get(TEMPLATE_HEAD.get(template_key, "object"), substitute)
        if many is None:  # given when the noun's form does not tell ("fish" for "cows")
            many = self.vocab.is_plural(head) or head.rpartition(" ")[2].lower() in english.MASS
        fill["article"] = "" if not word or many else english.indefinite(word)
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
            notes=notes,
        )

    def _negative(self, level: str) -> str:
        if self.negative_prompt is not None:
            return self.negative_prompt
        return self.vocab.templates["relation_negative" if level == "relation" else "negative"]

    # ------------------------------------------------------------------ object level
    def _plan_object(self, record: QARecord) -> EditPlan:
        raw = record.extra
        names = object_names(raw) or [o.name for o in program_objects(raw) if o.name]
        if record.answer == "no":
            raise Unresolved(
                "object answer is 'no'",
                "answer is 'no': the asked object is not in the image, so there is nothing to replace",
            )
        mention = self._object_mention(record, names)
        if mention is None:
            raise Unresolved(
                "no object in the question",
                "no object named in the question, relevant_objects or the program",
            )
        surface, start, end, term = mention
        name = next((n for n in names if self._same(surface, n)), surface)
        if term is not None:
            group, canonical = term.group, term.canonical
            options = self.vocab.substitutes(term)
        else:  # out of vocabulary: a generic substitute from the group the category names
            group = self.vocab.category_group(record.category) or self.vocab.object_class(surface)
            if group is None or group not in self.vocab.groups("object"):
                raise Unresolved(
                    "object not in vocabulary",
                    f"object '{surface}' is in no object group of the vocabulary and category {record.category!r} "
                    "names none (extend it with --vocab)",
                )
            canonical = english.singular(surface.lower())
            options = list(self.vocab.data["object"][group])
        exclude = self._present_objects(record, names)
        exclude.discard(canonical)
        exclude.add(canonical)
        substitute = self._choose(record, options, exclude, f"'{canonical}'")
        plural = self.vocab.is_plural(surface) or (  # "Are there sheep": the verb tells the number
            english.singular(surface.lower()) in english.INVARIANT
            and record.question.lower().startswith("are ")
        )
        surface_sub = self.vocab.plural(substitute) if plural else substitute
        return self._finish(
            record,
            level="object",
            group=group,
            target=surface.lower(),
            substitute=surface_sub,
            template_key="object",
            edited_question=english.replace_noun(record.question, start, end, surface_sub, plural),
            boxes=[self._box(record, name)],
            regions=[name],
            many=plural or None,
        )

    def _object_mention(self, record: QARecord, names: list[str]) -> tuple[str, int, int, Term | None] | None:
        """The asked object in the question: a vocabulary mention that is one of the record's objects, else the
        record's (out-of-vocabulary) object name as written in the question."""
        mentions = self.vocab.mentions(record.question, "object")
        for m in mentions:
            if not names or any(
                self._same(m.surface, n) or self.vocab.find(n, "object") == m.term for n in names
            ):
                return m.surface, m.start, m.end, m.term
        for n in names:
            for form in dict.fromkeys([n, self.vocab.plural(n), english.singular(n)]):
                hit = re.search(rf"(?<![\w-]){re.escape(form)}(?![\w-])", record.question, re.IGNORECASE)
                if hit:
                    return hit.group(0), hit.start(), hit.end(), self.vocab.find(hit.group(0), "object")
        return None

    def _present_objects(self, record: QARecord, names: list[str]) -> set[str]:
        """Canonical names of objects the record or scene graph says are (or are asked to be) in the image:
        substituting one of them would not change the answer."""
        present = list(names) + [o.name for o in program_objects(record.extra) if o.name]
        present += [o["name"] for o in self._scene_objects(record).values()]
        out = set()
        for n in present:
            term = self.vocab.find(n, "object")
            out.add(term.canonical if term else english.singular(n.lower()))
        return out

    # ------------------------------------------------------------------ attribute level
    def _plan_attribute(self, record: QARecord) -> EditPlan:
        raw = record.extra
        group = self._attribute_group(record)
        groups = (group,) if group else None
        objects = [
            o for o in self.objects(record) if o.box is not None or not record.extra.get("object_positions")
        ]
        names = object_names(raw) or [o.label for o in objects if o.label]
        if not names:
            raise Unresolved(
                "no object",
                "no object whose attribute is asked (relevant/involved_objects and program are empty)",
            )
        obj = names[0]
        asked = self.vocab.mentions(record.question, "attribute", groups)
        full = self.vocab.mentions(str(raw.get("fullAnswer", "")), "attribute", groups)
        choice = len({m.term for m in asked}) > 1
        span: tuple[int, int] | None = None
        if choice:  # "Is the fence wooden or metallic?": the fullAnswer says which holds
            held = {m.term for m in full}
            mention = next((m for m in asked if m.term in held), asked[0])
        else:
            mention = asked[-1] if asked else None
        if mention is not None:
            term: Term | None = mention.term
            canonical, span = mention.term.canonical, (mention.start, mention.end)
            shade = re.search(
                rf"\b({'|'.join(_SHADES)})\s+$", record.question[: mention.start], re.IGNORECASE
            )
            if (
                shade and mention.term.group == "color"
            ):  # "light blue" is edited as a whole: never "light brown"
                span = (shade.start(1), mention.end)
        else:
            term = next(
                (
                    t
                    for v in program_attributes(raw, group or "")
                    if (t := self.vocab.find(v, "attribute", groups))
                ),
                None,
            )
            canonical = term.canonical if term else ""
            if term is None and group in self.vocab.groups("attribute"):  # out of vocabulary, group known
                found = self._asked_value(record, obj, group)
                if found is not None:
                    canonical, span = found[0].lower(), found[1]
        if not canonical:
            raise Unresolved(
                "no attribute found",
                f"no {group or 'attribute'} value in the question or program of the record",
            )
        group = term.group if term else group or ""
        worded = record.question[span[0] : span[1]].lower() if span and not choice else canonical
        asked_text = (
            worded if term is None or worded.split()[0] in _SHADES else canonical
        )  # "light blue", "khaki"
        if record.answer == "no":
            observed = self._observed_attribute(record, obj, term, full) if term else None
            target, substitute = (observed.canonical if observed else f"not {asked_text}"), asked_text
            edited_question = None
        else:
            target = asked_text
            if choice:
                options = [m.term.canonical for m in asked if m.term != term]
            elif term is not None:
                options = self.vocab.substitutes(term, obj)
            else:
                options = list(self.vocab.data["attribute"][group])
            substitute = self._choose(record, options, {target}, f"{group} '{target}'")
            edited_question = (
                None
                if choice or span is None
                else record.question[: span[0]] + substitute + record.question[span[1] :]
            )
        return self._finish(
            record,
            level="attribute",
            group=group,
            target=target,
            substitute=substitute,
            template_key=group if group in self.vocab.templates else "color",
            edited_question=edited_question,
            boxes=[self._box(record, obj)],
            regions=[obj],
            object=obj,
        )

    @staticmethod
    def _asked_value(record: QARecord, obj: str, group: str) -> tuple[str, tuple[int, int]] | None:
        """An attribute value the vocabulary lacks, read from the question's GQA template:
        "Is the X made of V?" (material), "Is the X V?" / "Does the X look V?" (colour, size)."""
        q = record.question
        pattern = (
            r"\bmade of\s+(?:an?\s+)?([\w-]+)\s*\?$"
            if group == "material"
            else r"^(?:is|are|does|do)\b.*\s([\w-]+)\s*\?$"
        )
        m = re.search(pattern, q, re.IGNORECASE)
        if m and m.group(1).lower() not in (obj.lower(), "the"):
            return m.group(1), (m.start(1), m.end(1))
        values = [v for v in program_attributes(record.extra, group) if v]
        for v in values:
            hit = re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", q, re.IGNORECASE)
            if hit:
                return hit.group(0), (hit.start(), hit.end())
        return None

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
        sg = self._scene_objects(record)
        for o in self.objects(record):
            sg_obj = sg.get(o.obj.oid or "")
            if sg_obj is not None and (self._same(obj, o.label) or self._same(obj, str(sg_obj["name"]))):
                candidates += [
                    self.vocab.find(a, "attribute", (asked.group,)) for a in sg_obj.get("attributes", [])
                ]
        candidates += [m.term for m in full]
        return next((t for t in candidates if t is not None and t != asked), None)

    # ------------------------------------------------------------------ relation level
    def _plan_relation(self, record: QARecord) -> EditPlan:
        q = record.question
        objects = self.objects(record)
        phrase, span, step = self._asked_relation(record)
        if span is not None:
            subject = _LEAD.sub("", q[: span[0]].strip())
            obj = re.sub(r"^(the|an?)\s+", "", q[span[1] :].strip(" ?"), flags=re.IGNORECASE)
        elif step is not None:
            subject, obj = self._label(objects, step.subject), self._label(objects, step.object)
        else:
            raise Unresolved("no relation found", "no relation in the question or the semantic program")
        if not subject or not obj:
            raise Unresolved(
                "no subject or object", f"could not tell the subject and object of '{phrase}' apart"
            )
        kind, verb, core = self._analyse(phrase)
        notes: list[str] = []
        sobj, oobj = self._relation_objects(record, objects, step, subject, obj, notes)
        on_ground = self._on_ground(phrase, subject, obj)
        if on_ground is not None:
            group, options = on_ground
            canonical = phrase.lower()
        elif kind == "spatial":
            assert core is not None
            group, canonical = core.group, core.canonical
            options = [f"{verb} {o}".strip() for o in self.vocab.substitutes(core)]
        else:
            term = core
            group = "action"
            canonical = term.canonical if term else phrase
            fitting = [
                a for a in (self.vocab.substitutes(term) if term else []) if self.vocab.fits(a, subject, obj)
            ]
            options = fitting or [self.vocab.generic_relation(subject)]
        if record.answer == "no":
            target, substitute = f"not {phrase}", phrase
        else:
            target = phrase
            substitute = self._choose(record, options, {phrase.lower(), canonical}, f"relation '{phrase}'")
        boxes = [sobj.box if sobj else None, oobj.box if oobj else None]
        if all(b is None for b in boxes) and record.question_id not in self.user_masks:
            raise Unresolved(
                "no box", f"no box for '{subject}' or '{obj}' in object_positions or the scene graph"
            )
        pairs = [(b, n) for b, n in zip(boxes, (subject, obj), strict=True) if b is not None]
        if self.relation_region == "subject" and boxes[0] is not None:
            pairs = pairs[:1]
        for b, n in pairs:
            self._checked(record, n, b)
        edited_question = None
        if span is not None and record.answer != "no":
            edited_question = english.agree(q[: span[0]] + substitute + q[span[1] :], subject)
        return self._finish(
            record,
            level="relation",
            group=group,
            target=target,
            substitute=substitute,
            template_key="relation",
            edited_question=edited_question,
            boxes=[b for b, _ in pairs],
            regions=[n for _, n in pairs],
            notes=tuple(notes),
            subject=subject,
            object=obj,
        )

    @staticmethod
    def _label(objects: list[_Object], o: ProgramObject) -> str:
        return next((x.label for x in objects if x.obj == o), o.name or "")

    def _is_surface(self, noun: str) -> bool:
        return bool(set(self.vocab.singulars(noun)) & self.vocab.surfaces)

    def _on_ground(self, phrase: str, subject: str, obj: str) -> tuple[str, list[str]] | None:
        """(group, substitutes) for '[posture] on / on top of' a ground surface, which has no opposite 'under'
        (`ground_relations` in the vocabulary): a posture becomes another posture on the same surface ("standing
        on the sidewalk" -> "sitting on" / "lying on"); anything else leaves the surface: off a floor into the air
        ("jumping above the ground"), off another surface beside it (the subject's generic relation: "parked next
        to the street"). None when the phrase is not 'on' a ground surface, or is an action the vocabulary lists
        with its own substitutes ("parked on" -> "driving on")."""
        if not self._is_surface(obj):
            return None
        low = " ".join(phrase.lower().split())
        verb, _, rest = low.partition(" ")
        on = self.vocab.find(rest, "relation") if rest else None
        if on is None or on.canonical not in ("on", "on top of"):
            verb, rest, on = "", low, self.vocab.find(low, "relation")
            if on is None or on.canonical not in ("on", "on top of"):
                return None
        rules = self.vocab.ground_relations
        swaps = rules.get("postures", {})
        if verb in swaps:
            return "action", [f"{p} {rest}" for p in swaps[verb]]
        whole = self.vocab.find(low, "relation")
        if whole is not None and whole.group == "action":
            return None
        if set(self.vocab.singulars(obj)) & set(rules.get("floors", ())):
            leave = rules.get("leave_floor", {})
            return "spatial", [leave.get(self.vocab.object_class(subject) or "*", leave.get("*", "above"))]
        return "spatial", [self.vocab.generic_relation(subject)]

    def _asked_relation(self, record: QARecord) -> tuple[str, tuple[int, int] | None, ProgramRelation | None]:
        """The relation the question asks about: the longest relation phrase of a program step found in the question
        (its step gives subject and object), else the longest vocabulary relation followed by "the/a", else the
        program's first relation step (no span: the question does not word it). A verb ("riding" in "riding on")
        right before the phrase belongs to the relation, never to the subject."""
        q, rels = record.question, program_relations(record.extra)
        best: tuple[int, int, int, ProgramRelation] | None = None
        for r in rels:
            for phrase in r.relations:
                for m in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", q, re.IGNORECASE):
                    if best is None or m.end() - m.start() > best[1] - best[0]:
                        best = (m.start(), m.end(), 0, r)
        start: int | None
        if best is not None:
            start, end, step = best[0], best[1], best[3]
        else:
            found = [
                m
                for m in self.vocab.mentions(q, "relation")
                if re.match(r"\s+(the|an?)\s", q[m.end :], re.IGNORECASE)
            ]
            if not found:
                if not rels:
                    return "", None, None
                return rels[0].relations[0], None, rels[0]
            m = max(found, key=lambda m: (m.end - m.start, -m.start))
            start, end = m.start, m.end
            step = next(
                (r for r in rels if any(self.vocab.find(p, "relation") == m.term for p in r.relations)),
                rels[0] if rels else None,
            )
        tail = re.match(r"((?:\s+(?!(?:the|an?)\b)[a-z]+){1,3}?)\s+(?:the|an?)\s", q[end:], re.IGNORECASE)
        if (
            tail
        ):  # the program says "riding", the question "riding on the horse": "on" belongs to the relation
            end += len(tail.group(1))
        before = q[:start].rstrip()
        word = before.rsplit(" ", 1)[-1]
        if word.lower().endswith("ing") or word.lower() in self.vocab.postures:
            if len(before.split()) > 3:  # keep at least "Is the <noun>" as the subject
                start = len(before) - len(word)
        return q[start:end], (start, end), step

    def _analyse(self, phrase: str) -> tuple[str, str, Term | None]:
        """(kind, verb, core): "behind" → spatial; "standing behind" → spatial with the posture kept;
        "riding on"/"riding" → the action "riding"; any other phrase ("talking on", "juggling") → an action the
        vocabulary lacks (core None), edited with the subject's generic relation ("standing next to")."""
        low = phrase.lower().strip()
        whole = self.vocab.find(low, "relation")
        if whole is not None:
            return ("spatial", "", whole) if whole.group == "spatial" else ("action", "", whole)
        first, _, rest = low.partition(" ")
        core = self.vocab.find(rest, "relation") if rest else None
        verb_term = self.vocab.find(first, "relation")
        if verb_term is not None and verb_term.group == "action":
            return "action", first, verb_term
        if core is not None and core.group == "spatial" and first in self.vocab.postures:
            return (
                "spatial",
                first,
                core,
            )  # a posture keeps its place: "standing behind" -> "standing in front of"
        return "action", first, None

    def _relation_objects(
        self,
        record: QARecord,
        objects: list[_Object],
        step: ProgramRelation | None,
        subject: str,
        obj: str,
        notes: list[str],
    ) -> tuple[_Object | None, _Object | None]:
        """The program objects the question's subject and object name, in the question's order. When the question
        names the step's objects the other way round, a note says so (the release's question reverses GQA's
        relation, so its "yes" is doubtful for asymmetric relations)."""
        if step is None:
            return self._find_object(record, subject, objects), self._find_object(record, obj, objects)
        s = next((x for x in objects if x.obj.oid == step.subject.oid and x.obj.oid), None)
        o = next((x for x in objects if x.obj.oid == step.object.oid and x.obj.oid), None)
        s = s or next((x for x in objects if x.obj == step.subject), None)
        o = o or next((x for x in objects if x.obj == step.object), None)

        def named(x: _Object | None, noun: str) -> bool:
            return x is not None and any(n and self._same(noun, n) for n in (x.label, x.obj.name or ""))

        if named(o, subject) and named(s, obj) and not (named(s, subject) and named(o, obj)):
            notes.append(
                f"the question asks '{subject} {'/'.join(step.relations)} {obj}' but GQA's program states "
                f"'{obj} {'/'.join(step.relations)} {subject}'"
            )
            return o, s
        if named(s, subject) or named(o, obj):
            return s, o
        # the question names neither program object: fall back to names, then to the program's roles
        return (
            self._find_object(record, subject, objects) or s,
            self._find_object(record, obj, objects) or o,
        )
