"""The TF Serving export: signatures seen by ``saved_model_cli``, answers of a fresh process that loads
the export (float and encoded-bytes inputs, native and upsampled students), REST bodies built by
``tools/serving_request.py``, version numbering and metadata."""

import base64
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from ird_tf.config import ConfigError
from ird_tf.data.pipeline import make_dataset
from ird_tf.export.serving import BYTES_SIGNATURE, export_for_serving, next_version
from ird_tf.models import build_classifier

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "serving_request.py"
S, F = 32, 4  # student input size, downsampling factor
NAMES = ("NC", "G3", "G4", "G5")

# Runs in a fresh interpreter that never imports ird_tf: the export must stand alone.
FRESH = """
import sys
import numpy as np
import tensorflow as tf
native, up, d = sys.argv[1:]
read = lambda name: open(f"{d}/{name}", "rb").read()
out = {}
def run(prefix, fn, **inputs):
    for key, value in fn(**inputs).items():
        value = value.numpy()
        out[f"{prefix}.{key}"] = value.astype(str) if value.dtype == object else value
m = tf.saved_model.load(native)
run("float", m.signatures["serving_default"], images=tf.constant(np.load(f"{d}/x.npy")))
run("native_bytes", m.signatures["predict_image_bytes"],
    image_bytes=tf.constant([read("big.png"), read("patch.png")]))
u = tf.saved_model.load(up)
run("up_bytes", u.signatures["predict_image_bytes"],
    image_bytes=tf.constant([read("patch.png"), read("small.png")]))
np.savez(f"{d}/fresh.npz", **out)
"""


def _saved_model_cli() -> list[str]:
    script = Path(sys.executable).parent / "saved_model_cli"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _png(path: Path, size: int, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return np.asarray(Image.open(path), dtype=np.float32) / 255.0


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3), dtype=np.float64)


def _bilinear(image: np.ndarray, size: int) -> np.ndarray:
    return tf.image.resize(image[None].astype(np.float32), [size, size], method="bilinear")[0].numpy()


def _make_sensitive(model: keras.Model, x: np.ndarray) -> None:
    """A fresh tiny model answers ~uniform probabilities that barely move with the input, so a 1e-5
    comparison would accept a wrong preprocessing: scale the logits layer to a spread of several units."""
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    pre = model(x, training=False)["logits"].numpy() - bias
    scale = 3.0 / pre.std(axis=0).mean()
    layer.set_weights([kernel * scale, -scale * pre.mean(axis=0)])
    assert np.ptp(_probs(model, x), axis=0).max() > 0.1


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = build_classifier("vgg_tiny", len(NAMES), (S, S, 3))
    x = np.random.default_rng(0).random((3, S, S, 3), dtype=np.float32)
    _make_sensitive(model, x)
    d = tmp_path_factory.mktemp("serving")
    base = d / "student"
    native = export_for_serving(model, base, input_size=S, class_names=NAMES, factor=F, mode="native",
                                metadata={"teacher_mag": 10.0, "student_mag": 2.5})
    # The subprocesses import TensorFlow (slow): start each as soon as its input exists.
    cli = subprocess.Popen([*_saved_model_cli(), "show", "--dir", str(native), "--all"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    up = export_for_serving(model, base, input_size=S, class_names=NAMES, factor=F, mode="upsampled")
    np.save(d / "x.npy", x)
    images = {
        "big": _png(d / "big.png", S * F, 1),  # a 10x patch for the native student
        "patch": _png(d / "patch.png", S, 2),  # native: a low-mag scan; upsampled: a 10x patch
        "small": _png(d / "small.png", S // F, 3),  # upsampled: a low-mag scan at native size
    }
    fresh = subprocess.Popen([sys.executable, "-c", FRESH, str(native), str(up), str(d)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cli_out, cli_err = cli.communicate(timeout=300)
    _, fresh_err = fresh.communicate(timeout=300)
    assert cli.returncode == 0, cli_err[-3000:]
    assert fresh.returncode == 0, fresh_err[-3000:]
    with np.load(d / "fresh.npz") as z:
        answers = dict(z)
    return SimpleNamespace(model=model, dir=d, base=base, native=native, up=up, x=x, images=images,
                           cli=cli_out, fresh=answers)


def _probs(model: keras.Model, images: np.ndarray) -> np.ndarray:
    logits = model(np.asarray(images, dtype=np.float32), training=False)["logits"].numpy().astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _check_answer(prefix: str, answers: dict, want: np.ndarray) -> None:
    np.testing.assert_allclose(answers[f"{prefix}.probabilities"], want, atol=1e-5)
    index = answers[f"{prefix}.class_index"]
    assert index.dtype == np.int64
    np.testing.assert_array_equal(index, want.argmax(axis=1))
    assert list(answers[f"{prefix}.class_name"]) == [NAMES[i] for i in index]


def _signature_block(cli_output: str, name: str) -> str:
    start = cli_output.index(f"signature_def['{name}']")
    end = cli_output.find("signature_def[", start + 1)
    return cli_output[start:end if end > 0 else None]


def test_saved_model_cli_lists_both_signatures(exported):
    default = _signature_block(exported.cli, "serving_default")
    assert "inputs['images']" in default and "DT_FLOAT" in default and f"(-1, {S}, {S}, 3)" in default
    raw = _signature_block(exported.cli, BYTES_SIGNATURE)
    assert "inputs['image_bytes']" in raw and "DT_STRING" in raw
    for block in (default, raw):
        assert block.count("inputs[") == 1
        outputs = block.split("output(s):")[1]
        for name, dtype in (("probabilities", "DT_FLOAT"), ("class_index", "DT_INT64"),
                            ("class_name", "DT_STRING")):
            entry = outputs.split(f"outputs['{name}']")[1].split("name:")[0]
            assert dtype in entry, (name, entry)
        assert f"(-1, {len(NAMES)})" in outputs.split("outputs['probabilities']")[1]
        assert "tensorflow/serving/predict" in block


def test_fresh_process_float_signature_matches_keras(exported):
    _check_answer("float", exported.fresh, _probs(exported.model, exported.x))


def _pipeline_lr(path: Path, image_size: int, mode: str) -> np.ndarray:
    """The student's view of one file as training made it."""
    table = pd.DataFrame({"path": [str(path)], "label": [0]})
    ds = make_dataset(table, image_size=image_size, factor=F, mode=mode, batch_size=1, training=False,
                      cache=False)
    ((views, _),) = list(ds)
    return views["lr"].numpy()[0]


def test_bytes_signature_native_area_downsamples(exported):
    im = exported.images
    want = _probs(exported.model, [_block_mean(im["big"], F), im["patch"]])
    _check_answer("native_bytes", exported.fresh, want)
    training_view = _pipeline_lr(exported.dir / "big.png", S * F, "native")
    np.testing.assert_allclose(exported.fresh["native_bytes.probabilities"][0],
                               _probs(exported.model, [training_view])[0], atol=1e-5)


def test_bytes_signature_upsampled_follows_training_recipe(exported):
    im = exported.images
    want = _probs(exported.model, [_bilinear(_block_mean(im["patch"], F), S), _bilinear(im["small"], S)])
    _check_answer("up_bytes", exported.fresh, want)
    training_view = _pipeline_lr(exported.dir / "patch.png", S, "upsampled")
    np.testing.assert_allclose(exported.fresh["up_bytes.probabilities"][0],
                               _probs(exported.model, [training_view])[0], atol=1e-5)
    # the two views differ, so the test would notice a skipped downsampling step
    assert not np.allclose(want[0], _probs(exported.model, [im["patch"]])[0], atol=1e-4)


def tf_serving_predict(loaded, body: dict) -> dict:
    """TF Serving's REST row format, emulated: ``instances`` becomes one batch per signature input
    (a bare value per row when the signature has one input), ``{"b64": ...}`` becomes bytes; the
    answer is ``{"predictions": [one object of outputs per row]}``."""
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]

    def unwrap(v):
        if isinstance(v, dict) and set(v) == {"b64"}:
            return base64.b64decode(v["b64"])
        return [unwrap(e) for e in v] if isinstance(v, list) else v

    rows = body["instances"]
    if all(isinstance(r, dict) and set(r) != {"b64"} for r in rows):
        columns = {k: [unwrap(r[k]) for r in rows] for k in specs}
    else:
        (name,) = specs
        columns = {name: [unwrap(r) for r in rows]}
    outputs = signature(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in columns.items()})
    outputs = {k: v.numpy() for k, v in outputs.items()}

    def plain(v):
        return v.decode() if isinstance(v, bytes) else v.tolist()

    predictions = [{k: plain(v[i]) for k, v in outputs.items()} for i in range(len(rows))]
    return json.loads(json.dumps({"predictions": predictions}))


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def loaded_native(exported):
    return tf.saved_model.load(str(exported.native))


def test_rest_float_body_is_answered(exported, loaded_native):
    d, im, model = exported.dir, exported.images, exported.model
    done = _tool(str(d / "patch.png"))  # serving_default, float pixels; no --url: the body is printed
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"instances"} and np.shape(body["instances"]) == (1, S, S, 3)
    answer = tf_serving_predict(loaded_native, body)["predictions"]
    want = _probs(model, [im["patch"]])
    np.testing.assert_allclose([a["probabilities"] for a in answer], want, atol=1e-5)
    assert [a["class_name"] for a in answer] == [NAMES[i] for i in want.argmax(1)]

    spec = importlib.util.spec_from_file_location("serving_request", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.BYTES_SIGNATURE == BYTES_SIGNATURE
    # --size brings a 10x patch to the float signature's size by an area (box) average
    body = tool.build_body([d / "big.png"], size=S)
    np.testing.assert_allclose(body["instances"][0], _block_mean(im["big"], F), atol=1 / 255)


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the model server's REST predict endpoint."""

    loaded = None  # set per test, with the request log ``seen``
    seen: list | None = None

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, self.headers["Content-Type"], body))
        try:
            status, answer = 200, tf_serving_predict(self.loaded, body)
        except Exception as e:
            status, answer = 400, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_rest_b64_request_is_posted_and_answered(exported, loaded_native):
    d, im, model = exported.dir, exported.images, exported.model
    Image.fromarray((im["big"] * 255).astype(np.uint8)).save(d / "big.jpg", quality=90)
    handler = type("Handler", (_FakeServing,), {"loaded": loaded_native, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/models/student:predict"
    try:
        done = _tool("--b64", str(d / "big.png"), str(d / "patch.png"), str(d / "big.jpg"), "--url", url)
        refused = _tool("--b64", "--signature", "nope", str(d / "patch.png"), "--url", url)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    path, content_type, body = handler.seen[0]
    assert (path, content_type) == ("/v1/models/student:predict", "application/json")
    assert body["signature_name"] == BYTES_SIGNATURE
    assert base64.b64decode(body["instances"][0]["b64"]) == (d / "big.png").read_bytes()
    answer = json.loads(done.stdout)["predictions"]
    jpeg = tf.io.decode_jpeg((d / "big.jpg").read_bytes(), channels=3).numpy() / np.float32(255.0)
    want = _probs(model, [_block_mean(im["big"], F), im["patch"], _block_mean(jpeg, F)])
    np.testing.assert_allclose([a["probabilities"] for a in answer], want, atol=1e-5)
    assert [a["class_index"] for a in answer] == want.argmax(1).tolist()
    assert [a["class_name"] for a in answer] == [NAMES[i] for i in want.argmax(1)]
    # a server error reaches the user with its status and message, and a failing exit code
    assert refused.returncode == 1 and "answered 400" in refused.stderr and "nope" in refused.stderr


def test_versions_and_metadata(exported, tmp_path):
    assert (exported.native.name, exported.up.name) == ("1", "2")
    assert next_version(exported.base) == 3
    assert not [p for p in exported.base.iterdir() if p.name.startswith(".tmp")]
    meta = json.loads((exported.native / "assets.extra" / "metadata.json").read_text())
    assert meta["class_names"] == list(NAMES)
    assert (meta["input_size"], meta["factor"], meta["mode"], meta["native_size"]) == (S, F, "native", S)
    assert (meta["teacher_mag"], meta["student_mag"]) == (10.0, 2.5)
    up = json.loads((exported.up / "assets.extra" / "metadata.json").read_text())
    assert (up["mode"], up["native_size"]) == ("upsampled", S // F)
    assert (exported.up / "assets.extra" / "labels.txt").read_text().split() == list(NAMES)

    with pytest.raises(FileExistsError, match="already exists"):
        export_for_serving(exported.model, exported.base, input_size=S, class_names=NAMES, version=2)
    base = tmp_path / "m"
    (base / "junk").mkdir(parents=True)
    assert next_version(base) == 1
    shutil.copytree(exported.native, base / "7")
    os.makedirs(base / "3")
    assert next_version(base) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_names": ("a", "b")}, "class_names has 2 names"),
        ({"mode": "bicubic"}, "mode='bicubic' is not accepted"),
        ({"mode": "upsampled", "factor": 3}, "divisible by factor=3"),
        ({"metadata": {"mode": "x"}}, r"metadata keys \['mode'\]"),
        ({"version": 0}, "version=0"),
    ],
)
def test_bad_settings_are_named(exported, tmp_path, kwargs, message):
    args = {"input_size": S, "class_names": NAMES, **kwargs}
    with pytest.raises(ConfigError, match=message):
        export_for_serving(exported.model, tmp_path / "m", **args)
    assert not (tmp_path / "m").exists()
