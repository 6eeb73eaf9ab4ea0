"""English for prompts and edited questions: articles, plurals and number agreement.

`inflect` supplies a/an ("an umbrella", "a uniform", "an hour") and plurals (man → men, knife → knives); what it gets
wrong for GQA's nouns — singular nouns ending in -s ("bus", "glass"), nouns only used in the plural ("pants",
"jeans", "skis" as a pair) — is corrected from the small tables below, so "a photo of white pants" and
"Are there skis" come out right.
"""

from __future__ import annotations

import re
from functools import lru_cache

import inflect

_ENGINE = inflect.engine()

#: Nouns that are grammatically plural even for one thing.
PLURALIA_TANTUM = frozenset(
    "pants jeans shorts trousers glasses sunglasses eyeglasses goggles scissors binoculars headphones earphones "
    "pliers tongs tweezers leggings overalls pajamas pyjamas tights sweatpants panties briefs boxers clothes "
    "people police cattle stairs steps contents".split()
)
#: Singular nouns ending in s (or with an identical plural) that a suffix rule would read as plurals.
SINGULAR_S = frozenset(
    "bus glass grass dress lens gas canvas mattress cactus octopus iris asparagus hummus couscous chess "
    "bonus walrus circus citrus bus virus atlas bass boss moss cross compass address mess hippopotamus "
    "crocus lotus plus bias series species news tennis lettuce christmas chassis".split()
)
#: Mass nouns: no "a/an" ("a photo of white hair", "a photo of brown grass").
MASS = frozenset(
    "hair grass water snow sand food bread rice meat broccoli lettuce cheese furniture dirt pavement concrete wood "
    "foliage fur smoke steam ice traffic luggage paper clothing toast pasta soup milk coffee tea juice salad "
    "sauce cream butter corn spinach cereal candy chocolate hay mud gravel asphalt".split()
)
#: Nouns whose plural is the same word: the number comes from the sentence, not the noun.
INVARIANT = frozenset("sheep deer fish moose bison species series aircraft salmon trout swine".split())


def _last(noun: str) -> tuple[str, str]:
    head, _, last = noun.strip().rpartition(" ")
    return head, last


@lru_cache(maxsize=4096)
def plural(noun: str) -> str:
    """The plural of a (possibly multi-word) noun; the last word is inflected, already plural words are kept."""
    head, last = _last(noun)
    low = last.lower()
    if not low.isalpha() or low in PLURALIA_TANTUM or low in INVARIANT or is_plural(low):
        out = last
    else:
        out = _ENGINE.plural_noun(last) or last
    return f"{head} {out}" if head else out


@lru_cache(maxsize=4096)
def is_plural(noun: str) -> bool:
    """Whether a noun (last word decides) reads as plural: pluralia tantum, inflect's plural forms, else no.

    Invariant nouns ("sheep") count as singular; use the sentence's verb ("Are there sheep") for their number.
    """
    low = _last(noun)[1].lower()
    if not low.isalpha():
        return False
    if low in PLURALIA_TANTUM:
        return True
    if low in SINGULAR_S or low in INVARIANT or low.endswith(("ss", "us")):
        return False
    singular = _ENGINE.singular_noun(low)
    return bool(singular) and singular != low and _ENGINE.plural_noun(singular) == low


@lru_cache(maxsize=4096)
def singular(noun: str) -> str:
    """The singular of a plural noun (others unchanged): "skis" → "ski", "men" → "man"; "pants" stays."""
    head, last = _last(noun)
    low = last.lower()
    out = last
    if low and low not in PLURALIA_TANTUM and is_plural(low):
        out = _ENGINE.singular_noun(low) or last
    return f"{head} {out}" if head else out


def indefinite(word: str) -> str:
    """'a' or 'an' for the word that follows the article (by sound: "an hour", "a uniform", "an umbrella")."""
    return _ENGINE.a(word).split(" ", 1)[0] if word.strip() else "a"


def noun_phrase(noun: str, *modifiers: str, plural_form: bool | None = None) -> str:
    """``[a|an] modifiers noun``, with no article for a plural noun: "a white cup", "an old car", "white pants"."""
    words = " ".join(w for w in (*modifiers, noun) if w).strip()
    many = (is_plural(noun) or _last(noun)[1].lower() in MASS) if plural_form is None else plural_form
    return words if many or not words else f"{indefinite(words.split()[0])} {words}"


_ARTICLE_BEFORE = re.compile(r"\b(a|an)\s+(?:([\w-]+)\s+)?$", re.IGNORECASE)  # "a ", "a white "
_BE_FIRST = re.compile(r"^(is|are)(\s+there)?\s+(?:(?:the|a|an)\s+)?(?:[\w-]+\s+)?$", re.IGNORECASE)


def _match_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def replace_noun(text: str, start: int, end: int, new: str, many: bool | None = None) -> str:
    """Replace the noun at text[start:end] with `new`, fixing the article before it (and before one modifier) and,
    when the noun is the question's subject, the leading "Is/Are".

    "Is there a dog?" + "elephant" → "Is there an elephant?"; "Is there a white ski?" + "skis" → "Are there white
    skis?"; "Is the man wearing a hat?" + "pants" → "Is the man wearing pants?".
    """
    head, tail = text[:start], text[end:]
    many = is_plural(new) if many is None else many  # given for invariant nouns ("fish" replacing "cows")
    m = _ARTICLE_BEFORE.search(head)
    if m:
        nxt = m.group(2) or new
        art = "" if many else _match_case(indefinite(nxt), m.group(1))
        head = head[: m.start(1)] + art + head[m.end(1) :]
        head = head.replace("  ", " ") if not art else head
        if not art and head[m.start(1) : m.start(1) + 1] == " ":
            head = head[: m.start(1)] + head[m.start(1) + 1 :]
    elif (
        not many and new.lower() not in MASS
    ):  # "Are there (white) dogs?" + "cat" -> "Is there a (white) cat?"
        t = re.search(r"\bthere\s+((?:[\w-]+\s+)?)$", head, re.IGNORECASE)
        if t:
            head = head[: t.start(1)] + indefinite((t.group(1) or new).split()[0]) + " " + t.group(1)
    b = _BE_FIRST.match(head)
    if b:
        head = _match_case("are" if many else "is", b.group(1)) + head[b.end(1) :]
    return head + new + tail


def agree(question: str, subject: str) -> str:
    """Make a leading "Is/Are the <subject>" agree with the subject's number ("Is the people" → "Are the people")."""
    m = re.match(rf"^(Is|Are|is|are)(\s+the\s+{re.escape(subject)}\b)", question)
    if not m:
        return question
    return _match_case("are" if is_plural(subject) else "is", m.group(1)) + question[m.end(1) :]
