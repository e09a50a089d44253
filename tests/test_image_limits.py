"""One pixel limit and one 16-to-8-bit rule."""

import numpy as np
import pytest

from cropmix.data.image_limits import MAX_IMAGE_PIXELS, BadImageError, check_image_size, scale_16bit_to_8bit


def test_sixteen_bit_scaling_keeps_the_top_byte():
    values = np.array([0, 128, 129, 257, 32767, 65535], dtype=np.uint16)
    assert scale_16bit_to_8bit(values).tolist() == [0, 0, 0, 1, 127, 255]


def test_sixteen_bit_out_of_range_is_refused():
    with pytest.raises(BadImageError, match=r"\[0, 65535\]"):
        scale_16bit_to_8bit(np.array([-1, 70000], dtype=np.int32))


def test_size_limits_name_the_image():
    check_image_size(8, 8, "a.png")
    with pytest.raises(BadImageError, match="bomb.jpg: 30000x30000"):
        check_image_size(30000, 30000, "bomb.jpg")
    assert 30000 * 30000 > MAX_IMAGE_PIXELS
    with pytest.raises(BadImageError, match="tiny.png: 2x2 pixels is too small"):
        check_image_size(2, 2, "tiny.png")
