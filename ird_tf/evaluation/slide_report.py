"""What a slide run writes: the per-tile table (CSV), the tiles as QuPath detections (GeoJSON), a
heatmap over the thumbnail, the tissue mask, the slide summary (JSON) and ``slides.csv`` over slides.

GeoJSON: a ``FeatureCollection``; each tile is a ``Polygon`` in level-0 pixel coordinates (origin at the
top-left corner of the full-resolution image, as QuPath's import expects) whose ``properties`` carry
``objectType: "detection"``, ``classification: {"name", "color": [r, g, b]}`` and ``measurements`` as a
name -> number mapping (the form QuPath 0.4+ reads and writes; its reader also accepts the older list
of ``{"name", "value"}``). Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ird_tf.files import write_bytes, write_json, write_text

DEFAULT_COLORS = {"NC": (120, 198, 121), "G3": (44, 127, 184), "G4": (253, 174, 97), "G5": (215, 25, 28)}
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
SLIDES_COLUMNS = ("slide", "status", "tiles", "level", "mpp_read", "primary", "secondary", "score",
                  "grade_group", "grading", "seconds", "error")


def class_colors(class_names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {c: DEFAULT_COLORS.get(c, _PALETTE[i % len(_PALETTE)]) for i, c in enumerate(class_names)}


def _num(v: float) -> float:
    return float(f"{float(v):.6g}")


def tile_columns(class_names: Sequence[str], teacher: bool = False) -> list[str]:
    """The columns of ``tiles.csv`` (also its header when a slide has no tissue tile)."""
    cols = ["x", "y", "width", "height", "mpp", "level", "tissue", *(f"prob_{c}" for c in class_names),
            "class"]
    if teacher:
        cols += [*(f"teacher_prob_{c}" for c in class_names), "teacher_class"]
    return cols


def tile_rows(tiles: Sequence, probs: np.ndarray, class_names: Sequence[str], *, mpp: float, level: int,
              teacher: np.ndarray | None = None) -> list[dict]:
    """One row per tile: level-0 x, y, width, height; µm/px read at; tissue fraction; prob_<class>;
    class (and teacher_prob_<class>, teacher_class when a Teacher ran on the same grid)."""
    rows = []
    for i, t in enumerate(tiles):
        row = {"x": t.x, "y": t.y, "width": t.size, "height": t.size, "mpp": _num(mpp), "level": level,
               "tissue": _num(t.tissue)}
        row.update({f"prob_{c}": _num(p) for c, p in zip(class_names, probs[i], strict=True)})
        row["class"] = class_names[int(np.argmax(probs[i]))]
        if teacher is not None:
            row.update({f"teacher_prob_{c}": _num(p) for c, p in zip(class_names, teacher[i], strict=True)})
            row["teacher_class"] = class_names[int(np.argmax(teacher[i]))]
        rows.append(row)
    return rows


def write_csv(path: str | Path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    columns = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def geojson(rows: Sequence[dict], class_names: Sequence[str]) -> dict:
    """The tiles as QuPath detections (see the module's docstring)."""
    colors = class_colors(class_names)
    features = []
    for r in rows:
        x0, y0, x1, y1 = r["x"], r["y"], r["x"] + r["width"], r["y"] + r["height"]
        measurements = {k: v for k, v in r.items() if k.startswith(("prob_", "teacher_prob_"))}
        measurements["tissue"] = r["tissue"]
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {
                "objectType": "detection",
                "classification": {"name": r["class"], "color": list(colors[r["class"]])},
                "measurements": measurements,
            },
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, rows: Sequence[dict], class_names: Sequence[str]) -> Path:
    return write_text(path, json.dumps(geojson(rows, class_names), separators=(",", ":")) + "\n")


class TileTable:
    """The per-tile table of a slide held as columns: what :func:`tile_rows` gives as one dict per row,
    written by :meth:`write_csv` and :meth:`write_geojson` to the same bytes as :func:`write_csv` and
    :func:`write_geojson` of those rows (each number as ``_num`` gives it), without a dict per tile (on a
    slide of 2000 tiles the rows, the CSV writer and ``json.dumps`` took as long as a 1.25x Student's
    inference). The text of each rounded number is made once, with the number, and shared by both
    files; each file is one %-formatting call over the table."""

    def __init__(self, tiles: Sequence, probs: np.ndarray, class_names: Sequence[str], *, mpp: float,
                 level: int, teacher: np.ndarray | None = None):
        self.class_names = tuple(class_names)
        self.x = np.array([t.x for t in tiles], np.int64)
        self.y = np.array([t.y for t in tiles], np.int64)
        self.size = np.array([t.size for t in tiles], np.int64)
        self.tissue, self._tissue_text = _rounded([t.tissue for t in tiles])
        self.mpp, self.level = _num(mpp), level
        c = len(self.class_names)
        probs = np.asarray(probs).reshape(len(self.x), c)
        self.cls = probs.argmax(axis=1) if len(self.x) else np.zeros(0, np.int64)
        self.probs, self._probs_text = _rounded_table(probs)
        self.teacher = self.t_cls = self._teacher_text = None
        if teacher is not None:
            teacher = np.asarray(teacher).reshape(len(self.x), c)
            self.t_cls = teacher.argmax(axis=1) if len(self.x) else np.zeros(0, np.int64)
            self.teacher, self._teacher_text = _rounded_table(teacher)

    def __len__(self) -> int:
        return len(self.x)

    def counts(self, teacher: bool = False) -> dict[str, int]:
        cls = self.t_cls if teacher else self.cls
        n = np.bincount(cls, minlength=len(self.class_names)) if cls is not None else []
        return {c: int(k) for c, k in zip(self.class_names, n, strict=False)}

    def class_prob(self) -> np.ndarray:
        """The (rounded) probability of each tile's class."""
        return self.probs[np.arange(len(self.x)), self.cls]

    def rows(self) -> list[dict]:
        """The same rows as :func:`tile_rows`."""
        tiles = [_Tile(int(x), int(y), int(s), t) for x, y, s, t in
                 zip(self.x, self.y, self.size, self.tissue, strict=True)]
        return tile_rows(tiles, self.probs, self.class_names, mpp=self.mpp, level=self.level,
                         teacher=self.teacher)

    def _finite(self) -> bool:
        teacher = self.teacher if self.teacher is not None else np.zeros(0)
        return bool(np.isfinite(self.probs).all() and np.isfinite(teacher).all()
                    and np.isfinite(self.tissue).all() and np.isfinite(self.mpp))

    def write_csv(self, path: str | Path) -> Path:
        names = self.class_names
        if not self._finite():  # json and csv spell nan and inf differently from repr: the slow route
            return write_csv(path, self.rows(), tile_columns(names, self.teacher is not None))
        cols = tile_columns(names, self.teacher is not None)
        field = np.array([_csv_field(c) for c in names], object)
        probs = "," + ",".join(["%s"] * len(names))
        line = f"%d,%d,%d,%d,{_literal(repr(self.mpp))},{self.level},%s{probs},%s"
        columns = [self.x, self.y, self.size, self.size, self._tissue_text, *self._probs_text.T,
                   field[self.cls]]
        if self.teacher is not None:
            line += f"{probs},%s"
            columns += [*self._teacher_text.T, field[self.t_cls]]
        head = ",".join(_csv_field(c) for c in cols)
        return write_text(path, head + "\n" + _rows(line, columns, "\n") + ("\n" if len(self) else ""))

    def write_geojson(self, path: str | Path) -> Path:
        names = self.class_names
        if not self._finite():
            return write_geojson(path, self.rows(), names)
        colors = class_colors(names)
        klass = np.array([json.dumps({"name": c, "color": list(colors[c])}, separators=(",", ":"))
                          for c in names], object)
        keys = [json.dumps(f"prob_{c}") for c in names]
        values = [*self._probs_text.T]
        if self.teacher is not None:
            keys += [json.dumps(f"teacher_prob_{c}") for c in names]
            values += [*self._teacher_text.T]
        meas = ",".join(f"{_literal(k)}:%s" for k in keys)
        feature = ('{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[%d,%d],[%d,%d],[%d,%d],'
                   '[%d,%d],[%d,%d]]]},"properties":{"objectType":"detection","classification":%s,'
                   f'"measurements":{{{meas},"tissue":%s}}}}}}')
        x0, y0 = self.x, self.y
        x1, y1 = x0 + self.size, y0 + self.size
        columns = [x0, y0, x1, y0, x1, y1, x0, y1, x0, y0, klass[self.cls], *values, self._tissue_text]
        return write_text(path, '{"type":"FeatureCollection","features":[' + _rows(feature, columns, ",")
                          + "]}\n")


def _literal(text: str) -> str:
    """``text`` as a literal part of a %-format."""
    return text.replace("%", "%%")


def _rows(line: str, columns: Sequence, sep: str) -> str:
    """``line`` (a %-format: %d for ints, %s for text) filled with each row of ``columns`` (equal
    lengths) and joined by ``sep``: one formatting call for the whole table, not one per tile."""
    n = len(columns[0]) if columns else 0
    if not n:
        return ""
    cells = np.empty((n, len(columns)), object)  # numpy's ints and floats become Python's here
    for j, c in enumerate(columns):
        cells[:, j] = c
    return sep.join([line] * n) % tuple(cells.ravel().tolist())


class _Tile:
    __slots__ = ("size", "tissue", "x", "y")

    def __init__(self, x, y, size, tissue):
        self.x, self.y, self.size, self.tissue = x, y, size, tissue


def _nums(values) -> list[float]:
    """:func:`_num` of each value."""
    return _rounded(values)[0]


def _rounded(values) -> tuple[list[float], list[str]]:
    """:func:`_num` of each value and its ``repr`` (what the rows' CSV and JSON writers print), both
    from one ``%.6g`` formatting call: the text of a number of at most six significant digits is that
    of ``%.6g`` (which drops trailing zeros) with ``.0`` added to a whole number, except where ``%g``
    writes an exponent that ``repr`` does not (from 1e6 to 1e16) and near the subnormals (fewer
    significant bits than six digits need), left to ``repr``."""
    values = np.asarray(values, np.float64).ravel().tolist()
    if not values:
        return [], []
    texts = (",".join(["%.6g"] * len(values)) % tuple(values)).split(",")
    nums = list(map(float, texts))
    return nums, [repr(v) if "e+" in t or 0 < abs(v) < 1e-300 else t if "." in t or "e" in t or "n" in t
                  else t + ".0"
                  for t, v in zip(texts, nums, strict=True)]


def _rounded_table(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rounded` of a 2-D array: the numbers (float64) and their texts (object), same shape."""
    nums, texts = _rounded(values)
    return (np.array(nums, np.float64).reshape(values.shape),
            np.array(texts, object).reshape(values.shape))


def _csv_field(text: str) -> str:
    """``text`` as the csv module writes one field (quoted when it holds a comma, quote or newline)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([text])
    return buf.getvalue()[:-1]


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of uint8 ``pixels`` (``[h, w]`` grey or ``[h, w, 3]`` RGB): every row with the "Up" filter
    (its difference from the row above, one numpy subtraction), deflated with the run-length strategy
    (``Z_RLE``) in one IDAT chunk. On the heatmap and the tissue mask of the benchmark's slide this
    took a third to a quarter of the time of Pillow's encoder (which tries five filters on every row;
    compression level 1 for the heatmap, its default for the mask), for files a few per cent larger.
    Lossless: the pixels read back are ``pixels``."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3) or 0 in pixels.shape[:2]:
        raise ValueError(f"png_bytes: expected [h, w] or [h, w, 3] uint8 pixels, got {pixels.shape}")
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter type "Up" (wrapping differences, as PNG's modulo-256 arithmetic)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = deflate.compress(raw.data) + deflate.flush()
    colour = 0 if pixels.ndim == 2 else 2  # greyscale or truecolour, 8 bits, no interlace
    return b"".join([b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)),
                     _chunk(b"IDAT", data), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_tissue_png(path: str | Path, mask: np.ndarray) -> Path:
    return write_bytes(path, png_bytes(np.where(mask, 255, 0).astype(np.uint8)))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def heatmap_image(thumbnail: np.ndarray, downsample: float, rows: Sequence[dict] | TileTable,
                  class_names: Sequence[str], title: str = "", min_side: int = 512):
    """The predicted class of each tile over the thumbnail (opacity 0.25 + 0.5 x its probability), a
    title line and a legend of classes with their tile counts, as a PIL image (drawn with PIL, not
    Matplotlib: a few milliseconds, so writing it costs nothing next to the inference)."""
    from PIL import Image, ImageDraw

    colors = class_colors(class_names)
    h, w = thumbnail.shape[:2]
    zoom = max(1, int(np.ceil(min_side / max(h, w, 1))))
    d = downsample / zoom
    big = np.repeat(np.repeat(thumbnail, zoom, axis=0), zoom, axis=1) if zoom > 1 else thumbnail
    if isinstance(rows, TileTable):
        xs, ys, ws, hs = rows.x, rows.y, rows.size, rows.size
        cls, prob = rows.cls, rows.class_prob()
    else:
        index = {c: i for i, c in enumerate(class_names)}
        xs, ys, ws, hs = (np.array([r[k] for r in rows], np.float64) for k in ("x", "y", "width", "height"))
        cls = np.array([index[r["class"]] for r in rows], np.int64)
        prob = np.array([float(r[f"prob_{r['class']}"]) for r in rows], np.float64)
    # each tile's rectangle (int() truncates, round() halves to even as np.rint), painted in order
    x0s, y0s = (xs / d).astype(np.int64), (ys / d).astype(np.int64)
    x1s = np.maximum(x0s + 1, np.rint((xs + ws) / d).astype(np.int64))
    y1s = np.maximum(y0s + 1, np.rint((ys + hs) / d).astype(np.int64))
    palette = np.array([colors[c] for c in class_names], np.float32)
    opacity = (0.25 + 0.5 * prob).astype(np.float32)
    counts = {c: int(n) for c, n in zip(class_names, np.bincount(cls, minlength=len(class_names)),
                                         strict=True)}
    # which tile each pixel shows (the last one painted over it; -1: none)
    owner = np.full(big.shape[:2], -1, np.int32)
    for i, (x0, y0, x1, y1) in enumerate(zip(x0s.tolist(), y0s.tolist(), x1s.tolist(), y1s.tolist(),
                                             strict=True)):
        owner[y0:y1, x0:x1] = i
    # thumbnail x (1 - opacity) + colour x opacity in float32, the two factors taken per pixel from a
    # row per tile and a last row (the one -1 takes) that keeps the thumbnail as it is; np.take over
    # rows, not fancy indexing (about 4x slower)
    keep = np.ones((len(cls) + 1, 3), np.float32)
    add = np.zeros((len(cls) + 1, 3), np.float32)
    keep[:-1] = (1 - opacity)[:, None]
    add[:-1] = palette[cls] * opacity[:, None]
    who = owner.ravel()
    blended = big.astype(np.float32)
    blended *= np.take(keep, who, axis=0).reshape(big.shape)
    blended += np.take(add, who, axis=0).reshape(big.shape)
    blended = np.rint(blended, out=blended).astype(np.uint8)
    font, pad, line = _font(14), 10, 22
    legend_w = 200
    top = line + pad if title else pad
    canvas = Image.new("RGB", (blended.shape[1] + legend_w + 2 * pad, blended.shape[0] + top + pad), "white")
    canvas.paste(Image.fromarray(blended), (pad, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad // 2), title, fill=(0, 0, 0), font=font)
    x = blended.shape[1] + 2 * pad
    for i, c in enumerate(class_names):
        y = top + i * line
        draw.rectangle([x, y + 3, x + 14, y + 17], fill=tuple(colors[c]))
        draw.text((x + 20, y + 2), f"{c} ({counts[c]} tiles)", fill=(0, 0, 0), font=font)
    draw.text((x, top + len(class_names) * line + 6), "opacity: probability", fill=(90, 90, 90), font=font)
    return canvas


def write_heatmap(path: str | Path, thumbnail: np.ndarray, downsample: float,
                  rows: Sequence[dict] | TileTable, class_names: Sequence[str], title: str = "") -> Path:
    """Writes :func:`heatmap_image` as a PNG."""
    return write_bytes(path, png_bytes(np.asarray(heatmap_image(thumbnail, downsample, rows, class_names,
                                                                  title))))


def write_summary(path: str | Path, summary: dict) -> Path:
    return write_json(path, summary, default=str)


def write_slides_csv(out_dir: str | Path, failures: dict[str, str] | None = None) -> Path:
    """``slides.csv``: one row per slide with a ``summary.json`` under ``out_dir`` (finished), and one
    per slide that failed in this run."""
    out_dir = Path(out_dir)
    rows = []
    for f in sorted(out_dir.glob("*/summary.json")):
        try:
            s = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        g = s.get("grading", {})
        rows.append({"slide": s["slide"], "status": "done", "tiles": s["tiles"], "level": s["level"],
                     "mpp_read": s["mpp_read"], "primary": g.get("primary"), "secondary": g.get("secondary"),
                     "score": g.get("score"), "grade_group": g.get("grade_group"), "grading": g.get("label"),
                     "seconds": s.get("seconds"), "error": ""})
    done = {r["slide"] for r in rows}
    for name, err in sorted((failures or {}).items()):
        if name not in done:
            rows.append({"slide": name, "status": "failed", "error": err})
    return write_csv(out_dir / "slides.csv", rows, SLIDES_COLUMNS)


__all__ = ["DEFAULT_COLORS", "SLIDES_COLUMNS", "TileTable", "class_colors", "geojson", "heatmap_image",
           "png_bytes", "tile_columns", "tile_rows", "write_csv", "write_geojson", "write_heatmap",
           "write_slides_csv", "write_summary", "write_tissue_png"]
