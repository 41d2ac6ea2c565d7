"""Build a TensorFlow Serving REST predict request from image files, and send it when given ``--url``.

    python tools/serving_request.py scan_1.25x.png          # serving_default: Student-magnification floats
    python tools/serving_request.py patch_10x.png --high    # predict_high_mag: high-magnification floats
    python tools/serving_request.py patch.jpg --b64         # predict_image_bytes: the encoded file
    python tools/serving_request.py patch.jpg --b64 --url http://localhost:8501/v1/models/student:predict

Bodies follow TF Serving's REST API: the row format ``{"instances": [...]}`` (default) or the columnar
format ``{"inputs": {...}}`` (``--columns``), ``"signature_name"`` unless it is ``serving_default``, and
binary inputs as ``{"b64": "<base64>"}``. Float pixels are the exact float32 values k/255 written with
their shortest decimal form (at most 9 significant digits), not 17-digit doubles. Without ``--url``
the JSON body is printed (pipe it to ``curl -d @-``). Needs NumPy and Pillow only, not TensorFlow.
The export's signatures accept only their own sizes (see its ``metadata.json``): ``--size`` resizes
first (box filter when shrinking, an area average; bilinear when enlarging).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_SIGNATURE = "serving_default"
HIGH_SIGNATURE = "predict_high_mag"
BYTES_SIGNATURE = "predict_image_bytes"
FLOAT_INPUT, BYTES_INPUT = "images", "image_bytes"
# What every TF Serving's tf.io.decode_image reads; others (WebP: only recent TensorFlow) go as PNG.
_DECODABLE = ("JPEG", "PNG", "BMP", "GIF")
# k / 255 as float32, in the shortest decimal that reads back as the same float32
_LEVELS = [float(np.format_float_positional(np.float32(k) / np.float32(255.0), unique=True))
           for k in range(256)]


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise SystemExit(f"error: image file {path} does not exist")
    try:
        image = Image.open(path)
        image.load()
    except OSError as e:
        raise SystemExit(f"error: {path} is not a readable image ({e})") from e
    return image


def float_instance(path: str | Path, size: int | None = None) -> list:
    """The image as nested lists ``[H, W, 3]`` of float32 values k/255 in [0, 1]; ``size`` resizes it to
    ``size x size`` first (box filter when shrinking, that is an area average; bilinear when enlarging)."""
    image = _open(Path(path)).convert("RGB")
    if size and image.size != (size, size):
        shrink = size < min(image.size)
        image = image.resize((size, size), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return [[[_LEVELS[v] for v in px] for px in row] for row in pixels.tolist()]


def b64_instance(path: str | Path) -> dict[str, str]:
    """The encoded file as ``{"b64": ...}``; formats the served graph cannot decode are sent as PNG."""
    path = Path(path)
    image = _open(path)
    if image.format in _DECODABLE:
        data = path.read_bytes()
    else:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        data = buf.getvalue()
    return {"b64": base64.b64encode(data).decode("ascii")}


def build_body(paths: Sequence[str | Path], *, b64: bool = False, signature: str | None = None,
               size: int | None = None, high: bool = False, columns: bool = False) -> dict:
    """A predict body: rows ``{"instances": [...]}`` or, with ``columns``, ``{"inputs": {name: [...]}}``;
    ``signature_name`` unless it is the default. ``high``: float high-magnification patches
    (``predict_high_mag``)."""
    signature = signature or (BYTES_SIGNATURE if b64 else HIGH_SIGNATURE if high else DEFAULT_SIGNATURE)
    values = [b64_instance(p) if b64 else float_instance(p, size) for p in paths]
    name = BYTES_INPUT if b64 else FLOAT_INPUT
    body: dict = {"inputs": {name: values}} if columns else {"instances": values}
    if signature != DEFAULT_SIGNATURE:
        body = {"signature_name": signature, **body}
    return body


def post(url: str, body: dict, timeout: float = 60.0) -> dict:
    """POSTs ``body`` as JSON and returns the decoded answer; a server error exits with its message."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"error: {url} answered {e.code}: {e.read().decode(errors='replace')}") from e
    except urllib.error.URLError as e:
        raise SystemExit(f"error: cannot reach {url}: {e.reason}") from e


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="image files, one instance each")
    p.add_argument("--b64", action="store_true",
                   help=f"send the encoded files as {{'b64': ...}} (signature {BYTES_SIGNATURE})")
    p.add_argument("--high", action="store_true",
                   help=f"float high-magnification patches (signature {HIGH_SIGNATURE}); default: images at "
                        f"the Student's magnification ({DEFAULT_SIGNATURE})")
    p.add_argument("--signature", help=f"signature_name (default: {DEFAULT_SIGNATURE}, {HIGH_SIGNATURE} with "
                                       f"--high, {BYTES_SIGNATURE} with --b64)")
    p.add_argument("--columns", action="store_true",
                   help="columnar body {'inputs': {...}} instead of rows {'instances': [...]}")
    p.add_argument("--size", type=int,
                   help="float requests: resize to SIZE x SIZE first (the signature's size)")
    p.add_argument("--url", help="predict URL, e.g. http://localhost:8501/v1/models/<name>:predict; "
                   "without it the body is printed")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server")
    args = p.parse_args(argv)
    body = build_body(args.images, b64=args.b64, signature=args.signature, size=args.size, high=args.high,
                      columns=args.columns)
    if args.url:
        print(json.dumps(post(args.url, body, args.timeout), indent=2))
    else:
        json.dump(body, sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
