"""Answer normalisation for exact-match VQA scoring, matching lmms-eval so our numbers are comparable with theirs.

`normalize_answer` reproduces lmms-eval's ``EvalAIAnswerProcessor`` (itself the official VQAv2 evaluation code via
MMF/Pythia), quirks included, because a "cleaner" normaliser would silently shift accuracies:

* the period rule is the original ``(?!<=\\d)(\\.)(?!\\d)``, a typo for a look-behind, so *every* period not
  followed by a digit is dropped (``"3.5"`` is kept, ``"end."`` loses its period), and lmms-eval passes
  ``re.UNICODE`` as the ``count`` argument, so at most 32 periods are removed;
* whether a punctuation mark is deleted or turned into a space depends on the whole answer (that mark next to a
  space anywhere means delete it everywhere); the original's ``digit,digit`` check is kept although it never fires,
  since commas are removed first;
* number words only up to "ten" become digits ("none" and "zero" → "0");
* the contraction table keeps the original's odd entries (``"somebody'd"`` → ``"somebodyd"``).
"""

from __future__ import annotations

import re

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
_MAX_PERIODS = int(re.UNICODE)  # lmms-eval passes re.UNICODE (32) positionally as `count`
_PUNCTUATIONS = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

# Canonical contracted forms of the VQA table. Each is reached from its spellings with one apostrophe missing
# (or, with a single apostrophe, with it missing): "couldn't've" <- "couldnt've" / "couldn'tve".
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd "
    "he'd've he's how'd how'll how's I'd've I'm I've isn't it'd it'd've it'll ma'am mightn't mightn't've might've "
    "mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've "
    "somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've "
    "something'll that's there'd there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't "
    "we'd've we've weren't what'll what're what's what've when's where'd where's where've who'd who'd've who'll "
    "who's who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've "
    "you'll you're you've"
).split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for word in _CONTRACTED:
        cuts = [i for i, ch in enumerate(word) if ch == "'"]
        for i in cuts:
            table[word[:i] + word[i + 1 :]] = word
    table["somebody'd"] = "somebodyd"  # sic, in the original table
    return table


_CONTRACTIONS = _contraction_table()


def _process_punctuation(text: str) -> str:
    out = text
    delete = _COMMA_STRIP.search(text) is not None
    for p in _PUNCTUATIONS:
        out = out.replace(p, "" if delete or p + " " in text or " " + p in text else " ")
    return _PERIOD_STRIP.sub("", out, count=_MAX_PERIODS)


def _process_digit_article(text: str) -> str:
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(s: str) -> str:
    """lmms-eval / VQAv2 answer normalisation: lowercase, punctuation, digits, articles, contractions, spaces."""
    s = s.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    s = s.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(s))


def is_yes_no(s: str) -> bool:
    """True when the answer normalises to exactly "yes" or "no" (a closed yes/no question)."""
    return normalize_answer(s) in ("yes", "no")


def answers_match(pred: str, gold: str) -> bool:
    """Exact match after `normalize_answer` (so "Yes." matches "yes" and "Two dogs" matches "2 dogs")."""
    return normalize_answer(pred) == normalize_answer(gold)


_THINK_END = "</think>"
_WORD = re.compile(r"[a-z0-9]+")


def parse_yes_no(text: str) -> str | None:
    """The yes/no answer of a free-form reply: its first word, when that word is "yes" or "no", else None.

    Follows the lmms-eval POPE convention of reading the answer at the start of the reply ("Yes, there is a dog."
    → "yes"); anything after a reasoning model's ``</think>`` is what counts. Replies that do not *start* with yes/no
    ("There is no dog", "Nope") are unanswered (None) rather than guessed, and are scored as wrong.
    """
    if _THINK_END in text:
        text = text.rsplit(_THINK_END, 1)[1]
    m = _WORD.search(text.lower())
    if m is None or m.group(0) not in ("yes", "no"):
        return None
    return m.group(0)
