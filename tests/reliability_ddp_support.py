"""A 2-process worker for tests/test_reliability.py (no tests here), kept apart so spawned processes import only what
they run: the report rows and the skip gathering under a real gloo process group."""

from __future__ import annotations

import json
from pathlib import Path


def ddp_report_worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from vseam_pl.cli import gather_skipped
    from vseam_pl.report import pope_rows

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    targets = ["yes", "no", "yes", "no", "yes"]  # already gathered: every rank holds all 5
    rows = pope_rows(targets, ["yes", "yes", "no", "no", "yes"], splits="random")
    skipped = gather_skipped([(f"pope.json:{rank + 1}", "image file not found"), ("pope.json:9", "bad JSON")])
    Path(out, f"{rank}.json").write_text(json.dumps({"rows": rows, "skipped": skipped}))
    dist.destroy_process_group()
