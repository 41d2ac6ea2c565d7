"""The serving contract: shapes alone say what a signature takes (Student-magnification images in native
size, or high-magnification patches), the bytes signature accepts exactly those two square sizes
(grayscale and WebP handled, anything else refused for the whole request), and the REST bodies of
``tools/serving_request.py`` follow TF Serving's documented formats with short float literals."""

import importlib.util
import io
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ird_tf.data.view import InputView
from ird_tf.export.serving import BYTES_SIGNATURE, DEFAULT_SIGNATURE, HIGH_SIGNATURE, export_for_serving
from ird_tf.models import build_classifier

ROOT = Path(__file__).resolve().parents[2]
S, F = 32, 4  # high-magnification patch side, factor: native side 8
NAMES = ("NC", "G3", "G4", "G5")


def _encode(pixels: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    keras.utils.set_random_seed(5)
    model = build_classifier("vgg_tiny", len(NAMES), (S, S, 3))
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 50.0, bias])  # probabilities that move with the input
    base = tmp_path_factory.mktemp("contract") / "student"
    path = export_for_serving(model, base, input_size=S, class_names=NAMES, factor=F, mode="upsampled",
                              metadata={"teacher_mag": 10.0, "student_mag": 2.5})
    return model, path, tf.saved_model.load(str(path))


def _keras(model, x):
    return tf.nn.softmax(model(x, training=False)["logits"]).numpy()


def test_signatures_take_sizes_that_say_what_they_are(served):
    model, path, loaded = served
    view = InputView("lr", S, F, "upsampled")
    high = np.random.default_rng(0).random((2, S, S, 3), dtype=np.float32)
    native = tf.nn.avg_pool2d(high, F, F, "VALID").numpy()
    specs = {k: loaded.signatures[k].structured_input_signature[1]
             for k in (DEFAULT_SIGNATURE, HIGH_SIGNATURE)}
    assert specs[DEFAULT_SIGNATURE]["images"].shape.as_list() == [None, S // F, S // F, 3]
    assert specs[HIGH_SIGNATURE]["images"].shape.as_list() == [None, S, S, 3]
    want = _keras(model, view.from_high(high))
    by_native = loaded.signatures[DEFAULT_SIGNATURE](images=tf.constant(native))["probabilities"].numpy()
    by_high = loaded.signatures[HIGH_SIGNATURE](images=tf.constant(high))["probabilities"].numpy()
    np.testing.assert_allclose(by_native, want, atol=1e-5)
    np.testing.assert_allclose(by_high, want, atol=1e-5)
    assert np.ptp(want, axis=0).max() > 0.01  # the model's answer depends on the image
    # a 10x patch is not a 2.5x image (the fully convolutional model would answer it silently)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected float32 \[N, 8, 8, 3\]"):
        loaded.signatures[DEFAULT_SIGNATURE](images=tf.constant(high))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"predict_high_mag: expected"):
        loaded.signatures[HIGH_SIGNATURE](images=tf.constant(native))
    meta = json.loads((path / "assets.extra" / "metadata.json").read_text())
    sizes = (meta["image_size"], meta["native_size"], meta["input_size"], meta["teacher_mpp"])
    assert sizes == (S, S // F, S, 1.0)
    assert set(meta["signatures"]) == {DEFAULT_SIGNATURE, HIGH_SIGNATURE, BYTES_SIGNATURE}


def test_bytes_signature_sizes_gray_webp_and_bad_images(served):
    _, _, loaded = served
    fn = loaded.signatures[BYTES_SIGNATURE]
    rng = np.random.default_rng(1)
    patch = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (S // F, S // F, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (S // F, S // F), dtype=np.uint8)

    def probs(*files):
        return fn(image_bytes=tf.constant(list(files)))["probabilities"].numpy()

    def floats(signature, pixels):
        x = tf.constant(pixels[None] / np.float32(255.0), tf.float32)
        return loaded.signatures[signature](images=x)["probabilities"].numpy()[0]

    got = probs(_encode(patch, "PNG"), _encode(small, "PNG"), _encode(gray, "PNG"),
                _encode(small, "WEBP", lossless=True))
    np.testing.assert_allclose(got[0], floats(HIGH_SIGNATURE, patch), atol=1e-5)
    np.testing.assert_allclose(got[1], floats(DEFAULT_SIGNATURE, small), atol=1e-5)
    np.testing.assert_allclose(got[2], floats(DEFAULT_SIGNATURE, np.repeat(gray[..., None], 3, 2)), atol=1e-5)
    np.testing.assert_allclose(got[3], got[1], atol=1e-5)  # lossless WebP = the same pixels
    for bad, why in ((patch[:, : S // 2], "square"), (patch[:16, :16], "32x32 px")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=why):
            probs(_encode(bad, "PNG"))
        with pytest.raises(tf.errors.InvalidArgumentError):  # one bad image fails the whole request
            probs(_encode(small, "PNG"), _encode(bad, "PNG"))
    with pytest.raises(tf.errors.InvalidArgumentError):
        probs(b"not an image")


def _tool():
    spec = importlib.util.spec_from_file_location("serving_request", ROOT / "tools" / "serving_request.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_rest_bodies_follow_tf_serving_formats(tmp_path):
    tool = _tool()
    pixels = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "a.webp", lossless=True)
    rows = tool.build_body([tmp_path / "a.png"])
    assert set(rows) == {"instances"}  # serving_default needs no signature_name
    text = json.dumps(rows)
    numbers = re.findall(r"[0-9.eE+-]+", text.split(":", 1)[1])
    assert len(numbers) == 8 * 8 * 3 and max(len(t) for t in numbers) <= 11  # no 17-digit doubles
    np.testing.assert_array_equal(np.asarray(rows["instances"][0], np.float32),
                                  pixels.astype(np.float32) / np.float32(255.0))  # the exact float32 values
    cols = tool.build_body([tmp_path / "a.png"], high=True, columns=True)
    assert cols["signature_name"] == HIGH_SIGNATURE and list(cols["inputs"]) == ["images"]
    b64 = tool.build_body([tmp_path / "a.webp"], b64=True, columns=True)
    assert b64["signature_name"] == BYTES_SIGNATURE and set(b64["inputs"]["image_bytes"][0]) == {"b64"}
    import base64

    sent = Image.open(io.BytesIO(base64.b64decode(b64["inputs"]["image_bytes"][0]["b64"])))
    assert sent.format == "PNG"  # WebP goes as PNG: older model servers cannot decode it
    np.testing.assert_array_equal(np.asarray(sent), pixels)
