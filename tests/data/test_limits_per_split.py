"""`limit` per split name: each split capped on its own, a split left out whole, a cut test split warned about, and a
mistyped split name an error naming it (tiny synthetic world)."""

from __future__ import annotations

import pytest

from vseam_pl.data import POPEDataModule
from vseam_pl.synth import generate_benchmarks


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=5, n_train=12, n_val=6, n_test=8
    )


def counts(world, **kwargs) -> dict[str, int]:
    dm = POPEDataModule(root=str(world), **kwargs)
    dm.setup(None)
    return dm.counts


def test_each_split_has_its_own_limit(world):
    whole = counts(world)
    assert min(whole.values()) > 5
    with pytest.warns(UserWarning, match="keeps 4 of the test split's"):
        capped = counts(world, limit={"train": 5, "test": 4})
    assert capped == {"train": 5, "val": whole["val"], "test": 4}
    with pytest.warns(UserWarning, match="keeps 3 of the test split's"):
        assert counts(world, limit=3) == {"train": 3, "val": 3, "test": 3}  # one number: every split


def test_a_limit_that_does_not_cut_is_silent(world, recwarn):
    whole = counts(world)
    assert counts(world, limit={"test": whole["test"]}) == whole
    assert not [w for w in recwarn if "test split" in str(w.message)]


def test_unknown_split_names_are_errors(world):
    with pytest.raises(ValueError, match="unknown split 'tset'"):
        POPEDataModule(root=str(world), limit={"tset": 4})
    with pytest.raises(ValueError, match="positive number of records"):
        POPEDataModule(root=str(world), limit={"val": 0})
