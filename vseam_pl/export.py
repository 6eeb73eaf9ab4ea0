"""Export learned head scales in a form the ecosystem reads, with a model card, optionally pushed to the Hub.

`--format merged` (default): the scales folded into each decoder layer's `o_proj` weight columns, saved with
`save_pretrained` (+ the processor) as an ordinary Transformers folder; it loads with plain
`transformers.AutoModelForImageTextToText.from_pretrained(out)` — no vseam-pl, no hooks, no remote code — and answers
exactly like the modulated model at zero inference overhead (exact up to the weight dtype's rounding).

`--format peft`: a peft IA3 adapter on every decoder `o_proj` (scaling its input, each head's values tied), loaded by
plain `peft.PeftModel.from_pretrained(base, out)` with the same logits as the attached scales, before and after
`merge_and_unload()`; `HeadModulation.from_peft(out, vlm)` reads it back. A few kB instead of a full model.

Both write a `README.md` model card (`vseam_pl.model_card`), the scales heatmap and `head_scales.safetensors`, and
`--push_to_hub REPO` uploads the folder with `huggingface_hub`.

    python -m vseam_pl.export --model llava-hf/llava-1.5-7b-hf --scales runs/.../head_scales.safetensors \\
        --out exports/llava-1.5-7b-vseam [--format peft] [--dtype bfloat16] [--push_to_hub user/llava-vseam]
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from .argparsing import ArgumentParser, underscore_flags
from .interventions.modulation import HeadModulation
from .io import apply_umask, staging_dir, write_json
from .model_card import HEATMAP, build_card, provenance_of, resolve_base_model, save_heatmap
from .vlm import load_vlm

EXPORT_INFO = "vseam_export.json"
FORMATS = ("merged", "peft")


def _sibling(scales: Path, name: str) -> Path | None:
    path = scales.parent / name
    return path if path.is_file() else None


class ExportOutError(FileExistsError):
    """`--out` names something an export must not delete: a file, a folder of other files, another kind of export."""


def previous_export(out: Path) -> dict | None:
    """The `vseam_export.json` of a folder written by `export`, or None when `out` is not one."""
    try:
        info = json.loads((out / EXPORT_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") in FORMATS else None


def check_out(out: Path, format: str, overwrite: bool) -> bool:
    """Refuse, before any work, an `out` whose contents the export would delete without being asked: a file, a
    non-empty folder that is not a previous export of this `format` (never replaced), a previous export holding files
    it did not write, or a previous export without `overwrite`. Returns whether `out` holds an export to replace."""
    if out.exists() and not out.is_dir():
        raise ExportOutError(f"--out {out}: is a file, not a folder; nothing was written")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    info = previous_export(out)
    if info is None:
        raise ExportOutError(
            f"--out {out}: a non-empty folder that is not a vseam export (no valid {EXPORT_INFO}); an export never "
            "deletes other files. Name a new or empty folder; nothing was written"
        )
    if info["format"] != format:
        raise ExportOutError(
            f"--out {out}: holds a {info['format']} export, not {format}; name another folder (or remove it "
            "yourself); nothing was written"
        )
    written = info.get("files")
    foreign = sorted(p.name for p in out.iterdir() if written is not None and p.name not in written)
    if foreign:
        raise ExportOutError(
            f"--out {out}: holds files this export did not write ({', '.join(foreign[:5])}); they would be deleted. "
            "Move them away or name another folder; nothing was written"
        )
    if not overwrite:
        raise ExportOutError(
            f"--out {out}: already holds a {format} export; pass --overwrite true to replace it; nothing was written"
        )
    return True


def _move_into_place(staged: Path, out: Path, format: str, replace: bool) -> None:
    """Rename the finished `staged` folder to `out`. A previous export is moved aside first and removed only once the
    new one is in place; an `out` that another process filled meanwhile is an error (its files stay)."""
    old = None
    if replace and check_out(out, format, overwrite=True):  # checked again: it may have changed meanwhile
        old = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
        os.rename(out, old)
    try:
        os.rename(staged, out)  # onto a missing or empty folder only; a non-empty one raises
    except OSError as e:
        if old is not None and not out.exists():
            os.rename(old, out)
        raise ExportOutError(
            f"--out {out}: was written by another process while this export ran ({e.strerror}); it was left as is "
            "and this export discarded"
        ) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(
    model: str,
    scales: str | os.PathLike,
    out: str | os.PathLike,
    format: str = "merged",
    dtype: str = "float32",
    metrics: str | None = None,
    train_config: str | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    check_model: bool = True,
    trust_remote_code: bool = False,
    base_model_id: str | None = None,
    scales_provenance: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `scales` for `model` to the folder `out` as a merged model or a peft adapter, with a model card.

    Args:
        model: hub id or local folder the scales were learned on.
        scales: a `head_scales.safetensors` file (checked against the model's head grid and name).
        out: the folder to write: new, empty, or (with `overwrite`) a previous export of the same format. It is
            written into a staging sibling unique to this process and renamed, so a killed export leaves no
            half-written folder behind and two exports to one `out` never mix (the second one fails).
        format: `merged` (a full Transformers model) or `peft` (an IA3 adapter folder).
        dtype: dtype the model is loaded, folded and saved in (`float32` for exactness, `bfloat16` to halve size).
        metrics: metrics.json for the card's evaluation table (default: `metrics.json` beside the scales, if any).
        train_config: training config for the card (default: `config.yaml` beside the scales, if any).
        push_to_hub: upload the finished folder to this Hub model repo (created if missing).
        private: create the Hub repo private.
        check_model: refuse scales learned for another model name (same grid) unless False.
        base_model_id: Hub id recorded as the card's `base_model` and the adapter's `base_model_name_or_path`
            (default: `model` when it is a Hub id, else the id behind a local folder; see
            `vseam_pl.model_card.resolve_base_model`, which refuses to record a local path).
        scales_provenance: how the scales were made, for the card (default: what the files say, see
            `vseam_pl.model_card.provenance_of`).
        overwrite: replace a previous export of the same format at `out` (anything else there is never deleted).
    """
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {format!r}")
    scales, out = Path(scales), Path(out)
    metrics_path = Path(metrics) if metrics else _sibling(scales, "metrics.json")
    config_path = Path(train_config) if train_config else _sibling(scales, "config.yaml")
    for what, path in (("metrics", metrics_path), ("config", config_path)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"--{what} {path}: no such file")
    base_id = resolve_base_model(model, base_model_id)  # before loading: a bad id fails fast
    target = Path(os.path.abspath(out))  # `--out .` or `exports/..` must name a folder, not stage inside it
    replace = check_out(target, format, overwrite)
    vlm = load_vlm(model, dtype=dtype, trust_remote_code=trust_remote_code)
    modulation = HeadModulation.load(scales, vlm, check_model=check_model)
    with staging_dir(target) as tmp:
        _write(
            tmp, vlm, modulation, scales, out, format, dtype, metrics_path, config_path, push_to_hub, base_id,
            scales_provenance,
        )  # fmt: skip
        apply_umask(tmp)
        _move_into_place(tmp, target, format, replace)
    if push_to_hub:
        upload(target, push_to_hub, private=private)
    return target


def _write(
    tmp: Path,
    vlm,
    modulation: HeadModulation,
    scales: Path,
    out: Path,
    format: str,
    dtype: str,
    metrics_path: Path | None,
    config_path: Path | None,
    push_to_hub: str | None,
    base_id: str,
    scales_provenance: str | None,
) -> None:
    """Write the export's files into the staging folder `tmp`."""
    if format == "merged":
        modulation.fold(vlm)
        vlm.model.save_pretrained(tmp)
        vlm.processor.save_pretrained(tmp)
        folded = "decoder layers' self_attn.o_proj weight columns (per head)"
    else:
        from .interventions.peft import save_peft

        save_peft(modulation, vlm, tmp, base_model=base_id)
        folded = "peft IA3 adapter on every decoder o_proj input (feedforward_modules), head_dim values tied"
    shutil.copyfile(scales, tmp / "head_scales.safetensors")
    save_heatmap(modulation.scales, tmp / HEATMAP)
    if metrics_path is not None:
        shutil.copyfile(metrics_path, tmp / "metrics.json")
    config_text = config_path.read_text() if config_path is not None else None
    # No local paths in what is shared: the base as its Hub id, the scales and folder by name (both in the folder).
    command = [
        "python",
        "-m",
        "vseam_pl.export",
        "--model",
        base_id,
        "--scales",
        scales.name,
        "--out",
        out.name,
        "--format",
        format,
        "--dtype",
        dtype,
    ]
    command += ["--push_to_hub", push_to_hub] if push_to_hub else []
    provenance = provenance_of(scales, config_text is not None, scales_provenance)
    card = build_card(
        base_id,
        format,
        modulation.scales,
        scales,
        metrics_path,
        config_text,
        repo=push_to_hub,
        command=command,
        provenance=provenance,
    )
    card.save(str(tmp / "README.md"))  # replaces peft's template card
    write_json(
        tmp / EXPORT_INFO,
        {
            "base_model": base_id,
            "scales": scales.name,
            "scales_provenance": provenance,
            "dtype": dtype,
            "format": format,
            "folded_into": folded,
            "grid": [modulation.num_layers, modulation.num_heads],
            "files": sorted([p.name for p in tmp.iterdir()] + [EXPORT_INFO]),
        },
    )


def upload(folder: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Create the Hub model repo if needed and upload the whole export folder (card included) in one commit."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        commit_message="Upload V-SEAM head scales (vseam-pl export)",
    )
    return str(getattr(info, "commit_url", info))


def parser() -> ArgumentParser:
    """Every argument of `export` as a flag (jsonargparse's spelling: `--overwrite true`), `-c/--config` YAML too."""
    p = ArgumentParser(prog="python -m vseam_pl.export", description=__doc__)
    p.add_function_arguments(export, as_group=False)
    return p


def main(argv: list[str] | None = None) -> None:
    """`vseam export`; `--push-to-hub` (the huggingface_hub spelling) is accepted as well as `--push_to_hub`."""
    path = export(**parser().parse_args(underscore_flags(argv)).as_dict())
    fmt = "peft adapter" if (path / "adapter_config.json").exists() else "merged model"
    print(f"{fmt}: {path}")


if __name__ == "__main__":
    main()
