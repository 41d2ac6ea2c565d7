"""Slide outputs: the per-tile CSV columns, the GeoJSON in the form QuPath imports (detections with a
classification and a name -> number measurement map, level-0 pixel polygons), the heatmap and tissue
PNGs and slides.csv."""

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ird_tf.evaluation.slide_report import (
    geojson,
    tile_columns,
    tile_rows,
    write_csv,
    write_geojson,
    write_heatmap,
    write_slides_csv,
    write_summary,
    write_tissue_png,
)
from ird_tf.files import stray_temporaries

NAMES = ("NC", "G3", "G4", "G5")
TILES = [SimpleNamespace(x=0, y=0, size=128, tissue=1.0),
         SimpleNamespace(x=128, y=0, size=128, tissue=0.61234567)]
PROBS = np.array([[0.7, 0.1, 0.1, 0.1], [0.05, 0.15, 0.2, 0.6]])


def test_rows_and_csv(tmp_path):
    rows = tile_rows(TILES, PROBS, NAMES, mpp=8.0, level=3, teacher=PROBS[::-1])
    write_csv(tmp_path / "tiles.csv", rows)
    with open(tmp_path / "tiles.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["x", "y", "width", "height", "mpp", "level", "tissue", "prob_NC", "prob_G3",
                              "prob_G4", "prob_G5", "class", "teacher_prob_NC", "teacher_prob_G3",
                              "teacher_prob_G4", "teacher_prob_G5", "teacher_class"]
    assert [r["class"] for r in table] == ["NC", "G5"] and [r["teacher_class"] for r in table] == ["G5", "NC"]
    assert table[1]["x"] == "128" and table[1]["width"] == "128" and table[1]["mpp"] == "8.0"
    assert table[1]["tissue"] == "0.612346"  # 6 significant digits, not 17
    assert list(table[0]) == tile_columns(NAMES, teacher=True)
    write_csv(tmp_path / "empty.csv", [], tile_columns(NAMES))  # a slide without tissue: the header alone
    assert (tmp_path / "empty.csv").read_text().splitlines() == [",".join(tile_columns(NAMES))]


def test_geojson_is_qupath_detections(tmp_path):
    rows = tile_rows(TILES, PROBS, NAMES, mpp=8.0, level=3)
    write_geojson(tmp_path / "t.geojson", rows, NAMES)
    fc = json.loads((tmp_path / "t.geojson").read_text())
    assert fc == geojson(rows, NAMES)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    f = fc["features"][1]
    assert f["type"] == "Feature"
    assert f["geometry"] == {"type": "Polygon",
                             "coordinates": [[[128, 0], [256, 0], [256, 128], [128, 128], [128, 0]]]}
    p = f["properties"]
    assert p["objectType"] == "detection"
    assert p["classification"] == {"name": "G5", "color": [215, 25, 28]}
    assert isinstance(p["measurements"], dict)
    assert p["measurements"]["prob_G5"] == 0.6 and p["measurements"]["tissue"] == 0.612346
    assert all(isinstance(v, (int, float)) for v in p["measurements"].values())


def test_pngs_summary_and_slides_csv(tmp_path):
    thumb = np.full((40, 60, 3), 240, np.uint8)
    rows = tile_rows(TILES, PROBS, NAMES, mpp=8.0, level=3)
    write_heatmap(tmp_path / "a" / "heatmap.png", thumb, 8.0, rows, NAMES, title="a: 5+5=10")
    assert Image.open(tmp_path / "a" / "heatmap.png").size[0] > 100
    write_tissue_png(tmp_path / "a" / "tissue.png", thumb[..., 0] > 100)
    assert np.asarray(Image.open(tmp_path / "a" / "tissue.png")).max() == 255
    write_summary(tmp_path / "a" / "summary.json", {
        "slide": "a.tiff", "tiles": 2, "level": 3, "mpp_read": 8.0, "seconds": 1.5,
        "grading": {"primary": 5, "secondary": 5, "score": 10, "grade_group": 5, "label": "5+5=10"}})
    write_slides_csv(tmp_path, failures={"b.tiff": "slide b.tiff cannot be opened"})
    with open(tmp_path / "slides.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["slide"], r["status"], r["grading"], r["grade_group"]) for r in table] == [
        ("a.tiff", "done", "5+5=10", "5"), ("b.tiff", "failed", "", "")]
    assert "cannot be opened" in table[1]["error"]
    assert not stray_temporaries(tmp_path)


def test_tile_table_writes_the_bytes_of_the_rows(tmp_path):
    """The columnar writer (used by the slide task) gives byte for byte what the rows give, numbers
    included (six significant digits, 1.0 / 0.0 / 1e-07 as repr spells them), with and without a
    Teacher, and class names the CSV has to quote."""
    from ird_tf.evaluation.slide_report import TileTable, heatmap_image

    rng = np.random.default_rng(0)
    names = ("NC", "G,3", 'G"4', "G5")
    n = 50
    corners = zip(rng.integers(0, 4000, n), rng.integers(0, 4000, n), rng.random(n), strict=True)
    tiles = [SimpleNamespace(x=int(x), y=int(y), size=128, tissue=round(float(t), 4)) for x, y, t in corners]
    probs = rng.dirichlet(np.ones(4), n).astype(np.float32)
    probs[0] = [1.0, 0.0, 0.0, 0.0]
    probs[1] = [1e-7, 0.5, 0.25, 0.25 - 1e-7]
    teacher = rng.dirichlet(np.ones(4), n)
    for t in (None, teacher):
        rows = tile_rows(tiles, probs, names, mpp=8.0, level=3, teacher=t)
        table = TileTable(tiles, probs, names, mpp=8.0, level=3, teacher=t)
        write_csv(tmp_path / "rows.csv", rows, tile_columns(names, t is not None))
        table.write_csv(tmp_path / "table.csv")
        assert (tmp_path / "rows.csv").read_bytes() == (tmp_path / "table.csv").read_bytes()
        write_geojson(tmp_path / "rows.geojson", rows, names)
        table.write_geojson(tmp_path / "table.geojson")
        assert (tmp_path / "rows.geojson").read_bytes() == (tmp_path / "table.geojson").read_bytes()
        assert table.counts() == {c: sum(r["class"] == c for r in rows) for c in names}
        assert table.rows() == rows
    thumb = rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)
    a = np.asarray(heatmap_image(thumb, 16.0, rows, names, "t"))
    b = np.asarray(heatmap_image(thumb, 16.0, table, names, "t"))
    np.testing.assert_array_equal(a, b)
    # an empty slide: the header alone, an empty collection
    empty = TileTable([], np.zeros((0, 4)), names, mpp=8.0, level=3)
    empty.write_csv(tmp_path / "e.csv")
    write_csv(tmp_path / "e_rows.csv", [], tile_columns(names))
    assert (tmp_path / "e.csv").read_bytes() == (tmp_path / "e_rows.csv").read_bytes()
    empty.write_geojson(tmp_path / "e.geojson")
    assert json.loads((tmp_path / "e.geojson").read_text()) == geojson([], names)


def test_heatmap_blends_each_pixel_with_the_last_tile_painted_over_it(tmp_path):
    """Each thumbnail pixel under a tile is thumbnail x (1 - a) + colour x a in float32, rounded,
    a = 0.25 + 0.5 x the probability of the tile's class; where tiles overlap the later one shows;
    pixels under no tile keep the thumbnail; the PNG reads back the same pixels."""
    from ird_tf.evaluation.slide_report import class_colors, heatmap_image

    names = ("NC", "G3", "G4", "G5")
    rng = np.random.default_rng(1)
    thumb = rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)  # no zoom: thumbnail px = image px
    tiles = [SimpleNamespace(x=v, y=v, size=128, tissue=1.0) for v in (0, 64)]
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.05, 0.05, 0.1, 0.8]], np.float32)
    rows = tile_rows(tiles, probs, names, mpp=8.0, level=3)
    image = heatmap_image(thumb, 16.0, rows, names)  # tiles of 8 thumbnail px, the second from (4, 4)
    pad = 10
    got = np.asarray(image)[pad:pad + 600, pad:pad + 600]
    colors = class_colors(names)

    def blend(pixel, cls, prob):
        a = np.float32(0.25 + 0.5 * prob)
        return np.rint(pixel.astype(np.float32) * (1 - a) + np.array(colors[cls], np.float32) * a)

    np.testing.assert_array_equal(got[1, 1], blend(thumb[1, 1], "G3", 0.7))
    np.testing.assert_array_equal(got[5, 5], blend(thumb[5, 5], "G5", 0.8))  # under both: the second
    np.testing.assert_array_equal(got[11, 11], blend(thumb[11, 11], "G5", 0.8))
    np.testing.assert_array_equal(got[13:, 13:], thumb[13:, 13:])
    write_heatmap(tmp_path / "h.png", thumb, 16.0, rows, names)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "h.png")), np.asarray(image))


def test_number_texts_are_those_of_repr():
    """The tile table's texts of numbers (from one ``%.6g`` call) are ``repr`` of the rounded number,
    over magnitudes from subnormal to huge, whole numbers, signed zeros and non-finite values."""
    from ird_tf.evaluation.slide_report import _num, _rounded

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.random(2000), rng.random(500) * 1e-6, 10.0 ** rng.uniform(-320, 300, 3000),
                             -rng.random(200), [0.0, -0.0, 1.0, 1e-7, 1e-4, 9.999995e-5, 999999.4, 999999.6,
                                                1e6, 123456789.0, 1e16, 1e20, 5e-324, 2.2250738585072014e-308,
                                                np.nan, np.inf, -np.inf]])
    nums, texts = _rounded(values)
    want = [_num(v) for v in values.tolist()]
    assert [repr(v) for v in nums] == [repr(v) for v in want]
    assert texts == [repr(v) for v in want]


def test_png_bytes_read_back_as_the_pixels():
    import io

    from ird_tf.evaluation.slide_report import png_bytes

    rng = np.random.default_rng(4)
    for shape in [(1, 1), (1, 9), (7, 1), (33, 50), (5, 4, 3), (64, 3, 3), (1, 12, 3)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        image = Image.open(io.BytesIO(png_bytes(pixels)))
        assert image.mode == ("L" if len(shape) == 2 else "RGB")
        np.testing.assert_array_equal(np.asarray(image), pixels)
    with pytest.raises(ValueError, match="uint8 pixels"):
        png_bytes(np.zeros((4, 4, 4), np.uint8))
