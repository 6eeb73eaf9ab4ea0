"""The discovery-method registry: every method's declared statistics are what it computes, and the declarations
(not method names) decide validation, resume fingerprints and the release gain."""

from __future__ import annotations

import pytest
import torch

from tests.discovery.test_discovery import write_pair_manifest
from vseam_pl.discovery import METHODS, DiscoveryConfig, HeadScores, get_method
from vseam_pl.discovery.items import prepare_items
from vseam_pl.discovery.methods import foreign_settings
from vseam_pl.pairs import load_pairs
from vseam_pl.vlm import load_vlm


def test_the_public_names_are_the_registry_keys():
    assert tuple(METHODS) == ("ablation", "patching", "attribution", "atp_star")
    assert all(get_method(name).name == name for name in METHODS)
    with pytest.raises(ValueError, match=r"unknown discovery method 'probing'; expected one of \('ablation'"):
        get_method("probing")
    with pytest.raises(ValueError, match="unknown discovery method"):
        DiscoveryConfig(method="probing").validate()


def test_each_method_computes_the_statistics_it_declares(tiny_llava_dir, tmp_path, one_thread):
    vlm = load_vlm(str(tiny_llava_dir))
    items = prepare_items(vlm, load_pairs(write_pair_manifest(tmp_path, n=2)))
    for name, m in METHODS.items():
        cfg = DiscoveryConfig(method=name, batch_size=8)
        stats = m.score(vlm, items, cfg, None, m.exact)
        assert tuple(stats) == m.stats, name
        for stat, (num, den, include) in stats.items():
            assert num.shape == (2, vlm.num_layers, vlm.num_heads), (name, stat)
            assert den.shape == include.shape == (2,) and include.dtype == torch.bool, (name, stat)


def test_declarations_drive_validation_fingerprints_and_the_release_gain():
    for name, m in METHODS.items():
        cfg = DiscoveryConfig(method=name, protocol="release")
        if m.release:
            cfg.validate()
        else:
            with pytest.raises(ValueError, match="protocol 'release'"):
                cfg.validate()
        scores = HeadScores(name, {"all": {"signed": torch.zeros(1, 1)}}, protocol="release")
        assert scores.negative_is_gain == m.release
    assert [n for n, m in METHODS.items() if m.release] == ["ablation"]
    assert not HeadScores(
        "unregistered", {"all": {"signed": torch.zeros(1, 1)}}, protocol="release"
    ).negative_is_gain
    assert foreign_settings("ablation") == {"atp_nodes"} and foreign_settings("atp_star") == set()
