"""Discovery under DDP: two CPU processes (gloo) scoring their shards give the scores of one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_discovery import write_pair_manifest

from vseam_pl.discovery import DiscoveryConfig, run_discovery
from vseam_pl.pairs import load_pairs
from vseam_pl.vlm import load_vlm

CONFIGS = {
    "ablation": DiscoveryConfig(method="ablation", batch_size=32, pair_batch=2, filter=True),
    "attribution": DiscoveryConfig(method="attribution", pair_batch=2),
}


def _worker(rank: int, world: int, model_dir: str, manifest: str, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{root}/rendezvous", rank=rank, world_size=world)
    try:
        vlm = load_vlm(model_dir)
        pairs = load_pairs(manifest)
        out = {}
        for name, cfg in CONFIGS.items():
            r = run_discovery(vlm, pairs, cfg, out_dir=Path(root) / name, plots=False)
            out[name] = {"scores": r.scores.scores, "filter": r.filter_report, "chunks": r.chunks_computed}
        torch.save(out, Path(root) / f"result{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes that each import torch and load the model
def test_two_processes_equal_one(tiny_llava_dir, tmp_path):
    manifest = write_pair_manifest(tmp_path / "pairs", n=7)  # odd: the shards differ in size
    mp.spawn(_worker, args=(2, str(tiny_llava_dir), str(manifest), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"result{r}.pt", weights_only=False) for r in range(2)]
    torch.set_num_threads(1)
    vlm = load_vlm(str(tiny_llava_dir))
    pairs = load_pairs(manifest)
    for name, cfg in CONFIGS.items():
        single = run_discovery(vlm, pairs, cfg)
        for res in results:
            assert res[name]["filter"] == single.filter_report
            for group, stats in single.scores.scores.items():
                for stat, value in stats.items():
                    torch.testing.assert_close(
                        res[name]["scores"][group][stat], value, atol=1e-5, rtol=1e-5, equal_nan=True
                    )
        # each rank scored only its own shard: 4 + 3 pairs in chunks of 2
        assert results[0][name]["chunks"] + results[1][name]["chunks"] < single.chunks_computed + 2
        assert sorted(p.name for p in (tmp_path / name / "partial").iterdir()) == [
            "rank0-of-2.pt",
            "rank1-of-2.pt",
        ]
        assert (tmp_path / name / "head_scores.safetensors").exists()
        if cfg.filter:
            assert single.filter_report["total"] == 7 and 0 < single.filter_report["kept"] < 7
