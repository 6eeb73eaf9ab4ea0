"""AtP*: the q/k/v QK fix against brute-force softmax patching, GradDrop against hand-written layer-dropped
backward passes, --verify-top against full exact patching, and the CLI."""

from __future__ import annotations

import json
from contextlib import ExitStack
from types import SimpleNamespace

import pytest
import torch
from test_discovery import manifest, one_thread, pairs, vlm  # noqa: F401

from vseam_pl.discover import main as discover_main
from vseam_pl.discovery import DiscoveryConfig, run_discovery
from vseam_pl.discovery.atp import QKV, atp_star_stats, capture_qkv, effective_deltas, verify_top
from vseam_pl.discovery.data import CandidateIndex
from vseam_pl.discovery.patching import answer_indices, encode_pair
from vseam_pl.interventions import capture, run_rows
from vseam_pl.pairs import prepare_pairs
from vseam_pl.vlm import UnsupportedModelError, load_vlm


# -- the QK fix ------------------------------------------------------------------------------------------------
def _attention(q, k, v, keep, scale):
    t = q.shape[-2]
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None, None] & keep.bool()[:, None, None, :]
    logits = (q @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    return (torch.softmax(logits, -1).nan_to_num(0.0) @ v).transpose(1, 2)  # [E, T, H, D]


def _toy(seed: int = 0, e: int = 2, h: int = 2, t: int = 6, d: int = 3):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(e, h, t, d, generator=g) * 2 for _ in range(3))
    q2, k2, v2 = q + 2 * torch.randn(q.shape, generator=g), k + 2 * torch.randn(k.shape, generator=g), v + 1
    keep = torch.ones(e, t, dtype=torch.long)
    keep[1, :2] = 0  # left padding in the second example
    scale = d**-0.5
    attn = SimpleNamespace(self_attn=SimpleNamespace(scaling=scale))
    model = SimpleNamespace(num_layers=1, head_dim=d, name="toy", layers=[attn])
    return model, SimpleNamespace(attention_mask=keep), (q, k, v), (q2, k2, v2), scale


def test_qkv_deltas_equal_brute_force_softmax_patching():
    """dz of the q/k/v nodes = queries patched (rows recomputed) + each key patched alone (softmax recomputed) +
    values patched, summed: the paper's QK fix, computed by brute force here."""
    model, run, (q, k, v), (q2, k2, v2), scale = _toy()
    keep = run.attention_mask
    z = lambda a, b, c: _attention(a, b, c, keep, scale)  # noqa: E731
    tgt, src = (
        QKV({0: q}, {0: k}, {0: v}, {0: z(q, k, v)}),
        QKV({0: q2}, {0: k2}, {0: v2}, {0: z(q2, k2, v2)}),
    )
    ref = z(q2, k, v) - z(q, k, v) + z(q, k, v2) - z(q, k, v)
    for s in range(q.shape[2]):
        k_s = k.clone()
        k_s[:, :, s] = k2[:, :, s]
        ref += z(q, k_s, v) - z(q, k, v)
    got = effective_deltas(model, tgt, src, run)[0]
    valid = keep.bool()[:, :, None, None]
    torch.testing.assert_close(
        torch.where(valid, got, 0.0), torch.where(valid, ref, 0.0), atol=1e-5, rtol=1e-5
    )
    # and the sum is not the whole-head change: the q/k/v nodes drop the interactions
    assert (torch.where(valid, got - (src.z[0] - tgt.z[0]), 0.0)).abs().max() > 1e-2


def test_qkv_deltas_refuse_outputs_they_do_not_reproduce():
    model, run, (q, k, v), (q2, k2, v2), scale = _toy()
    z = _attention(q, k, v, run.attention_mask, scale)
    tgt, src = QKV({0: q}, {0: k}, {0: v}, {0: z + 0.1}), QKV({0: q2}, {0: k2}, {0: v2}, {0: z})
    with pytest.raises(UnsupportedModelError, match="layer 0.*differs from the head outputs"):
        effective_deltas(model, tgt, src, run)


@pytest.mark.parametrize(
    ("model_dir", "dtype"),
    [
        ("tiny_llava_dir", "float32"),
        ("tiny_llava_gqa_dir", "float32"),
        ("tiny_instructblip_dir", "float32"),
        ("tiny_llava_dir", "bfloat16"),
    ],
)
def test_captured_qkv_reproduce_real_head_outputs(request, pairs, model_dir, dtype):  # noqa: F811
    """Rotary queries/keys and repeated kv heads, taken from the real decoders, give their head outputs (bf16:
    within half-precision rounding)."""
    model = load_vlm(str(request.getfixturevalue(model_dir)), dtype=dtype)
    items = prepare_pairs(model, pairs[:2])
    enc_c, enc_e = encode_pair(model, items)
    run_c, run_e = capture(model, enc_c, residuals=False), capture(model, enc_e, residuals=False)
    qkv_c, qkv_e = capture_qkv(model, run_c), capture_qkv(model, run_e)
    deltas = effective_deltas(model, qkv_e, qkv_c, run_e)  # raises if softmax(qk)v != z
    assert set(deltas) == set(range(model.num_layers))
    assert all(d.shape == qkv_e.z[i].shape and torch.isfinite(d).all() for i, d in deltas.items())


# -- GradDrop ----------------------------------------------------------------------------------------------------
def test_graddrop_equals_hand_written_layer_drops(vlm, pairs):  # noqa: F811
    """magnitude = mean over dropped layers l of |(z_clean - z_edited) . dLD/dz| with layer l's attention and MLP
    outputs detached, one full forward and backward per l (the node's own layer contributes 0)."""
    items = prepare_pairs(vlm, pairs[:3])
    cands = CandidateIndex.of(items)
    clean, edited = answer_indices(items)
    enc_c, enc_e = encode_pair(vlm, items)
    run_c = capture(vlm, enc_c, residuals=False, heads=True)
    run_e = capture(vlm, enc_e, residuals=False, heads=True)
    rows = torch.arange(len(items))

    def estimate(drop: int | None) -> torch.Tensor:
        leaves = {i: torch.zeros_like(z, requires_grad=True) for i, z in run_e.heads.items()}
        with ExitStack() as stack, torch.enable_grad():
            if drop is not None:
                for mod in (vlm.o_proj(drop), vlm.layers[drop].mlp):
                    stack.callback(mod.register_forward_hook(lambda _m, _a, out: out.detach()).remove)
            logits = run_rows(vlm, run_e, rows, 0, lambda i, z: z + leaves[i])
            lp = cands.logprobs(logits)
            ld = (lp.gather(1, clean[:, None]) - lp.gather(1, edited[:, None])).sum()
            grads = torch.autograd.grad(ld, [leaves[i] for i in range(vlm.num_layers)], allow_unused=True)
        return torch.stack(
            [
                ((run_c.heads[i] - run_e.heads[i]) * (torch.zeros_like(leaves[i]) if g is None else g)).sum(
                    dim=(1, 3)
                )
                for i, g in enumerate(grads)
            ],
            dim=1,
        ).double()

    signed = estimate(None)
    drops = [estimate(layer) for layer in range(vlm.num_layers)]
    for layer in range(vlm.num_layers):  # dropping a node's own layer removes every path from it
        assert drops[layer][:, layer].abs().max() == 0
    magnitude = sum(d.abs() for d in drops) / (vlm.num_layers - 1)
    got = atp_star_stats(vlm, items)
    torch.testing.assert_close(got["signed"][0], signed, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got["magnitude"][0], magnitude, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(magnitude, signed.abs())  # the drops matter on this model


def test_atp_star_run_discovery_scores(vlm, pairs):  # noqa: F811
    """Through the runner: signed = plain attribution (head nodes), magnitude >= 0 and nonzero."""
    attr = run_discovery(vlm, pairs, DiscoveryConfig(method="attribution")).scores.signed()
    star = run_discovery(vlm, pairs, DiscoveryConfig(method="atp_star")).scores
    torch.testing.assert_close(star.signed(), attr, atol=1e-5, rtol=1e-5)
    mag = star.get("all", "magnitude")
    assert (mag >= 0).all() and mag.max() > 0
    qkv = run_discovery(vlm, pairs, DiscoveryConfig(method="atp_star", atp_nodes="qkv")).scores.signed()
    assert not torch.allclose(qkv, attr)
    with pytest.raises(ValueError, match="AtP\\* node set"):
        DiscoveryConfig(method="atp_star", atp_nodes="neurons").validate()


# -- verify-top ----------------------------------------------------------------------------------------------
def test_verify_top_equals_full_exact_patching(vlm, pairs):  # noqa: F811
    scores = run_discovery(vlm, pairs, DiscoveryConfig(method="attribution")).scores
    exact = run_discovery(vlm, pairs, DiscoveryConfig(method="patching", batch_size=16)).scores.signed()
    rows = verify_top(vlm, pairs, scores, 5, batch_size=7, pair_batch=4)
    flat = scores.signed().flatten().abs()
    assert [(r["layer"], r["head"]) for r in rows][:1] == [divmod(int(flat.argmax()), vlm.num_heads)]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    mags = [abs(r["attribution"]) for r in rows]
    assert mags == sorted(mags, reverse=True)
    for r in rows:
        assert r["attribution"] == pytest.approx(float(scores.signed()[r["layer"], r["head"]]))
        assert r["exact"] == pytest.approx(float(exact[r["layer"], r["head"]]), abs=1e-5, rel=1e-4)


def test_cli_atp_star_with_verify_top(tiny_llava_dir, manifest, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    code = discover_main(
        [
            "--model",
            str(tiny_llava_dir),
            "--pairs",
            str(manifest),
            "--method",
            "atp_star",
            "--out",
            str(out),
            "--verify-top",
            "3",
            "--batch-size",
            "auto",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = json.loads((out / "verify_top.json").read_text())
    assert summary["verify_top"] == str(out / "verify_top.json") and len(rows) == 3
    assert {"attribution", "exact", "magnitude"} <= set(rows[0])
    mags = [r["magnitude"] for r in rows]  # AtP*: verified in order of its GradDrop magnitude
    assert mags == sorted(mags, reverse=True)
    assert (out / "plots" / "heatmap_all_magnitude.png").exists()
    bad = discover_main(
        [
            "--model",
            str(tiny_llava_dir),
            "--pairs",
            str(manifest),
            "--method",
            "ablation",
            "--out",
            str(tmp_path / "r2"),
            "--verify-top",
            "3",
        ]
    )
    assert bad == 2 and "--verify-top checks attribution" in capsys.readouterr().err
    bad = discover_main(
        [
            "--model",
            str(tiny_llava_dir),
            "--pairs",
            str(manifest),
            "--out",
            str(tmp_path / "r3"),
            "--batch-size",
            "lots",
        ]
    )
    assert bad == 2 and "positive integer or 'auto'" in capsys.readouterr().err
