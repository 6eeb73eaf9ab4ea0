"""The default process group, seen the same way everywhere: rank and world size, gathering objects, summing tensors.

Every helper is a no-op (or the single-process answer) without an initialised group, so library code calls them
unconditionally; collectives must then be called by every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def initialized() -> bool:
    """Whether a default process group exists (torch may be built without distributed support)."""
    return dist.is_available() and dist.is_initialized()


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (`[obj]` in a single process). Objects must be picklable."""
    if not initialized() or dist.get_world_size() == 1:
        return [obj]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over ranks, on CPU (`t` itself in a single process). NCCL reduces on the current GPU."""
    if initialized() and dist.get_world_size() > 1:
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl"
            else torch.device("cpu")
        )
        t = t.to(device)
        dist.all_reduce(t)
    return t.cpu()


def release_process_group() -> None:
    """End of a successful multi-process run: destroy the process group while the interpreter is alive. Left to
    interpreter exit, gloo's worker threads can abort the process ("terminate called without an active exception",
    pytorch/pytorch#190489). Not called on errors: a rank that fails must not wait for the others here."""
    if initialized():
        dist.destroy_process_group()
