"""Images as the model saw them, with PIL alone: decoding any still image to RGB and the model's view
(resize, centre crop). ingest decodes on the CPU with these; contact sheets and thumbnails reuse them."""
from __future__ import annotations

import numpy as np

# Transparent pixels are composited on neutral gray: it adds no colour and no extreme intensity.
BACKGROUND = (128, 128, 128)


def read_rgb(path, size: int | None = None):
    """Decode any still image to 8-bit RGB: alpha composited on gray, 16-bit rescaled, CMYK converted.

    With ``size``, a JPEG at least twice as large is decoded at a reduced scale by libjpeg, keeping its
    shorter side >= ``size``. ingest's CPU path decodes with this very function.
    """
    import math

    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if size and im.format == "JPEG" and min(im.size) >= 2 * size:
            scale = size / min(im.size)
            im.draft("RGB", (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
        im = ImageOps.exif_transpose(im)
        im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        if im.mode == "F" and a.max() <= 1.0:
            top = 1.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(canvas, im)
    return im.convert("RGB")


def model_view(im, size: int):
    """The image as the model saw it (shorter side resized to ``size``, centre crop), a ``size`` square RGB image.

    ingest's ``model_view`` is this image as a tensor, so crop boxes stored by ingest land on the same pixels.
    """
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))
