"""The one patching engine: every batch row equals its own hand-hooked forward, whatever hook point, index and
batch it shares, and bad sites are refused before any forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import make_images
from vseam_pl.encoding import encode
from vseam_pl.interventions import Patch, Site, capture, hooks, patched_logits, run_rows
from vseam_pl.prompts import build_prompts
from vseam_pl.vlm import load_vlm

EMBEDDED = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny-llava"


@pytest.fixture(scope="module")
def vlm(one_thread):
    return load_vlm(str(EMBEDDED))


@pytest.fixture(scope="module")
def run(vlm):
    prompts = build_prompts(vlm, ["is there a dog?", "what color is the car?"])
    return capture(vlm, encode(vlm, prompts, make_images(2, seed=3)), residuals=True, heads=True)


def _setter(site: Site, x: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
    """A value that depends on the site and the example, so a row patched with another row's value would show."""
    part = x[site.index()]
    return part * -2.0 + (site.layer + 1) * 0.1 + examples.view(-1, *([1] * (part.dim() - 1))).to(x) * 0.05


@torch.no_grad()
def _by_hand(vlm, run, patch: Patch) -> torch.Tensor:
    """The same patch on its own row, through `hooks` and a full decoder replay."""
    site = patch.site

    def fn(layer: int, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[site.index()] = _setter(site, x, torch.tensor([patch.example]))
        return x

    with hooks(vlm, site.hook, fn, [site.layer]):
        return run_rows(vlm, run, torch.tensor([patch.example]))[0]


@torch.no_grad()
def test_every_row_is_its_own_hooked_forward(vlm, run):
    patches = [
        Patch(1, Site("resid", 3, positions=(0, 2))),
        Patch(0, Site("head", 1, 2)),
        Patch(1, Site("head", 1, 2)),
        Patch(0, Site("head", 1, 5, positions=(4,))),
        Patch(0, Site("attn", 0)),
        Patch(1, Site("mlp", 2, positions=(1,))),
    ]
    seen = []
    for idx, logits in patched_logits(vlm, run, patches, _setter, batch_size=4):
        assert [patches[i].site.layer for i in idx] == sorted(patches[i].site.layer for i in idx)
        for i, row in zip(idx, logits, strict=True):
            torch.testing.assert_close(row, _by_hand(vlm, run, patches[i]), atol=1e-4, rtol=1e-4)
            assert not torch.allclose(
                row, run.logits[patches[i].example], atol=1e-4
            )  # the patch did something
        seen += idx
    assert sorted(seen) == list(range(len(patches)))
    layers = [patches[i].site.layer for i in seen]
    assert layers == sorted(layers)  # batches run in layer order


@pytest.mark.parametrize(
    ("site", "error"),
    [
        (Site("embed", 0), "unknown hook site"),
        (Site("resid", 0, head=1), "exactly for the 'head' hook"),
        (Site("head", 0), "exactly for the 'head' hook"),
        (Site("head", 0, 99), "head outside"),
        (Site("resid", 0, positions=(10_000,)), "outside a"),
    ],
)
def test_bad_sites_are_refused(vlm, run, site, error):
    with pytest.raises((ValueError, IndexError), match=error):
        next(patched_logits(vlm, run, [Patch(0, site)], _setter, batch_size=2))
