"""Uploaded pictures: recognised by content, re-encoded small, without metadata, and no
decompression bomb decoded (``game_server/net/pictures.py``)."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image, PngImagePlugin

from game_server.net.pictures import MAX_PIXELS, SIDE, PictureError, reencode, sniff

RED, BLUE = (220, 20, 20), (20, 20, 220)


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kind, **options)
    return out.getvalue()


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), RED)
    image.paste(BLUE, (width // 2, 0, width, height))
    return image


def refused(data: bytes) -> str:
    with pytest.raises(PictureError) as caught:
        reencode(data)
    return caught.value.code


def near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=False))


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_each_format_is_taken_by_its_content_and_comes_out_small(kind: str) -> None:
    data = encoded(halves(600, 400), kind)
    assert sniff(data) == kind
    picture = reencode(data)
    assert (picture.width, picture.height) == (SIDE, SIDE)
    assert picture.content_type == "image/jpeg"  # no transparency: JPEG
    shown = Image.open(io.BytesIO(picture.data))
    assert (shown.format, shown.size) == ("JPEG", (SIDE, SIDE))
    # A centred square of the original: red on the left, blue on the right.
    assert near(shown.getpixel((10, 66)), RED)
    assert near(shown.getpixel((120, 66)), BLUE)


def test_a_small_picture_is_not_blown_up_only_squared() -> None:
    picture = reencode(encoded(halves(64, 40), "PNG"))
    assert (picture.width, picture.height) == (40, 40)


def test_transparency_is_kept_as_png() -> None:
    image = Image.new("RGBA", (300, 300), (0, 0, 255, 0))
    image.paste((255, 0, 0, 255), (100, 100, 200, 200))
    picture = reencode(encoded(image, "PNG"))
    assert picture.content_type == "image/png"
    shown = Image.open(io.BytesIO(picture.data))
    assert shown.mode == "RGBA"
    assert shown.getpixel((0, 0))[3] == 0
    assert shown.getpixel((66, 66))[3] == 255


def test_metadata_is_stripped_and_the_photo_turned_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown turned 90 degrees clockwise
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {2: (39.0, 54.0, 0.0)}  # GPS latitude
    icc = b"\0" * 128 + b"a made-up ICC profile"
    jpeg = encoded(halves(200, 100), "JPEG", exif=exif.tobytes(), icc_profile=icc)
    picture = reencode(jpeg)
    shown = Image.open(io.BytesIO(picture.data))
    assert not shown.getexif()
    assert "icc_profile" not in shown.info
    assert b"PhoneMaker" not in picture.data
    # Upright: the left (red) half is now on top, the right (blue) half below.
    assert shown.size == (100, 100)
    assert near(shown.getpixel((90, 10)), RED)
    assert near(shown.getpixel((90, 90)), BLUE)

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "<script>alert(1)</script>")
    image = Image.new("RGBA", (50, 50), (1, 2, 3, 128))
    png = encoded(image, "PNG", pnginfo=text, icc_profile=icc)
    cleaned = reencode(png)
    assert b"script" not in cleaned.data
    assert b"ICC" not in cleaned.data.upper()
    assert set(Image.open(io.BytesIO(cleaned.data)).info) <= {"dpi"}


def test_the_same_picture_gets_the_same_id_and_another_another() -> None:
    one = encoded(halves(300, 300), "PNG")
    assert reencode(one).id == reencode(one).id
    assert len(reencode(one).id) == 32
    assert reencode(one).id != reencode(encoded(halves(301, 300), "PNG")).id


def test_an_animation_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (80, 80), colour) for colour in (RED, BLUE)]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    shown = Image.open(io.BytesIO(reencode(out.getvalue()).data))
    assert near(shown.getpixel((40, 40)), RED)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "unsupported_image"),
        (b"<html><script>alert(1)</script></html>", "unsupported_image"),
        (b"", "unsupported_image"),
        (b"BM" + b"\0" * 100, "unsupported_image"),  # a BMP: Pillow reads it, we do not
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "bad_image"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 50, "bad_image"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 junk", "bad_image"),
    ],
)
def test_what_is_not_a_picture_we_take_is_refused(data: bytes, code: str) -> None:
    assert refused(data) == code


def test_a_truncated_picture_is_refused() -> None:
    data = encoded(halves(400, 400), "JPEG")
    assert refused(data[: len(data) // 2]) == "bad_image"


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGBA pixels, and whose data is a
    few bytes: what a bomb's header says is all it takes to refuse it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height"), [(100_000, 100_000), (20_000, 20_000), (5_000, 5_000), (9_000, 10)]
)
def test_a_decompression_bomb_is_refused_before_it_is_decoded(width: int, height: int) -> None:
    """A few KiB of PNG that would decode to hundreds of MiB (or GiB): its header is
    enough. Past Pillow's own limit its error refuses it; below, ours does."""
    bomb = png_claiming(width, height)
    assert len(bomb) < 256 * 1024
    started = time.monotonic()
    assert refused(bomb) == "too_many_pixels"
    assert time.monotonic() - started < 0.5  # not decoded


def test_the_largest_picture_allowed_is_still_decoded() -> None:
    side = int(MAX_PIXELS**0.5)
    picture = reencode(encoded(Image.new("L", (side, side), 128), "PNG"))
    assert (picture.width, picture.height) == (SIDE, SIDE)
