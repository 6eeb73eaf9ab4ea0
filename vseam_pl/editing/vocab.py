"""Curated edit vocabularies: which concept can replace which, without an external LLM.

The default lives in ``vseam_pl/resources/edit_vocab.json``; a user file passed with ``--vocab`` is merged into it
(lists extended, mappings merged key by key), so users extend the vocabulary instead of copying it. Every group maps a
canonical term to its aliases; a substitute is always another *canonical* term of the same group, so an alias
(``steel`` for ``metal``, ``kitten`` for ``cat``) can never be picked as the "different" concept.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from ..io import read_json
from . import english

LEVEL_KEYS = ("object", "attribute", "relation")
TEMPLATE_KEYS = ("object", "color", "material", "size", "relation", "negative", "relation_negative")


class VocabError(ValueError):
    """A malformed vocabulary file; the message names the file and the key."""


@dataclass(frozen=True)
class Term:
    """A canonical concept of the vocabulary: `level` (object/attribute/relation), `group` (animals, material, …)."""

    level: str
    group: str
    canonical: str


@dataclass(frozen=True)
class Mention:
    """Where a vocabulary term occurs in a text (`surface` is the text as written)."""

    term: Term
    surface: str
    start: int
    end: int
    plural: bool = False


def merge_vocab(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge `extra` into a copy of `base`: mappings recursively, lists extended without duplicates."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_vocab(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + [v for v in value if v not in out[key]]
        else:
            out[key] = value
    return out


class EditVocab:
    """Look-ups over the merged vocabulary: find mentions, inflect nouns, list substitutes."""

    def __init__(self, data: dict[str, Any], source: str = "<vocab>") -> None:
        self.data = data
        self.source = source
        self._terms: dict[tuple[str, str], Term] = {}  # (level, lowercase surface) -> Term
        self._groups: dict[tuple[str, str], list[str]] = {}  # (level, group) -> canonicals
        self._validate_and_index()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, user: str | os.PathLike | None = None) -> EditVocab:
        """The packaged vocabulary, merged with a user JSON file when given."""
        text = resources.files("vseam_pl.resources").joinpath("edit_vocab.json").read_text()
        data = json.loads(text)
        source = "vseam_pl/resources/edit_vocab.json"
        if user is not None:
            path = Path(user)
            extra = read_json(path, "vocabulary file", VocabError)
            if not isinstance(extra, dict):
                raise VocabError(f"{path}: expected a JSON object with keys like {list(LEVEL_KEYS)}")
            data = merge_vocab(data, extra)
            source = f"{source} + {path}"
        return cls(data, source)

    def _validate_and_index(self) -> None:
        for level in LEVEL_KEYS:
            groups = self.data.get(level)
            if not isinstance(groups, dict):
                raise VocabError(f"{self.source}: '{level}' must map group names to {{term: [...]}}")
            for group, entries in groups.items():
                if not isinstance(entries, dict):
                    raise VocabError(
                        f"{self.source}: '{level}.{group}' must map terms to lists, got {type(entries).__name__}"
                    )
                self._groups[(level, group)] = list(entries)
                for canonical, others in entries.items():
                    if not isinstance(others, list) or not all(isinstance(o, str) for o in others):
                        raise VocabError(
                            f"{self.source}: '{level}.{group}.{canonical}' must be a list of strings"
                        )
                    term = Term(level, group, canonical)
                    # relations list their contradicting relations, not aliases
                    surfaces = [canonical] if level == "relation" else [canonical, *others]
                    for surface in surfaces:
                        self._add(level, surface, term)
        aliases = self.data.get("relation_aliases", {})
        for alias, canonical in aliases.items():
            term = self._terms.get(("relation", canonical.lower()))
            if term is None:
                raise VocabError(
                    f"{self.source}: relation_aliases.'{alias}' points to unknown relation '{canonical}'"
                )
            self._add("relation", alias, term)
        for key in TEMPLATE_KEYS:
            if not isinstance(self.data.get("templates", {}).get(key), str):
                raise VocabError(f"{self.source}: templates.{key} must be a string")
        self._overlaps = self._index_overlaps()

    def _index_overlaps(self) -> dict[str, set[str]]:
        """canonical -> canonicals that can name the same thing (`object_overlaps`, made symmetric)."""
        overlaps: dict[str, set[str]] = {}
        for general, specific in self.data.get("object_overlaps", {}).items():
            if general.startswith("_"):
                continue
            if not isinstance(specific, list):
                raise VocabError(f"{self.source}: object_overlaps.'{general}' must be a list of object terms")
            terms = []
            for name in (general, *specific):
                term = self.find(name, "object") if isinstance(name, str) else None
                if term is None:
                    raise VocabError(
                        f"{self.source}: object_overlaps.'{general}' names {name!r}, which is no object term"
                    )
                terms.append(term.canonical)
            for other in terms[1:]:
                overlaps.setdefault(terms[0], set()).add(other)
                overlaps.setdefault(other, set()).add(terms[0])
        return overlaps

    def _add(self, level: str, surface: str, term: Term) -> None:
        key = (level, surface.lower())
        other = self._terms.get(key)
        if other is not None and other != term:
            raise VocabError(
                f"{self.source}: '{surface}' is listed under both {other.level}.{other.group}.{other.canonical} and "
                f"{term.level}.{term.group}.{term.canonical}; a term may belong to one entry only"
            )
        self._terms[key] = term

    # ------------------------------------------------------------------ inflection
    @cached_property
    def _plural_of(self) -> dict[str, str]:
        return {k.lower(): v.lower() for k, v in self.data.get("irregular_plurals", {}).items()}

    @cached_property
    def _singular_of(self) -> dict[str, str]:
        return {v: k for k, v in self._plural_of.items()}

    def plural(self, noun: str) -> str:
        """English plural of a (possibly multi-word) noun: the vocabulary's irregular table, else `english.plural`."""
        head, _, last = noun.rpartition(" ")
        low = last.lower()
        if low in self._plural_of:
            return f"{head} {self._plural_of[low]}" if head else self._plural_of[low]
        return english.plural(noun)

    def is_plural(self, noun: str) -> bool:
        """Whether a noun reads as plural (articles, "is"/"are"): the irregular table, else `english.is_plural`."""
        last = noun.lower().rpartition(" ")[2]
        if last in self._singular_of:
            return self._singular_of[last] != last
        if last in self._plural_of:
            return False
        return english.is_plural(noun)

    def singulars(self, noun: str) -> list[str]:
        """Candidate singular forms of `noun` (itself first), for vocabulary look-up."""
        head, _, last = noun.lower().rpartition(" ")
        cands = [last]
        if last in self._singular_of:
            cands.append(self._singular_of[last])
        cands.append(english.singular(last).lower())
        if last.endswith("ies"):
            cands.append(last[:-3] + "y")
        if last.endswith("ves"):
            cands += [last[:-3] + "f", last[:-3] + "fe"]
        if last.endswith("es"):
            cands.append(last[:-2])
        if last.endswith("s") and not last.endswith("ss"):
            cands.append(last[:-1])
        return [f"{head} {c}" if head else c for c in dict.fromkeys(cands)]

    # ------------------------------------------------------------------ look-up
    def find(self, phrase: str, level: str, groups: tuple[str, ...] | None = None) -> Term | None:
        """The term a phrase names (aliases and plurals resolved), or None."""
        for cand in self.singulars(phrase.strip()):
            term = self._terms.get((level, cand))
            if term is not None and (groups is None or term.group in groups):
                return term
        return None

    def mentions(self, text: str, level: str, groups: tuple[str, ...] | None = None) -> list[Mention]:
        """Non-overlapping vocabulary mentions in `text`, left to right, longest surface first at each place."""
        pattern, surfaces = self._pattern(level, groups)
        found = []
        for m in pattern.finditer(text):
            term, plural = surfaces[m.group(0).lower()]
            found.append(Mention(term, m.group(0), m.start(), m.end(), plural))
        return found

    def _pattern(
        self, level: str, groups: tuple[str, ...] | None
    ) -> tuple[re.Pattern[str], dict[str, tuple[Term, bool]]]:
        cache = self.__dict__.setdefault("_pattern_cache", {})
        key = (level, groups)
        if key not in cache:
            surfaces: dict[str, tuple[Term, bool]] = {}
            for (lvl, surface), term in self._terms.items():
                if lvl != level or (groups is not None and term.group not in groups):
                    continue
                surfaces.setdefault(surface, (term, False))
                if level == "object":
                    surfaces.setdefault(self.plural(surface).lower(), (term, True))
            alternation = "|".join(re.escape(s) for s in sorted(surfaces, key=len, reverse=True))
            cache[key] = (re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE), surfaces)
        return cache[key]

    def _kinds(self, value: str, obj: str | None) -> list[dict[str, list[str]]]:
        """The `attribute_kinds` holding `value`, narrowed to those fitting the object `obj` when any does."""
        holding = [k for k in self._table("attribute_kinds").values() if value in k.get("values", ())]
        if obj is None:
            return holding
        names = {self.object_class(obj), *self.singulars(obj)}
        if set(self.singulars(obj)) & self.surfaces:
            names.add("surfaces")
        fitting = [k for k in holding if names & set(k.get("objects", ()))]
        return fitting or holding

    def substitutes(self, term: Term, obj: str | None = None) -> list[str]:
        """Canonical terms that contradict `term`: relation opposites, size opposites, values of the same
        `attribute_kinds` that fit the edited object `obj` (a brick sidewalk: stone, not leather), else the group's others (less those that can name the same
        thing, per `object_overlaps`)."""
        if term.level == "relation":
            return list(self.data["relation"][term.group][term.canonical])
        opposites = self.data.get("attribute_opposites", {}).get(term.canonical)
        if term.level == "attribute" and opposites:
            return list(opposites)
        kinds = [k["values"] for k in self._kinds(term.canonical, obj)]
        if term.level == "attribute" and kinds:  # physically interchangeable values only
            return [c for c in dict.fromkeys(v for k in kinds for v in k) if c != term.canonical]
        overlapping = self._overlaps.get(term.canonical, set()) if term.level == "object" else set()
        return [
            c for c in self._groups[(term.level, term.group)] if c != term.canonical and c not in overlapping
        ]

    def groups(self, level: str) -> tuple[str, ...]:
        return tuple(g for (lvl, g) in self._groups if lvl == level)

    @property
    def postures(self) -> tuple[str, ...]:
        return tuple(self.data.get("postures", ()))

    @property
    def templates(self) -> dict[str, str]:
        return dict(self.data["templates"])

    # ------------------------------------------------------------------ relation frames
    def _table(self, key: str) -> dict[str, Any]:
        return {k: v for k, v in (self.data.get(key) or {}).items() if not k.startswith("_")}

    def object_class(self, noun: str) -> str | None:
        """The object group a noun belongs to: its vocabulary group, else GQA's class word (``animal``, ``he``)."""
        term = self.find(noun, "object")
        if term is not None:
            return term.group
        classes = self._table("class_words")
        return next((classes[c] for c in self.singulars(noun) if c in classes), None)

    def fits(self, action: str, subject: str, obj: str) -> bool:
        """Whether `subject` can do `action` to `obj` per `action_frames` (groups or terms; '*' = any)."""
        frame = self._table("action_frames").get(action)
        if frame is None:
            return True

        def ok(noun: str, allowed: list[str]) -> bool:
            if "*" in allowed:
                return True
            term = self.find(noun, "object")
            names = {self.object_class(noun), term.canonical if term else None, *self.singulars(noun)}
            return bool(names & set(allowed))

        return ok(subject, frame.get("subjects", ["*"])) and ok(obj, frame.get("objects", ["*"]))

    def generic_relation(self, subject: str) -> str:
        """The relation any subject of its group can take towards any object ("standing next to", "next to")."""
        table = self._table("generic_relation")
        return table.get(self.object_class(subject) or "*", table.get("*", "next to"))

    def category_group(self, category: str | None) -> str | None:
        return self._table("category_groups").get((category or "").lower())

    @property
    def surfaces(self) -> frozenset[str]:
        return frozenset(self.data.get("surfaces", ()))

    @property
    def ground_relations(self) -> dict[str, Any]:
        """How 'on' a ground surface is edited (no 'under' there): posture swaps, floors, leaving the floor."""
        return self._table("ground_relations")
