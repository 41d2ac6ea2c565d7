"""Export a classifier as a versioned SavedModel for TensorFlow Serving.

One input contract (:meth:`ird_tf.data.view.InputView.prepare`), three signatures whose input shapes
alone say what they take (``S`` = ``image_size``, the high-magnification patch the Student's view
derives from; ``n`` = ``native_size``, that patch at the Student's magnification):

- ``serving_default``: ``images`` float32 ``[N, n, n, 3]`` in [0, 1], images **at the Student's
  magnification in native size** (a slide level, a low-magnification scan). An ``upsampled`` Student's
  bilinear upsampling to ``S`` happens inside the graph.
- ``predict_high_mag``: ``images`` float32 ``[N, S, S, 3]`` in [0, 1], **high-magnification patches**
  (the Teacher's 10x); the graph derives the Student's view as training did (block mean, then bilinear
  back up in ``upsampled`` mode).
- ``predict_image_bytes``: ``image_bytes`` string ``[N]`` of encoded JPEG/PNG/BMP/GIF/WebP files (REST:
  ``{"b64": ...}``). Each image must be square, ``S x S`` (read as high magnification) or ``n x n`` (read
  as the Student's magnification); grayscale becomes 3 equal channels, an alpha channel is dropped.
  Any other size, and any undecodable file, fails the **whole request** with INVALID_ARGUMENT and a
  message naming the accepted sizes (no partial answers): send one image per request to isolate a bad
  one. Nothing is stretched or guessed.

A float tensor of another shape is refused by the signature's input spec. All return ``probabilities``
float32 ``[N, C]``, ``class_index`` int64 ``[N]`` and ``class_name`` string ``[N]``. TF Serving loads
the highest integer sub-directory of the model's base directory, hence the ``<export_base>/<N>/``
layout; each version also carries ``assets.extra/metadata.json`` (sizes, factor, mode, magnifications,
``teacher_mpp``: µm/px at the Teacher's magnification, 10 / teacher_mag by default, so 10x = 1 µm/px as
on SICAPv2 and the synthetic benchmark) and ``assets.extra/labels.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ird_tf import faults
from ird_tf.config import MODES, ConfigError
from ird_tf.data.view import InputView

DEFAULT_SIGNATURE = "serving_default"
HIGH_SIGNATURE = "predict_high_mag"
BYTES_SIGNATURE = "predict_image_bytes"
OUTPUTS = ("probabilities", "class_index", "class_name")


def next_version(export_base: str | Path) -> int:
    """1 + the highest integer-named sub-directory of ``export_base`` (1 when there is none)."""
    base = Path(export_base)
    if not base.is_dir():
        return 1
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def find_export(export_base: str | Path, **match: Any) -> Path | None:
    """The newest version under ``export_base`` whose ``metadata.json`` has every ``match`` item (for
    example the run directory and a hash of its weights), or None: a resumed run does not export the
    same model twice."""
    base = Path(export_base)
    if not base.is_dir():
        return None
    for version in sorted((p for p in base.iterdir() if p.is_dir() and p.name.isdigit()),
                          key=lambda p: int(p.name), reverse=True):
        try:
            info = json.loads((version / "assets.extra" / "metadata.json").read_text())
        except (OSError, ValueError):
            continue
        if all(info.get(k) == v for k, v in match.items()):
            return version
    return None


def _check(input_size: int, factor: int, mode: str, class_names: Sequence[str]) -> None:
    if mode not in MODES:
        raise ConfigError(f"export mode={mode!r} is not accepted; expected one of {list(MODES)}")
    if int(factor) != factor or factor < 1:
        raise ConfigError(f"export factor={factor!r}: expected a whole number >= 1")
    if input_size < 1 or (mode == "upsampled" and input_size % factor):
        raise ConfigError(
            f"export input_size={input_size!r}: expected a positive size"
            + (f" divisible by factor={factor} in upsampled mode" if mode == "upsampled" else "")
        )
    if not class_names:
        raise ConfigError("export class_names is empty; expected one name per model output")


def _logits(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    out = model(images, training=False)
    return tf.cast(out["logits"] if isinstance(out, dict) else out, tf.float32)


def export_for_serving(
    model: keras.Model,
    export_base: str | Path,
    *,
    input_size: int,
    class_names: Sequence[str],
    version: int | None = None,
    factor: int = 1,
    mode: str = "native",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Writes ``model`` as ``<export_base>/<N>/`` (N = ``version`` or :func:`next_version`) and returns
    that path.

    ``model`` returns ``{"logits": [B, C], ...}`` (or the logits alone) for float images in [0, 1];
    ``input_size`` (the model's input side), ``factor`` and ``mode`` describe the Student's view (see
    :class:`~ird_tf.data.view.InputView`); ``metadata`` (for example teacher and student magnification)
    is added to ``metadata.json``, with ``teacher_mpp`` = 10 / ``teacher_mag`` unless given. The version
    is written to a hidden temporary directory first and renamed into place, so a model server polling
    ``export_base`` never sees half a version.
    """
    _check(input_size, factor, mode, class_names)
    names = [str(c) for c in class_names]
    extra_info = dict(metadata or {})
    clash = sorted(set(extra_info) & {"class_names", "input_size", "image_size", "factor", "mode",
                                      "native_size", "signatures", "outputs"})
    if clash:
        raise ConfigError(f"export metadata keys {clash} are set by the export itself; use other names")
    base = Path(export_base)
    version_n = next_version(base) if version is None else int(version)
    target = base / str(version_n)
    if version_n < 1:
        raise ConfigError(f"export version={version!r}: expected an integer >= 1 (None: the next free one)")
    if target.exists():
        raise FileExistsError(f"export version {version_n}: {target} already exists; pass another version or "
                              "none (the next free number)")
    probe = _logits(model, tf.zeros([1, input_size, input_size, 3]))
    if probe.shape[-1] != len(names):
        raise ConfigError(
            f"export class_names has {len(names)} names {names}; the model outputs {probe.shape[-1]} logits"
        )
    table = tf.constant(names)
    high = input_size if mode == "upsampled" else input_size * factor
    view = InputView("lr", high, factor, mode)
    n = view.native_size
    if "teacher_mag" in extra_info and "teacher_mpp" not in extra_info:
        extra_info["teacher_mpp"] = 10.0 / float(extra_info["teacher_mag"])

    def answer(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probs = tf.nn.softmax(_logits(model, images), axis=-1)
        index = tf.argmax(probs, axis=-1, output_type=tf.int64)
        return {"probabilities": probs, "class_index": index, "class_name": tf.gather(table, index)}

    sizes_msg = (f"{BYTES_SIGNATURE}: expected a square image of {high}x{high} px (high magnification) "
                 f"or {n}x{n} px (the Student's magnification); got height, width:")

    def decode(data: tf.Tensor) -> tf.Tensor:
        # uint8 first: the WebP decoder takes no other dtype (16-bit PNGs are scaled to 8 bits)
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        image = tf.cast(image, tf.float32) / 255.0
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        ok = tf.logical_and(tf.equal(h, w), tf.logical_or(tf.equal(h, high), tf.equal(h, n)))
        with tf.control_dependencies([tf.debugging.Assert(ok, [sizes_msg, h, w])]):
            image = tf.identity(image)
        return tf.cond(
            tf.equal(h, high),
            lambda: view.prepare(tf.ensure_shape(image, [high, high, 3])[None], "high")[0],
            lambda: view.prepare(tf.ensure_shape(image, [n, n, 3])[None], "native")[0],
        )

    def require(images: tf.Tensor, side: int, signature: str, what: str) -> tf.Tensor:
        # the input spec alone is not enforced when a graph is fed directly (fully convolutional
        # models would answer any size): check it, with a message naming the accepted shape
        shape = tf.shape(images)
        ok = tf.reduce_all(tf.equal(shape[1:], [side, side, 3]))
        msg = f"{signature}: expected float32 [N, {side}, {side}, 3] ({what}); got shape:"
        with tf.control_dependencies([tf.debugging.Assert(ok, [msg, shape])]):
            return tf.identity(images)

    @tf.function(input_signature=[tf.TensorSpec([None, n, n, 3], tf.float32, name="images")])
    def serve_images(images):
        images = require(images, n, DEFAULT_SIGNATURE, "images at the Student's magnification, native size")
        return answer(view.prepare(images, "native"))

    @tf.function(input_signature=[tf.TensorSpec([None, high, high, 3], tf.float32, name="images")])
    def serve_high(images):
        images = require(images, high, HIGH_SIGNATURE, "high-magnification patches")
        return answer(view.prepare(images, "high"))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        spec = tf.TensorSpec([input_size, input_size, 3], tf.float32)
        return answer(tf.map_fn(decode, image_bytes, fn_output_signature=spec))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=DEFAULT_SIGNATURE, fn=serve_images)
    archive.add_endpoint(name=HIGH_SIGNATURE, fn=serve_high)
    archive.add_endpoint(name=BYTES_SIGNATURE, fn=serve_bytes)

    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{version_n}-{os.getpid()}"
    try:
        archive.write_out(str(tmp), verbose=False)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "labels.txt").write_text("\n".join(names) + "\n")
        info = {
            **extra_info,
            "class_names": names,
            "input_size": int(input_size),
            "factor": int(factor),
            "mode": mode,
            "image_size": int(high),
            "native_size": int(n),
            "signatures": {
                DEFAULT_SIGNATURE: {"inputs": {"images": f"float32 [N, {n}, {n}, 3] in [0, 1]: images at the "
                                                         "Student's magnification, native size"}},
                HIGH_SIGNATURE: {"inputs": {"images": f"float32 [N, {high}, {high}, 3] in [0, 1]: "
                                                      "high-magnification patches"}},
                BYTES_SIGNATURE: {"inputs": {"image_bytes": f"string [N]: encoded JPEG/PNG/BMP/GIF/WebP, "
                                                            f"square, {high} or {n} px"}},
            },
            "outputs": {"probabilities": "float32 [N, C]", "class_index": "int64 [N]",
                        "class_name": "string [N]"},
        }
        (extra / "metadata.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        faults.point("export")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target
