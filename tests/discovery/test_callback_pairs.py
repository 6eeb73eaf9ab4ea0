"""HeadDiscovery finds a relative pairs manifest under the data root, also when the data is several benchmarks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from callbacks import HeadDiscovery
from vseam_pl.data import GQADataModule, MultiBenchmarkDataModule, POPEDataModule


def test_relative_pairs_follow_the_root_of_a_single_or_a_multi_benchmark_datamodule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    synth, other = tmp_path / "synth", tmp_path / "other"
    (synth / "train" / "pairs").mkdir(parents=True)
    (synth / "train" / "pairs" / "pairs.jsonl").write_text("")
    other.mkdir()
    single = GQADataModule(root=str(synth))
    multi = MultiBenchmarkDataModule([POPEDataModule(root=str(other)), GQADataModule(root=str(synth))])
    for data in (single, multi):
        callback = HeadDiscovery(pairs="train/pairs/pairs.jsonl")
        callback.resolve_pairs(SimpleNamespace(datamodule=data))
        assert Path(callback.pairs) == synth / "train" / "pairs" / "pairs.jsonl"
    missing = HeadDiscovery(pairs="val/pairs/pairs.jsonl")
    missing.resolve_pairs(SimpleNamespace(datamodule=multi))
    assert missing.pairs == "val/pairs/pairs.jsonl"  # left as given: the callback's own error names it
