"""The one image loader: EXIF orientation, 16/32-bit modes scaled to 8 bits, decompression bombs named and skippable."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_support import make_root

from vseam_pl.data import BadRecordError, POPEDataModule
from vseam_pl.data.images import ENV_MAX_PIXELS, ImageLoadError, decode_image, load_rgb
from vseam_pl.pairs import PairError, open_image
from vseam_pl.records import QARecord


def record(path: Path) -> QARecord:
    return QARecord("pope", "q1", "Is there a cat?", "yes", "img", image_path=str(path), source="pope.json:7")


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG claiming ``width x height`` pixels with no pixel data: what a decompression bomb looks like to `open`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # stored 32 wide x 16 high: left half red, right half blue; Orientation 6 = "rotate 90 degrees clockwise to view"
    stored = Image.new("RGB", (32, 16), (255, 0, 0))
    stored.paste((0, 0, 255), (16, 0, 32, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rot.jpg", quality=95, exif=exif)
    im = decode_image(record(tmp_path / "rot.jpg"))
    assert im.size == (16, 32)  # upright: 16 wide, 32 high
    top, bottom = np.asarray(im)[4, 8], np.asarray(im)[27, 8]  # the left (red) half is now on top
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # PIL keeps 16 bits (I;16 / I)
    im = load_rgb(tmp_path / "deep.png")
    assert im.mode == "RGB" and np.asarray(im)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (np.asarray(im)[0, :, 0] == np.asarray(im)[0, :, 2]).all()  # grey stays grey


def test_16_bit_big_endian_int32_and_float_modes(tmp_path: Path) -> None:
    big = Image.frombytes("I;16B", (3, 1), np.array([0, 257, 65535], dtype=">u2").tobytes())
    assert np.asarray(decode_image(record(tmp_path / "x.png"), big))[0, :, 1].tolist() == [0, 1, 255]
    as_int = Image.fromarray(np.array([[0, 514, 65535]], dtype=np.int32), mode="I")
    as_int.save(tmp_path / "int.tif")
    assert np.asarray(load_rgb(tmp_path / "int.tif"))[0, :, 0].tolist() == [0, 2, 255]
    flt = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    flt.save(tmp_path / "f.tif")
    assert np.asarray(load_rgb(tmp_path / "f.tif"))[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[-5.0, 300.0]], dtype=np.float32), mode="F").save(tmp_path / "hdr.tif")
    with pytest.raises(
        ImageLoadError, match=r"hdr\.tif: mode F image with values in \[-5, 300\] has no known"
    ):
        load_rgb(tmp_path / "hdr.tif")


def test_decompression_bomb_names_the_file_under_pil_default(tmp_path: Path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 20_000, 20_000)  # 400 MP > PIL's ~179 MP
    with pytest.raises(
        BadRecordError,
        match=r"pope\.json:7: .*bomb\.png: image of 20000x20000 = 400,000,000 "
        r"pixels exceeds the limit of 178,956,970",
    ):
        decode_image(record(bomb))
    # with the limit off the header passes and the missing pixel data is what fails (named, not a bomb error)
    with pytest.raises(BadRecordError, match=r"could not decode image .*bomb\.png"):
        decode_image(record(bomb), max_pixels=0)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's global is left as it was


def test_configured_pixel_limit_env_and_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (100, 60), (1, 2, 3)).save(tmp_path / "a.png")
    assert load_rgb(tmp_path / "a.png", max_pixels=6000).size == (100, 60)
    with pytest.raises(
        ImageLoadError, match=r"a\.png: image of 100x60 = 6,000 pixels exceeds the limit of 5,999"
    ):
        load_rgb(tmp_path / "a.png", max_pixels=5999)
    monkeypatch.setenv(ENV_MAX_PIXELS, "100")
    with pytest.raises(PairError, match=r"pairs\.jsonl:3: field 'clean_image': .*exceeds the limit of 100"):
        open_image(str(tmp_path / "a.png"), "pairs.jsonl:3", "clean_image")
    monkeypatch.setenv(ENV_MAX_PIXELS, "lots")
    with pytest.raises(ValueError, match=r"VSEAM_MAX_IMAGE_PIXELS must be a whole number of pixels"):
        load_rgb(tmp_path / "a.png")


def test_bomb_is_a_bad_record_skippable_in_the_datamodule(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", n_images=5)
    png_header_only(root / "images" / "COCO_val2014_000000000001.jpg", 20_000, 20_000)
    Image.new("RGB", (64, 64)).save(
        root / "images" / "COCO_val2014_000000000002.jpg"
    )  # over a 1000-pixel limit
    kw = dict(root=str(root), splitting="all", splits=["random"], batch_size=4)
    with pytest.raises(
        BadRecordError,
        match=r"coco_pope_random\.json:2: .*000000000001\.jpg: image of "
        r"20000x20000",
    ):
        for _ in POPEDataModule(**kw).test_dataloader():
            pass
    dm = POPEDataModule(**kw, on_bad_record="skip", max_image_pixels=1000)
    with pytest.warns(UserWarning, match=r"pope: skipped 16 bad record\(s\)"):
        skipped = [s for batch in dm.test_dataloader() for s in batch.skipped]
    assert {s.rsplit(":", 1)[1] for s, _ in skipped} == {str(i) for i in range(1, 41) if i % 5 in (2, 3)}
    assert all("exceeds the limit of 1,000" in r for _, r in skipped)
    with pytest.raises(ValueError, match="max_image_pixels must be >= 0"):
        POPEDataModule(**kw, max_image_pixels=-1)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_composited_on_white_as_the_processor_does(tmp_path: Path, mode: str) -> None:
    """`convert("RGB")` dropped alpha and showed the hidden colour of transparent pixels (here: black, 50% of them)."""
    from transformers.image_transforms import convert_to_rgb

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    alpha = np.where(np.arange(32)[None, :] < 16, 0, rng.integers(1, 256, (32, 32))).astype(np.uint8)
    rgb[alpha == 0] = 0  # the colour a transparent pixel hides
    im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if mode == "LA":
        im = im.convert("LA")
    elif mode == "P":  # a palette image with one transparent index
        im = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        im.info["transparency"] = int(np.asarray(im)[0, 0])
    path = tmp_path / f"t_{mode}.png"
    im.save(path, **({"transparency": im.info["transparency"]} if mode == "P" else {}))
    loaded = np.asarray(load_rgb(path))
    expected = convert_to_rgb(Image.open(path), return_numpy=True)
    assert np.array_equal(loaded, expected)
    assert (loaded[:, :16] == 255).all() or mode == "P"  # fully transparent -> white, not the hidden black
    assert not np.array_equal(loaded, np.asarray(Image.open(path).convert("RGB")))
