"""Fixtures of the model tests."""

import h5py
import keras
import pytest
from keras.src.legacy.saving import legacy_h5_format


@pytest.fixture
def vgg16_notop(tmp_path):
    """(Keras's VGG16 without top, seeded random weights; the path of its weights in Keras's legacy
    notop .h5 format): what ``--weights FILE`` gets from the published file, without the download."""
    keras.utils.set_random_seed(1)
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    return reference, path
