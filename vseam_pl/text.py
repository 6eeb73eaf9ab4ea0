"""Reading generated answers: vseam-pl's VQA normaliser and the answer parsers of lmms-eval, LLaVA and VLMEvalKit.

`normalize_answer` reproduces the official VQAv2 answer normalisation (as lmms-eval's ``EvalAIAnswerProcessor``
and VLMEvalKit's ``process_punctuation``/``process_digit_article`` ship it, via MMF/Pythia), quirks included,
because a "cleaner" normaliser would silently shift accuracies:

* the period rule is the original ``(?!<=\\d)(\\.)(?!\\d)``, a typo for a look-behind, so *every* period not
  followed by a digit is dropped (``"3.5"`` is kept, ``"end."`` loses its period), and lmms-eval passes
  ``re.UNICODE`` as the ``count`` argument, so at most 32 periods are removed;
* whether a punctuation mark is deleted or turned into a space depends on the whole answer (that mark next to a
  space anywhere means delete it everywhere); the original's ``digit,digit`` check is kept although it never fires,
  since commas are removed first;
* number words only up to "ten" become digits ("none" and "zero" → "0");
* the contraction table keeps the original's odd entries (``"somebody'd"`` → ``"somebodyd"``).

Toolkits differ in how they read a *generated* reply, which is one reason POPE and GQA numbers do not reproduce
across them. `ANSWER_PARSERS` names the rules (`parse_yes_no(reply, parser)` for yes/no questions,
`answers_match(pred, gold, parser)` for open ones); each function cites the file it follows. With closed-set
log-probability scoring (the default) every reply *is* a candidate string, so all parsers agree.
"""

from __future__ import annotations

import re
import string

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
_MAX_PERIODS = int(re.UNICODE)  # lmms-eval passes re.UNICODE (32) positionally as `count`
_PUNCTUATIONS = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}

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
    """VQAv2 answer normalisation (vseam-pl's default for open answers): lowercase, punctuation, digits, articles, contractions, spaces."""
    s = s.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    s = s.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(s))


def is_yes_no(s: str) -> bool:
    """True when the answer normalises to exactly "yes" or "no" (a closed yes/no question)."""
    return normalize_answer(s) in ("yes", "no")


_THINK_END = "</think>"
_WORD = re.compile(r"[a-z0-9]+")
YES_NO_ANSWERS = ("yes", "no")
#: vseam-pl's default first, then the toolkits' rules.
ANSWER_PARSERS: tuple[str, ...] = ("vseam", "lmms_eval", "llava", "vlmevalkit")


def check_parser(parser: str) -> str:
    if parser not in ANSWER_PARSERS:
        raise ValueError(f"unknown answer parser {parser!r}; expected one of {ANSWER_PARSERS}")
    return parser


def _after_thinking(text: str) -> str:
    return text.rsplit(_THINK_END, 1)[1] if _THINK_END in text else text


def parse_yes_no_vseam(text: str) -> str | None:
    """vseam-pl: the reply's first word, when that word is "yes" or "no", else None (unanswered).

    "Yes, there is a dog." → "yes"; anything after a reasoning model's ``</think>`` is what counts. Replies that do
    not *start* with yes/no ("There is no dog", "Nope") are unanswered rather than guessed, and scored as wrong.
    """
    m = _WORD.search(_after_thinking(text).lower())
    if m is None or m.group(0) not in YES_NO_ANSWERS:
        return None
    return m.group(0)


def parse_yes_no_lmms_eval(text: str) -> str | None:
    """lmms-eval (``lmms_eval/tasks/pope/utils.py``, ``pope_process_results``): the whole reply, lowercased and
    stripped, must *be* "yes" or "no"; anything else ("Yes." included) is neither class."""
    reply = text.lower().strip()
    return reply if reply in YES_NO_ANSWERS else None


def parse_yes_no_llava(text: str) -> str:
    """LLaVA (``llava/eval/eval_pope.py``, ``eval_pope``): keep the text before the first ".", drop commas, split on
    single spaces; "No", "no" or "not" among the words means "no", *anything else* "yes" (never unanswered)."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def parse_yes_no_vlmevalkit(text: str) -> str | None:
    """VLMEvalKit (``vlmeval/dataset/utils/yorn.py``, ``YOrN_Extraction``): lowercase, VQA punctuation processing,
    split on whitespace; "yes" without "no" → yes, "no" without "yes" → no, else unknown (None). (VLMEvalKit can
    then ask a judge LLM about unknowns; without a judge they stay unknown.)"""
    words = _process_punctuation(text.lower()).split()
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes != has_no:
        return "yes" if has_yes else "no"
    return None


_YES_NO_PARSERS = {
    "vseam": parse_yes_no_vseam,
    "lmms_eval": parse_yes_no_lmms_eval,
    "llava": parse_yes_no_llava,
    "vlmevalkit": parse_yes_no_vlmevalkit,
}


def parse_yes_no(text: str, parser: str = "vseam") -> str | None:
    """The yes/no answer of a free-form reply under `parser` ("yes", "no", or None when it gives neither)."""
    return _YES_NO_PARSERS[check_parser(parser)](text)


_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def _lmms_eval_exact(text: str) -> str:
    # lmms-eval's `exact_match` with ignore_case + ignore_punctuation (its GQA task, `lmms_eval/tasks/gqa/gqa.yaml`;
    # `exact_match_hf_evaluate` in `lmms_eval/api/metrics.py`): lowercase, delete string.punctuation, nothing else.
    return text.lower().translate(_PUNCT_TABLE)


def _llava_gqa(text: str) -> str:
    # LLaVA's `scripts/convert_gqa_for_eval.py` (`text.rstrip('.').lower()`), then GQA's exact `==` comparison.
    return text.rstrip(".").lower()


def answers_match(pred: str, gold: str, parser: str = "vseam") -> bool:
    """Exact match of an open answer under `parser`.

    * ``vseam`` and ``vlmevalkit``: both sides through `normalize_answer` (the VQAv2 normalisation VLMEvalKit's
      VQA scorers use too), so "Two dogs." matches "2 dogs";
    * ``lmms_eval``: lowercase and delete ASCII punctuation on both sides, whitespace and articles kept;
    * ``llava``: the prediction with trailing periods removed and lowercased must equal the lowercased gold.
    """
    check_parser(parser)
    if parser == "lmms_eval":
        return _lmms_eval_exact(pred) == _lmms_eval_exact(gold)
    if parser == "llava":
        return _llava_gqa(pred) == gold.lower()
    return normalize_answer(pred) == normalize_answer(gold)


def parsed_answer(pred: str, benchmark: str, parser: str = "vseam") -> str | None:
    """What `parser` reads from a reply before comparing it with the gold answer: POPE's yes/no (None: neither),
    else the normalised text `answers_match` compares (the raw reply lowercased, for ``llava``)."""
    check_parser(parser)
    if benchmark == "pope":
        return parse_yes_no(pred, parser)
    if parser == "lmms_eval":
        return _lmms_eval_exact(pred)
    if parser == "llava":
        return _llava_gqa(pred)
    return normalize_answer(pred)
