"""Automatic batch sizing: the largest batch that fits in accelerator memory, found before the real run.

A 7B model on one GPU leaves a few GiB for activations, and how many intervened rows (discovery) or questions
(evaluation) fit depends on the prompt length, the image token count and the dtype. `largest_batch` runs a trial
at growing batch sizes (doubling, then a binary search between the last size that fit and the first that did not),
recognising out-of-memory errors with Lightning's `is_oom_error` and freeing the cache between trials. When even
batch size 1 does not fit it raises :class:`BatchSizeError` saying so, with the device's memory. The trial should use
the longest inputs of the run, so that the size found also fits every later batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image

from .vlm import VLM

AUTO = "auto"
ADVICE = "use a smaller dtype (--dtype bfloat16), shorter prompts, fewer image tokens, or more devices"


class BatchSizeError(RuntimeError):
    """Even the smallest batch does not fit in memory."""


def _is_oom(e: BaseException) -> bool:
    from lightning.pytorch.utilities.memory import is_oom_error

    return is_oom_error(e)


def memory_note(device: torch.device) -> str:
    """Free and total memory of a CUDA device, for error messages."""
    if device.type != "cuda":
        return f"device {device}"
    free, total = torch.cuda.mem_get_info(device)
    return f"{device} ({free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB)"


def largest_batch(
    trial: Callable[[int], object], upper: int, what: str, device: torch.device | None = None, start: int = 1
) -> int:
    """The largest `b <= upper` for which `trial(b)` runs without an out-of-memory error.

    `trial(b)` must run the real workload at batch size `b` (its result is ignored). Other exceptions propagate.
    """
    if upper < 1 or start < 1:
        raise ValueError(f"batch size bounds must be >= 1, got start={start} upper={upper}")
    from lightning.pytorch.utilities.memory import garbage_collection_cuda

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def fits(b: int) -> bool:
        try:
            trial(b)
            return True
        except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
            if not _is_oom(e):
                raise
        if (
            device.type == "cuda"
        ):  # outside the except block: the traceback no longer holds the trial's tensors
            garbage_collection_cuda()
        return False

    good, bad = 0, upper + 1
    b = min(start, upper)
    while True:  # doubling until the first failure or the upper bound
        if not fits(b):
            bad = b
            break
        good = b
        if b == upper:
            break
        b = min(2 * b, upper)
    while bad - good > 1:  # binary search in (good, bad)
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    if good == 0:
        raise BatchSizeError(
            f"{what}: even batch size 1 runs out of memory on {memory_note(device)}; {ADVICE}"
        )
    return good


def resolve(value: int | str) -> int | None:
    """`auto` -> None (size it), a number -> that number (>= 1), anything else -> a clear error."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"batch size must be a positive integer or {AUTO!r}, got {value!r}") from None
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    return n


# -- the two places batch sizes are chosen -------------------------------------------------------------------------
def discovery_batch_size(vlm: VLM, pairs: Sequence, upper: int = 4096, instruction: str | None = None) -> int:
    """Intervened rows per forward for exact ablation/patching: a trial replays the whole decoder (the worst case,
    start layer 0) on `b` rows of the longest of `pairs`, with one head ablated per row and patching's cached
    source head outputs held alongside."""
    from .encoding import encode
    from .interventions import Patch, Site, ablation_setter, capture, patched_logits
    from .pairs import images_of, prepare_pairs
    from .prompts import DEFAULT_INSTRUCTION

    items = prepare_pairs(vlm, pairs, instruction if instruction is not None else DEFAULT_INSTRUCTION)
    longest = max(items, key=lambda it: len(vlm.tokenizer(it.prompt)["input_ids"]))
    enc = encode(vlm, [longest.prompt], images_of([longest], "clean"))
    what = "head discovery (intervened rows per forward)"
    try:
        run = capture(vlm, enc, residuals=True, heads=True)
    except RuntimeError as e:
        if not _is_oom(e):
            raise
        raise BatchSizeError(
            f"{what}: even the unintervened forward of one example runs out of memory on "
            f"{memory_note(vlm.device)}; {ADVICE}"
        ) from e
    value = ablation_setter("mean_others")

    @torch.no_grad()
    def trial(b: int) -> None:
        patches = [Patch(0, Site("head", 0, h % vlm.num_heads)) for h in range(b)]
        next(patched_logits(vlm, run, patches, value, b, from_layer=False))

    return largest_batch(trial, upper, what, vlm.device)


def evaluation_batch_size(
    vlm: VLM,
    question: str,
    image: Image.Image,
    candidates: Sequence[str] | None,
    upper: int = 1024,
    instruction: str | None = None,
    max_new_tokens: int = 8,
) -> int:
    """Questions per batch for evaluation: a trial answers `b` copies of the longest question (closed-set scoring
    when it has `candidates`, else greedy generation of `max_new_tokens`)."""
    from .prompts import DEFAULT_INSTRUCTION
    from .scoring import predict

    instr = instruction if instruction is not None else DEFAULT_INSTRUCTION

    def trial(b: int) -> None:
        predict(
            vlm,
            [question] * b,
            [image] * b,
            [candidates] * b,
            instruction=instr,
            batch_size=b,
            max_new_tokens=max_new_tokens,
        )

    return largest_batch(trial, upper, "evaluation (questions per batch)", vlm.device)


def datamodule_batch_size(
    vlm: VLM, data, upper: int = 1024, instruction: str | None = None, max_new_tokens: int = 8
) -> int:
    """The evaluation batch size for every benchmark of `data` (a QA or multi-benchmark DataModule): the smallest of
    :func:`evaluation_batch_size` over the longest question of each benchmark's first test batch, written back as
    the DataModule's (and its children's) `batch_size`."""
    data.setup("test")
    loaders = data.test_dataloader()
    sizes = []
    for loader in loaders if isinstance(loaders, list) else [loaders]:
        batch = next(iter(loader), None)
        if batch is None or not batch.examples:
            continue
        ex = max(batch.examples, key=lambda e: len(e.record.question))
        sizes.append(
            evaluation_batch_size(
                vlm, ex.record.question, ex.image, ex.record.candidates, upper, instruction, max_new_tokens
            )
        )
    if not sizes:
        raise ValueError("batch size auto: the test split has no examples to size the batch on")
    size = min(sizes)
    for dm in [data, *getattr(data, "datamodules", [])]:
        dm.batch_size = size
    return size
