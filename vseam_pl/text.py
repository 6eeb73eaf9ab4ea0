"""Reading generated answers: vseam-pl's VQA normaliser and the answer parsers of lmms-eval, LLaVA and VLMEvalKit.

`normalize_answer` reproduces the official VQAv2 answer normalisation (as lmms-eval's ``EvalAIAnswerProcessor``
ships it, via MMF/Pythia), quirks included, because a "cleaner" normaliser would silently shift accuracies
(VLMEvalKit ships its own variant, `vlmevalkit_process_answer`):

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
`answers_match(pred, gold, parser, benchmark)` for open ones); each function cites the file it follows. With
closed-set log-probability scoring (the default) every reply *is* a candidate string, so all parsers agree. The
toolkits also *generate* differently (how many tokens, whole reply or first line): `generation_settings`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

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


# VLMEvalKit's own copy of the VQA answer processing (``vlmeval/smp/misc.py``, ``process_punctuation``, and
# ``vlmeval/dataset/utils/vqa_eval.py``, ``_process_digit_article`` / ``process_answer``) differs from the MMF one
# above: the period rule is a real look-behind (a period after a digit is kept: "3." stays "3."), the digit-comma
# test is ``(\d)(,)(\d)`` on the raw text, nothing is removed before the punctuation pass ("'s" stays attached),
# and its contraction table has only the entries for words with two or more apostrophes (plus the odd
# "somebody'd"): "dont" is *not* mapped to "don't". Its "Im"/"Ive"/"Id've" keys are capitalised, so they never
# match the lowercased words and are left out here.
_VLMEVALKIT_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")
_VLMEVALKIT_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")


def _vlmevalkit_contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for word in _CONTRACTED:
        cuts = [i for i, ch in enumerate(word) if ch == "'"]
        if len(cuts) >= 2 and (word[0].islower() or word.startswith("'")):
            for i in cuts:
                table[word[:i] + word[i + 1 :]] = word
    table["somebody'd"] = "somebodyd"  # sic, in VLMEvalKit's table too
    return table


_VLMEVALKIT_CONTRACTIONS = _vlmevalkit_contraction_table()


def _vlmevalkit_punctuation(text: str) -> str:
    delete = _VLMEVALKIT_DIGIT_COMMA.search(text) is not None
    out = text
    for p in _PUNCTUATIONS:
        out = out.replace(p, "" if delete or p + " " in text or " " + p in text else " ")
    return _VLMEVALKIT_PERIOD.sub("", out, count=_MAX_PERIODS)  # re.UNICODE as `count` there too


def vlmevalkit_process_answer(s: str) -> str:
    """VLMEvalKit's ``process_answer`` (``vlmeval/dataset/utils/vqa_eval.py``): newlines/tabs to spaces, strip,
    its punctuation processing, then lowercase, number words to digits, articles dropped, its contractions."""
    s = _vlmevalkit_punctuation(s.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBERS.get(w, w) for w in s.lower().split()]
    return " ".join(_VLMEVALKIT_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def parse_yes_no_vlmevalkit(text: str) -> str | None:
    """VLMEvalKit (``vlmeval/dataset/utils/yorn.py``, ``YOrN_Extraction``): lowercase, VLMEvalKit's punctuation
    processing (``vlmeval/smp/misc.py``, ``process_punctuation``), split on whitespace; "yes" without "no" → yes,
    "no" without "yes" → no, else unknown (None). (VLMEvalKit can then ask a judge LLM about unknowns; without a
    judge they stay unknown.)"""
    words = _vlmevalkit_punctuation(text.lower()).split()
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


#: VLMEvalKit's scoring method per dataset (``ImageVQADataset.evaluate_heuristic`` in
#: ``vlmeval/dataset/image_vqa.py``): GQA (and OCRVQA) by ``accuracy``, i.e. ``strip().lower()`` exact match in
#: ``process_line``; datasets it names no method for (COCO-QA is not among its datasets) by the default branch,
#: `vlmevalkit_process_answer` on both sides and exact match.
VLMEVALKIT_METHOD: dict[str, str] = {"gqa": "accuracy"}


def answers_match(pred: str, gold: str, parser: str = "vseam", benchmark: str | None = None) -> bool:
    """Exact match of an open answer under `parser` (for `vlmevalkit`, as that toolkit scores `benchmark`).

    * ``vseam``: both sides through `normalize_answer` (VQAv2 normalisation), so "Two dogs." matches "2 dogs";
    * ``vlmevalkit``: per benchmark (`VLMEVALKIT_METHOD`): GQA compares ``strip().lower()`` of both sides, so
      "Yes." is *not* "yes"; others compare `vlmevalkit_process_answer` of both sides;
    * ``lmms_eval``: lowercase and delete ASCII punctuation on both sides, whitespace and articles kept;
    * ``llava``: the prediction with trailing periods removed and lowercased must equal the lowercased gold.
    """
    check_parser(parser)
    if parser == "lmms_eval":
        return _lmms_eval_exact(pred) == _lmms_eval_exact(gold)
    if parser == "llava":
        return _llava_gqa(pred) == gold.lower()
    if parser == "vlmevalkit":
        if benchmark is None:
            raise ValueError("the vlmevalkit parser scores each benchmark its own way: pass benchmark=")
        if VLMEVALKIT_METHOD.get(benchmark) == "accuracy":
            return pred.strip().lower() == gold.strip().lower()
        return vlmevalkit_process_answer(pred) == vlmevalkit_process_answer(gold)
    return normalize_answer(pred) == normalize_answer(gold)


def parsed_answer(pred: str, benchmark: str, parser: str = "vseam") -> str | None:
    """What `parser` reads from a reply before comparing it with the gold answer (the side of `answers_match` that
    the reply goes through): POPE's yes/no (None: neither), else the text that is compared."""
    check_parser(parser)
    if benchmark == "pope":
        return parse_yes_no(pred, parser)
    if parser == "lmms_eval":
        return _lmms_eval_exact(pred)
    if parser == "llava":
        return _llava_gqa(pred)
    if parser == "vlmevalkit":
        if VLMEVALKIT_METHOD.get(benchmark) == "accuracy":
            return pred.strip().lower()
        return vlmevalkit_process_answer(pred)
    return normalize_answer(pred)


# ---------------------------------------------------------------- how each toolkit generates the reply it parses


@dataclass(frozen=True)
class GenerationSettings:
    """Greedy generation of a reply: at most `max_new_tokens`, whether only its first line is kept, and whether
    `max_new_tokens` is cut to the room the model's context leaves (a toolkit's 2048 on a 512-token model means
    "until end of sequence or context"; without it a prompt that leaves too little room is refused)."""

    max_new_tokens: int
    first_line: bool
    fit_context: bool = False


#: `generation="toolkit"`: the greedy generation each parser's toolkit runs before parsing, per benchmark
#: (``None``: any other benchmark). Every one keeps the whole (stripped) reply.
#:
#: * lmms-eval: ``generation_kwargs.max_new_tokens`` of ``lmms_eval/tasks/pope/pope.yaml`` (128) and
#:   ``lmms_eval/tasks/gqa/gqa.yaml`` (16); COCO-QA has no lmms-eval task, so its open-answer default (16, as
#:   GQA and ``vqav2``). Its LLaVA wrappers (``lmms_eval/models/simple/llava_hf.py``) do not cut at ``until``,
#:   and ``ConfigurableTask.process_results`` strips the reply.
#: * LLaVA: ``llava/eval/model_vqa_loader.py`` (``--max_new_tokens`` 128, ``outputs.strip()``), used by
#:   ``scripts/v1_5/eval/pope.sh`` and ``gqa.sh``.
#: * VLMEvalKit: the model wrapper's ``kwargs_default`` (``vlmeval/vlm/llava/llava.py``: ``max_new_tokens=2048``),
#:   the same for every dataset.
TOOLKIT_GENERATION: dict[str, dict[str | None, GenerationSettings]] = {
    "lmms_eval": {
        "pope": GenerationSettings(128, False, fit_context=True),
        "gqa": GenerationSettings(16, False, fit_context=True),
        None: GenerationSettings(16, False, fit_context=True),
    },
    "llava": {None: GenerationSettings(128, False, fit_context=True)},
    "vlmevalkit": {None: GenerationSettings(2048, False, fit_context=True)},
}
GENERATION_MODES: tuple[str, ...] = ("vseam", "toolkit")


def generation_settings(
    generation: str, parser: str, benchmark: str | None, max_new_tokens: int = 8
) -> GenerationSettings:
    """How to generate a reply for `benchmark`: vseam-pl's (`max_new_tokens`, first line only) or, with
    ``generation="toolkit"``, the settings of `parser`'s toolkit (`TOOLKIT_GENERATION`; the ``vseam`` parser's
    toolkit is vseam-pl)."""
    check_parser(parser)
    if generation not in GENERATION_MODES:
        raise ValueError(f"generation must be one of {GENERATION_MODES}, got {generation!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if generation == "vseam" or parser == "vseam":
        return GenerationSettings(max_new_tokens, True)
    table = TOOLKIT_GENERATION[parser]
    return table.get(benchmark, table[None])


def batch_generation(
    generation: str, parser: str, benchmarks: Sequence[str], max_new_tokens: int = 8
) -> GenerationSettings:
    """`generation_settings` of one batch, whose records (`benchmarks`, one per record) must agree on it (each
    benchmark has its own loader, so a batch holds one benchmark)."""
    found = {generation_settings(generation, parser, b, max_new_tokens) for b in set(benchmarks) or {None}}
    if len(found) > 1:
        raise ValueError(
            f"one batch mixes benchmarks {sorted(set(benchmarks))} that {parser}'s toolkit generates differently "
            f"({sorted(found, key=lambda g: g.max_new_tokens)}); give each benchmark its own loader"
        )
    return found.pop()
