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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ird_tf.files import atomic_path, write_json, write_text

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


def write_tissue_png(path: str | Path, mask: np.ndarray) -> Path:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
    return Path(path)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def heatmap_image(thumbnail: np.ndarray, downsample: float, rows: Sequence[dict], class_names: Sequence[str],
                  title: str = "", min_side: int = 512):
    """The predicted class of each tile over the thumbnail (opacity 0.25 + 0.5 x its probability), a
    title line and a legend of classes with their tile counts, as a PIL image (drawn with PIL, not
    Matplotlib: a few milliseconds, so writing it costs nothing next to the inference)."""
    from PIL import Image, ImageDraw

    colors = class_colors(class_names)
    h, w = thumbnail.shape[:2]
    zoom = max(1, int(np.ceil(min_side / max(h, w, 1))))
    d = downsample / zoom
    base = np.repeat(np.repeat(thumbnail, zoom, axis=0), zoom, axis=1).astype(np.float32)
    color = np.zeros_like(base)
    alpha = np.zeros((*base.shape[:2], 1), np.float32)
    for r in rows:
        x0, y0 = int(r["x"] / d), int(r["y"] / d)
        x1 = max(x0 + 1, int(round((r["x"] + r["width"]) / d)))
        y1 = max(y0 + 1, int(round((r["y"] + r["height"]) / d)))
        color[y0:y1, x0:x1] = colors[r["class"]]
        alpha[y0:y1, x0:x1] = 0.25 + 0.5 * float(r[f"prob_{r['class']}"])
    blended = (base * (1 - alpha) + color * alpha).round().astype(np.uint8)
    font, pad, line = _font(14), 10, 22
    legend_w = 200
    top = line + pad if title else pad
    canvas = Image.new("RGB", (blended.shape[1] + legend_w + 2 * pad, blended.shape[0] + top + pad), "white")
    canvas.paste(Image.fromarray(blended), (pad, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad // 2), title, fill=(0, 0, 0), font=font)
    counts = {c: sum(r["class"] == c for r in rows) for c in class_names}
    x = blended.shape[1] + 2 * pad
    for i, c in enumerate(class_names):
        y = top + i * line
        draw.rectangle([x, y + 3, x + 14, y + 17], fill=tuple(colors[c]))
        draw.text((x + 20, y + 2), f"{c} ({counts[c]} tiles)", fill=(0, 0, 0), font=font)
    draw.text((x, top + len(class_names) * line + 6), "opacity: probability", fill=(90, 90, 90), font=font)
    return canvas


def write_heatmap(path: str | Path, thumbnail: np.ndarray, downsample: float, rows: Sequence[dict],
                  class_names: Sequence[str], title: str = "") -> Path:
    """Writes :func:`heatmap_image` as a PNG."""
    image = heatmap_image(thumbnail, downsample, rows, class_names, title)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)
    return Path(path)


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


__all__ = ["DEFAULT_COLORS", "SLIDES_COLUMNS", "class_colors", "geojson", "heatmap_image", "tile_columns",
           "tile_rows", "write_csv", "write_geojson", "write_heatmap", "write_slides_csv", "write_summary",
           "write_tissue_png"]
