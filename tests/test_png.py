"""Our PNG writer: every picture decodes (with PIL) to exactly the pixels written."""
import io

import numpy as np
import pytest
from PIL import Image

from ingest.analysis_tables import png_bytes


@pytest.mark.parametrize("shape, mode", [((7, 5), "L"), ((1, 1, 3), "RGB"), ((96, 96, 3), "RGB"), ((13, 4, 4), "RGBA")])
def test_png_decodes_to_the_pixels_written(shape, mode):
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)  # random rows: the "up" differences wrap below 0
    data = png_bytes(pixels)
    Image.open(io.BytesIO(data)).verify()                 # chunk CRCs and structure
    picture = Image.open(io.BytesIO(data))
    assert picture.mode == mode and picture.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(picture), pixels)


def test_png_of_a_strided_integer_array():
    pixels = np.arange(6 * 8 * 3).reshape(6, 8, 3)[:, ::2] % 256   # int64, strided
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(pixels)))), pixels.astype(np.uint8))


@pytest.mark.parametrize("pixels", [np.full((4, 4, 3), 0.5), np.full((4, 4), 256), np.full((4, 4, 3), -1),
                                    np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4, 3), np.uint8), np.zeros(5, np.uint8)])
def test_png_refuses_what_is_not_an_8_bit_picture(pixels):
    with pytest.raises(ValueError, match="PNG needs"):
        png_bytes(pixels)
