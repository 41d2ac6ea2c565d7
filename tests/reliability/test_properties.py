"""Property-based tests (hypothesis): whatever a user gives — command lines, settings files, image
bytes, SICAPv2-like spreadsheets — the answer is a valid result or the project's own error that names
the option, key, file or row; never another exception."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ird_tf.config import ExperimentConfig
from ird_tf.errors import ConfigError, DataError
from ird_tf.experiments import cli

pytestmark = pytest.mark.properties

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- command lines ---------------------------------------------------------------------------------------
NUMBERS = st.sampled_from(["nan", "inf", "-inf", "NaN", "1e309", "0", "-1", "1", "2.5", "10", "1e-4", "0.3",
                           "3", "abc", "", "1e", "32", "64", "0x10", "-0"])
TEXTS = st.sampled_from(["Val1", "Val4", "Val9", "val1", "", "imagenet", "missing.weights.h5", "x.keras",
                         "a,b", "a,a", "nan", "vgg16", "native", "/nonexistent/dir"])
OPTIONS = ["--lr", "--res", "--teacher-mag", "--image-size", "--batch-size", "--epochs", "--teacher-epochs",
           "--seed", "--weight-decay", "--label-smoothing", "--at-temperature", "--kd-temperature",
           "--alpha-ce", "--alpha-fm", "--alpha-at", "--alpha-kd", "--alpha-fmap", "--fold", "--weights",
           "--student-weights", "--classes", "--backbone", "--mode", "--at-norm", "--optimizer",
           "--precision", "--verbose", "--name", "--fmap-p"]
FLAGS = ["--skip-missing", "--skip-corrupt", "--jit", "--at-first-order", "--no-export"]


@st.composite
def command_lines(draw):
    argv = []
    for option in draw(st.lists(st.sampled_from(OPTIONS), max_size=6)):
        argv += [option, draw(st.one_of(NUMBERS, TEXTS))]
    argv += draw(st.lists(st.sampled_from(FLAGS), max_size=2, unique=True))
    source = draw(st.sampled_from([[], ["--sicap", "/data/sicap"], ["--folders", "/data/folders"],
                                   ["--unlabeled", "/data/unlabeled"], ["--preset", "paper"]]))
    return argv + source


def _finite_numbers(cfg: ExperimentConfig) -> None:
    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, float):
            assert math.isfinite(x)
    walk(cfg.to_dict())


@FAST
@given(command_lines())
def test_a_command_line_builds_a_valid_config_or_a_configuration_error(argv):
    parser = cli.build_parser("t")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's own refusal (an unknown choice, not a number): exit 2, message
        assert e.code == 2
        return
    try:
        cfg = cli.config_from_args(args)
    except ConfigError as e:
        message = cli.with_option(str(e), vars(args))
        assert message and "\n" not in message
        return
    cfg.validate()
    _finite_numbers(cfg)


# -- settings files ----------------------------------------------------------------------------------------
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 600),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["Val1", "Val7", "vgg_tiny", "upsampled", "adam", "1e-3", "nan", "x",
                                     ""]))
KEYS = {
    "data": ["source", "root", "fold", "teacher_mag", "student_mag", "mode", "image_size", "batch_size",
             "class_names", "skip_corrupt", "augment", "synthetic", "bogus"],
    "model": ["backbone", "weights", "student_weights"],
    "loss": ["ce", "fm", "at", "kd", "fmap", "at_norm", "fmap_p", "label_smoothing", "kd_temperature"],
    "optim": ["name", "learning_rate", "weight_decay", "epochs", "teacher_epochs"],
    "run": ["seed", "output_dir", "name", "precision", "verbose", "jit"],
    "augment": ["scale", "rotation_deg", "enabled"],
    "synthetic": ["patients", "class_balance", "difficulty", "folds"],
}
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=6)


@st.composite
def settings_documents(draw):
    doc = {}
    for section in draw(st.lists(st.sampled_from([*KEYS, "extra", 3]), max_size=4, unique=True)):
        if section not in KEYS or (draw(st.booleans()) is False and draw(st.booleans())):
            doc[section] = draw(VALUES)
            continue
        part = {}
        for key in draw(st.lists(st.sampled_from(KEYS[section]), max_size=4, unique=True)):
            if key in ("augment", "synthetic"):
                part[key] = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(KEYS[key]), max_size=2))}
            else:
                part[key] = draw(VALUES)
        doc[section] = part
    return doc


def _load_text(text: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.yaml"
        path.write_text(text)
        try:
            return ExperimentConfig.load(path).validate()
        except ConfigError as e:
            assert str(path) in str(e) or "." in str(e) or "top level" in str(e), str(e)
            return None


@FAST
@given(settings_documents())
def test_a_settings_file_builds_a_valid_config_or_a_configuration_error(doc):
    cfg = _load_text(yaml.safe_dump(doc))
    if cfg is not None:
        _finite_numbers(cfg)


@FAST
@given(st.text(max_size=200))
def test_any_text_as_a_settings_file_is_a_config_or_a_configuration_error(text):
    _load_text(text)


# -- image bytes -------------------------------------------------------------------------------------------
def _encoded(fmt: str, mode: str, size: int) -> bytes:
    rng = np.random.default_rng(size)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array.squeeze(), mode if channels > 1 else "L").save(buf, format=fmt)
    return buf.getvalue()


SEEDS = [_encoded(f, m, s) for f, m, s in [("PNG", "RGB", 8), ("JPEG", "RGB", 16), ("PNG", "L", 8),
                                           ("PNG", "RGBA", 8), ("BMP", "RGB", 8), ("TIFF", "RGB", 8),
                                           ("WEBP", "RGB", 8), ("GIF", "L", 8)]]


@st.composite
def image_bytes(draw):
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "whole"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flipped":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


@SLOW
@given(image_bytes(), st.sampled_from([".png", ".jpg", ".tif", ".bmp"]))
def test_image_bytes_decode_to_rgb_uint8_or_a_data_error_naming_the_file(data, suffix):
    import tensorflow as tf

    from ird_tf.data.checks import apply_verdicts
    from ird_tf.data.decode import decoder
    from ird_tf.data.pipeline import check_images

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"patch{suffix}")
        Path(path).write_bytes(data)
        (check,) = check_images([path])
        if check.error:
            with pytest.raises(DataError, match="patch"):
                apply_verdicts([check], skip_corrupt=False)
            return
        from ird_tf.data.checks import TF_FORMATS

        source = tf.data.Dataset.from_tensor_slices(([path], [0], [check.format not in TF_FORMATS]))
        (image, _), = list(source.map(decoder(16, any_pil=True, resize=True)))  # as the pipeline does
        assert image.dtype == tf.uint8 and tuple(image.shape) == (16, 16, 3)


# -- SICAPv2-like spreadsheets -------------------------------------------------------------------------
CLASSES = ["NC", "G3", "G4", "G5"]
IMAGES = [f"16B0001851_Block_Region_{i}_0_0_xini_0_yini_0.jpg" for i in range(4)]
CELLS = st.one_of(st.sampled_from([0, 1, 1, 0, 2, -1, 0.5, "1", "x", None]), st.floats(allow_nan=True))
NAMES = st.one_of(st.sampled_from([*IMAGES, "absent.jpg", "../up.jpg", "/abs.jpg", "", None, IMAGES[0]]),
                  st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_categories=("Cs",)),
                          max_size=12))


@st.composite
def sheets(draw):
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):  # a well-formed row
            k = draw(st.integers(0, 3))
            onehot = {c: int(c == CLASSES[k]) for c in CLASSES}
            rows.append({"image_name": draw(st.sampled_from(IMAGES)), **onehot})
        else:
            rows.append({"image_name": draw(NAMES), **{c: draw(CELLS) for c in CLASSES}})
    columns = ["image_name", *CLASSES]
    drop = draw(st.lists(st.sampled_from(columns), max_size=2, unique=True)) if draw(st.booleans()) else []
    extra = draw(st.sampled_from([[], ["G4C"], ["comment"], ["G4C", "notes"]]))
    frame = pd.DataFrame(rows, columns=columns)
    for c in extra:
        frame[c] = draw(st.sampled_from([0, 1, "x", None]))
    return frame.drop(columns=drop)


@pytest.fixture(scope="module")
def sicap_root():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        for name in IMAGES:
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / name)
        good = pd.DataFrame([{"image_name": n, **{c: int(c == CLASSES[i]) for c in CLASSES}}
                             for i, n in enumerate(IMAGES)])
        for rel in ("partition/Validation/Val1/Test.xlsx", "partition/Test/Test.xlsx"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            good.to_excel(root / rel, index=False)
        yield root


@SLOW
@given(sheets())
def test_a_spreadsheet_loads_or_is_a_data_error_naming_the_file_and_row(sicap_root, frame):
    from ird_tf.data.readers import read_sicap

    train = sicap_root / "partition/Validation/Val1/Train.xlsx"
    frame.to_excel(train, index=False)
    try:
        splits = read_sicap(sicap_root, "Val1")
    except DataError as e:
        message = str(e)
        assert "Train.xlsx" in message or "train" in message, message
        row_problem = not any(m in message for m in ("missing column", "is empty", "not found in",
                                                    "cannot read spreadsheet"))
        if row_problem:
            assert "row" in message, message
        return
    assert len(splits.train) >= 1 and set(splits.train["label"]) <= {0, 1, 2, 3}
