"""Export a classifier as a versioned SavedModel for TensorFlow Serving.

Two signatures, so that clients need no copy of the training pipeline:

- ``serving_default``: ``images`` float32 ``[N, S, S, 3]`` in [0, 1], already at the student's input size.
- ``predict_image_bytes``: ``image_bytes`` string ``[N]`` of encoded JPEG/PNG/BMP/GIF files (REST clients
  send ``{"b64": ...}``). The graph decodes each image and derives the student's view the way training
  did, so a client may send either a full high-magnification patch or a scan already at the student's
  magnification (see :func:`student_view`).

Both return ``probabilities`` float32 ``[N, C]``, ``class_index`` int64 ``[N]`` and ``class_name``
string ``[N]``. TF Serving loads the highest integer sub-directory of the model's base directory, hence
the ``<export_base>/<N>/`` layout; each version also carries ``assets.extra/metadata.json`` and
``assets.extra/labels.txt`` (files TF Serving and ``tf.saved_model.load`` leave alone).
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

from ird_tf.config import MODES, ConfigError

DEFAULT_SIGNATURE = "serving_default"
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


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Area resize when the image is larger than ``size`` (a true average, as the block mean of the
    pipeline for whole factors), bilinear otherwise (equal size is the identity)."""
    shape = tf.shape(image)
    larger = tf.logical_or(shape[0] > size, shape[1] > size)
    return tf.cond(
        larger,
        lambda: tf.image.resize(image, [size, size], method="area"),
        lambda: tf.image.resize(image, [size, size], method="bilinear"),
    )


def student_view(image: tf.Tensor, *, input_size: int, factor: int = 1, mode: str = "native") -> tf.Tensor:
    """One float image ``[H, W, 3]`` in [0, 1] brought to what the student saw in training, ``[S, S, 3]``.

    - ``native``: the student takes low-magnification images of side ``input_size``; any larger image
      (for example the full high-magnification patch, ``input_size * factor``) is area-downsampled.
    - ``upsampled``: the student takes ``input_size`` images that were block-mean downsampled by
      ``factor`` and bilinearly upsampled back; the image is first brought to ``input_size // factor``
      (area when larger, so a full patch and a native low-magnification scan give the same view), then
      bilinearly upsampled to ``input_size``.

    Non-square images are stretched to a square: patches are expected to be square.
    """
    native = input_size // factor if mode == "upsampled" else input_size
    image = _resize(image, native)
    if native != input_size:
        image = tf.image.resize(image, [input_size, input_size], method="bilinear")
    return tf.ensure_shape(image, [input_size, input_size, 3])


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
    ``input_size``, ``factor`` and ``mode`` describe the student's input (see :func:`student_view`);
    ``metadata`` (for example teacher and student magnification) is added to ``metadata.json``.
    The version is written to a hidden temporary directory first and renamed into place, so a model
    server polling ``export_base`` never sees half a version.
    """
    _check(input_size, factor, mode, class_names)
    names = [str(c) for c in class_names]
    extra_info = dict(metadata or {})
    clash = sorted(set(extra_info) & {"class_names", "input_size", "factor", "mode", "native_size",
                                      "signatures", "outputs"})
    if clash:
        raise ConfigError(f"export metadata keys {clash} are set by the export itself; use other names")
    base = Path(export_base)
    n = next_version(base) if version is None else int(version)
    target = base / str(n)
    if n < 1:
        raise ConfigError(f"export version={version!r}: expected an integer >= 1 (None: the next free one)")
    if target.exists():
        raise FileExistsError(f"export version {n}: {target} already exists; pass another version or "
                              "none (the next free number)")
    probe = _logits(model, tf.zeros([1, input_size, input_size, 3]))
    if probe.shape[-1] != len(names):
        raise ConfigError(
            f"export class_names has {len(names)} names {names}; the model outputs {probe.shape[-1]} logits"
        )
    table = tf.constant(names)

    def answer(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probs = tf.nn.softmax(_logits(model, images), axis=-1)
        index = tf.argmax(probs, axis=-1, output_type=tf.int64)
        return {"probabilities": probs, "class_index": index, "class_name": tf.gather(table, index)}

    def decode(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=3, dtype=tf.float32, expand_animations=False)
        return student_view(image, input_size=input_size, factor=factor, mode=mode)

    image_spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32, name="images")

    @tf.function(input_signature=[image_spec])
    def serve_images(images):
        return answer(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        spec = tf.TensorSpec([input_size, input_size, 3], tf.float32)
        return answer(tf.map_fn(decode, image_bytes, fn_output_signature=spec))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=DEFAULT_SIGNATURE, fn=serve_images)
    archive.add_endpoint(name=BYTES_SIGNATURE, fn=serve_bytes)

    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{n}-{os.getpid()}"
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
            "native_size": int(input_size // factor if mode == "upsampled" else input_size),
            "signatures": {
                DEFAULT_SIGNATURE: {"inputs": {"images": "float32 [N, S, S, 3] in [0, 1]"}},
                BYTES_SIGNATURE: {"inputs": {"image_bytes": "string [N] (encoded JPEG/PNG)"}},
            },
            "outputs": {"probabilities": "float32 [N, C]", "class_index": "int64 [N]",
                        "class_name": "string [N]"},
        }
        (extra / "metadata.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target
