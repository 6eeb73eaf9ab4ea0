"""Automatic batch sizing, on CPU with an injected memory limit: CUDA's own out-of-memory error raised by a hook
whenever a forward carries more rows than the fake limit allows."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from tests.discovery.test_discovery import manifest, one_thread, pairs, vlm  # noqa: F401
from tests.helpers import make_images
from vseam_pl.batch_size import (
    BatchSizeError,
    discovery_batch_size,
    evaluation_batch_size,
    largest_batch,
    resolve,
)

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"


def limited(limit: int, calls: list[int]):
    def trial(b: int) -> None:
        calls.append(b)
        if b > limit:
            raise torch.OutOfMemoryError(OOM)

    return trial


@pytest.mark.parametrize("limit", [1, 2, 3, 37, 64, 100, 1000])
def test_largest_batch_finds_the_limit(limit):
    calls: list[int] = []
    assert largest_batch(limited(limit, calls), upper=256, what="x") == min(limit, 256)
    assert len(calls) <= 2 * 9 + 1  # doubling then bisection: logarithmic, not a linear scan
    assert max(calls) <= 256


def test_largest_batch_from_a_large_start_looks_below_it():
    calls: list[int] = []
    assert largest_batch(limited(5, calls), upper=512, what="x", start=64) == 5
    assert calls[0] == 64


def test_batch_one_out_of_memory_is_a_clear_error():
    with pytest.raises(
        BatchSizeError, match=r"head discovery: even batch size 1 runs out of memory on .*bfloat16"
    ):
        largest_batch(limited(0, []), upper=64, what="head discovery", device=torch.device("cpu"))


def test_other_errors_propagate():
    def trial(b: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        largest_batch(trial, upper=8, what="x")


def test_resolve():
    assert resolve("auto") is None and resolve(" AUTO ") is None
    assert resolve("16") == 16 and resolve(3) == 3
    for bad in ("0", "-2", "many", None):
        with pytest.raises(ValueError, match="batch size"):
            resolve(bad)


@contextmanager
def fake_memory(module: torch.nn.Module, limit: int, seen: list[int]):
    """Every forward of `module` with more than `limit` rows raises CUDA's out-of-memory error."""

    def hook(_m, args, kwargs):
        x = kwargs.get("inputs_embeds", kwargs.get("input_ids"))
        x = x if x is not None else args[0]
        seen.append(x.shape[0])
        if x.shape[0] > limit:
            raise torch.OutOfMemoryError(OOM)

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def test_discovery_batch_size_on_a_real_decoder(vlm, pairs):  # noqa: F811
    seen: list[int] = []
    with fake_memory(vlm.decoder, 12, seen):
        assert discovery_batch_size(vlm, pairs, upper=64) == 12
    assert 13 in seen or 16 in seen  # it did try beyond the limit
    with (
        fake_memory(vlm.decoder, 0, []),
        pytest.raises(BatchSizeError, match="one example runs out of memory"),
    ):
        discovery_batch_size(vlm, pairs)


@pytest.mark.parametrize("candidates", [("yes", "no"), None])
def test_evaluation_batch_size_closed_set_and_generation(vlm, candidates):  # noqa: F811
    image = make_images(1)[0]
    seen: list[int] = []
    with fake_memory(vlm.model, 5, seen):
        b = evaluation_batch_size(
            vlm, "is there a dog in the image?", image, candidates, upper=32, max_new_tokens=2
        )
    assert b == 5 and max(seen) > 5


def test_datamodule_batch_size_sets_every_benchmark(vlm, tmp_path):  # noqa: F811
    """evaluate.py --batch_size auto: sized on each benchmark's longest question, the smallest wins, and the
    DataModules then load batches of that size."""
    from vseam_pl.batch_size import datamodule_batch_size
    from vseam_pl.data import build_datamodule
    from vseam_pl.synth import generate_benchmarks

    root = generate_benchmarks(tmp_path / "synth", n_train=2, n_val=2, n_test=8)
    data = build_datamodule(["gqa", "pope"], root=str(root), batch_size=4, num_workers=0, limit=8)
    with fake_memory(vlm.model, 3, []):
        assert datamodule_batch_size(vlm, data, upper=16, max_new_tokens=2) == 3
    assert all(dm.batch_size == 3 for dm in data.datamodules)
    assert [len(next(iter(loader))) for loader in data.test_dataloader()] == [3, 3]
