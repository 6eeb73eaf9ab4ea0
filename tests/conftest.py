"""Shared test fixtures: offline hub, tiny random-weight VLMs saved as ordinary HF folders, the shared data root."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Under pytest-xdist (pyproject's addopts) each worker gets its share of the cores, so workers do not fight over
# them; subprocesses the tests start inherit it through OMP_NUM_THREADS.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
TINY_WORDS = (
    "is there a dog cat bird car bus in the image yes no red blue green what color left right of to".split()
)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one torch thread than fighting over shared cores; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The V-SEAM release's question files; skips when absent (fails under VSEAM_REQUIRE_SHARED_DATA=1)."""
    from tests.release_files import release_file

    return release_file()


def _save_tiny(root: Path, builder, **sizes) -> Path:
    from vseam_pl.tiny import TinySizes

    torch.manual_seed(0)
    model, processor = builder(
        TINY_WORDS, TinySizes(text_layers=4, text_heads=4, text_hidden=64, text_intermediate=128, **sizes)
    )
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory) -> Path:
    from vseam_pl.tiny import build_tiny_llava

    return _save_tiny(tmp_path_factory.mktemp("tiny-llava"), build_tiny_llava, text_kv_heads=4)


@pytest.fixture(scope="session")
def tiny_llava_gqa_dir(tmp_path_factory) -> Path:
    """Grouped-query attention: 4 query heads share 2 key/value heads."""
    from vseam_pl.tiny import build_tiny_llava

    return _save_tiny(tmp_path_factory.mktemp("tiny-llava-gqa"), build_tiny_llava, text_kv_heads=2)


@pytest.fixture(scope="session")
def tiny_instructblip_dir(tmp_path_factory) -> Path:
    from vseam_pl.tiny import build_tiny_instructblip

    return _save_tiny(tmp_path_factory.mktemp("tiny-instructblip"), build_tiny_instructblip, text_kv_heads=4)


@pytest.fixture()
def tiny_vlm(tiny_llava_dir):
    from vseam_pl.vlm import load_vlm

    return load_vlm(str(tiny_llava_dir))


@pytest.fixture()
def scales_file(tiny_llava_dir, tmp_path):
    """Random scales (seeded) for the tiny LLaVA in a run-like folder `tmp_path/run` (export looks beside them)."""
    from vseam_pl.interventions.modulation import HeadModulation
    from vseam_pl.vlm import load_vlm

    vlm = load_vlm(str(tiny_llava_dir))
    mod = HeadModulation.for_vlm(vlm)
    with torch.no_grad():
        mod.scales.copy_(torch.rand(mod.scales.shape, generator=torch.Generator().manual_seed(3)) * 2)
    return mod.save(tmp_path / "run" / "head_scales.safetensors")
