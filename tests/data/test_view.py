"""InputView: sizes derived once from the settings; the Student's input is a block mean (+ bilinear back)."""

import numpy as np
import pytest

from ird_tf.config import DataConfig
from ird_tf.data.view import InputView
from ird_tf.errors import ConfigError


def test_views_of_the_settings():
    data = DataConfig(image_size=128, student_mag=1.25, mode="native")
    teacher, student = InputView.teacher(data), InputView.student(data)
    assert (teacher.key, teacher.size, teacher.factor, teacher.is_teacher) == ("hr", 128, 1, True)
    assert (student.key, student.size, student.native_size, student.factor) == ("lr", 16, 16, 8)
    up = InputView.of(DataConfig(image_size=128, student_mag=2.5), "alone")
    assert (up.size, up.native_size) == (128, 32)


def test_student_input_is_a_block_mean_then_bilinear_back():
    rng = np.random.default_rng(0)
    hr = rng.random((2, 8, 8, 3)).astype(np.float32)
    blocks = hr.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))  # the 2x2 block mean, worked by hand
    native = InputView("lr", 8, 2, "native").from_high(hr).numpy()
    np.testing.assert_allclose(native, blocks, atol=1e-6)
    up = InputView("lr", 8, 2, "upsampled").from_high(hr).numpy()
    assert up.shape == hr.shape
    np.testing.assert_allclose(up[:, 1:7:2, 1:7:2].mean(), blocks[:, :3, :3].mean(), atol=0.05)
    assert InputView("hr", 8).from_high(hr) is hr


@pytest.mark.parametrize("kwargs", [dict(key="mid", image_size=8), dict(key="lr", image_size=8, factor=3),
                                    dict(key="lr", image_size=8, factor=2, mode="tiled")])
def test_bad_views_name_the_setting(kwargs):
    with pytest.raises(ConfigError, match="input view"):
        InputView(**kwargs)
