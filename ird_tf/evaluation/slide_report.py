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


def write_heatmap(path: str | Path, thumbnail: np.ndarray, downsample: float, rows: Sequence[dict],
                  class_names: Sequence[str], title: str = "") -> Path:
    """The predicted class of each tile over the thumbnail (opacity grows with the probability), with a
    legend of classes and tile counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colors = class_colors(class_names)
    h, w = thumbnail.shape[:2]
    overlay = np.zeros((h, w, 4), np.float32)
    for r in rows:
        x0, y0 = int(r["x"] / downsample), int(r["y"] / downsample)
        x1 = max(x0 + 1, int(round((r["x"] + r["width"]) / downsample)))
        y1 = max(y0 + 1, int(round((r["y"] + r["height"]) / downsample)))
        p = r[f"prob_{r['class']}"]
        overlay[y0:y1, x0:x1] = (*[c / 255 for c in colors[r["class"]]], 0.25 + 0.5 * p)
    counts = {c: sum(r["class"] == c for r in rows) for c in class_names}
    aspect = w / max(h, 1)
    fig = Figure(figsize=(min(12, 2 + 5 * aspect), 5.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(thumbnail)
    ax.imshow(overlay)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    handles = [Patch(color=np.array(colors[c]) / 255, label=f"{c} ({counts[c]} tiles)") for c in class_names]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
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


__all__ = ["DEFAULT_COLORS", "SLIDES_COLUMNS", "class_colors", "geojson", "tile_rows", "write_csv",
           "write_geojson", "write_heatmap", "write_slides_csv", "write_summary", "write_tissue_png"]
