"""Uploaded avatars: recognised by their bytes, decoded, and re-encoded small and clean.

Why re-encode rather than keep what was sent: a photo carries EXIF (the phone, often
where it was taken), ICC profiles and comments; a file can be a valid image and a script
or an HTML page at once; and a decoder fed crafted bytes should be the server's, kept up
to date, once, rather than every client's. Re-encoding from pixels keeps only pixels:
the format is decided by the first bytes (never the name or the Content-Type), decoded
by Pillow restricted to that one format, turned upright by its EXIF orientation, cut to
a centred square, shrunk to at most ``SIDE`` pixels a side and written afresh as JPEG
(PNG when it has transparency): both show in every WeChat ``<image>`` and browser,
where WebP needs an opt-in on iOS mini-programs.

Decompression bombs: the header's dimensions are checked against ``MAX_PIXELS`` before
a single pixel is decoded (a 256 KiB PNG can claim 20,000 x 20,000), JPEGs are decoded
straight at a reduced scale (``draft``), and Pillow's own bomb error is a refusal too.
Everything here is CPU-bound and synchronous: callers run it on a thread.
"""

from __future__ import annotations

import hashlib
import io

import attrs
from PIL import Image, ImageOps, UnidentifiedImageError

SIDE = 132  # WeChat's own avatars are 132 x 132
MAX_PIXELS = 4096 * 4096  # the most a picture's header may claim (a 64 MiB RGBA decode)
MAX_SIDE = 8192  # and the longest side (a 1 x 16M strip is no avatar either)
JPEG_QUALITY = 85

# The magic numbers: what the bytes are, whatever the upload says it is.
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"


def sniff(data: bytes) -> str | None:
    """The Pillow format of ``data`` by its first bytes: JPEG, PNG or WEBP; else None."""
    if data.startswith(_JPEG):
        return "JPEG"
    if data.startswith(_PNG):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@attrs.frozen
class Encoded:
    """A picture re-encoded: its bytes, their MIME type, and the name they are kept by."""

    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    content_type: str
    width: int
    height: int

    @property
    def id(self) -> str:
        """A hash of the bytes: the same picture is one id, and an id is never reused."""
        return hashlib.sha256(self.data).hexdigest()[:32]


class PictureError(ValueError):
    """An upload that is not a picture we take; ``code`` is the HTTP API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def reencode(data: bytes, side: int = SIDE) -> Encoded:
    """``data`` (JPEG, PNG or WebP, by content) as a fresh square JPEG or PNG of at most
    ``side`` pixels a side, without metadata; ``PictureError`` for anything else."""
    kind = sniff(data)
    if kind is None:
        raise PictureError(
            "unsupported_image", "the file is not a JPEG, PNG or WebP picture (by its content)"
        )
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:
            width, height = image.size
            if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                raise _too_many(width, height)
            if kind == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale where that still covers the square.
                image.draft("RGB", (side, side))
            image.seek(0)  # an animation's first frame
            image.load()
            return _square(image, side)
    except Image.DecompressionBombError as exc:
        # Pillow's own limit, checked as it opens (far above ours: its warning between
        # the two is only a log line, as the picture is refused here all the same).
        raise PictureError("too_many_pixels", str(exc)) from None
    except (
        UnidentifiedImageError,
        OSError,  # truncated or corrupt data
        ValueError,
        SyntaxError,  # some of Pillow's parsers report a broken file so
        EOFError,
    ) as exc:
        if isinstance(exc, PictureError):
            raise
        raise PictureError("bad_image", f"the {kind} picture cannot be read: {exc}") from None


def _too_many(width: int, height: int) -> PictureError:
    return PictureError(
        "too_many_pixels",
        f"the picture is {width} x {height}; at most {MAX_PIXELS:,} pixels and {MAX_SIDE} a side",
    )


def _square(image: Image.Image, side: int) -> Encoded:
    upright = ImageOps.exif_transpose(image)  # photos are often stored sideways
    alpha = upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info
    )
    pixels = upright.convert("RGBA" if alpha else "RGB")
    edge = min(pixels.size)
    square = ImageOps.fit(pixels, (edge, edge), Image.Resampling.LANCZOS)
    if edge > side:
        square = square.resize((side, side), Image.Resampling.LANCZOS)
    # A new image from the pixels alone: nothing of the upload's info (EXIF, ICC profile,
    # text chunks, comments) can ride along into the file written.
    clean = Image.frombytes(square.mode, square.size, square.tobytes())
    out = io.BytesIO()
    if alpha:
        clean.save(out, format="PNG", optimize=True)
        content_type = "image/png"
    else:
        clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        content_type = "image/jpeg"
    return Encoded(out.getvalue(), content_type, clean.width, clean.height)
