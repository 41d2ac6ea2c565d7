"""Whole-slide reading: both backends on real TIFF pyramids made by the generator, white outside the
slide, level choice with inexact downsamples, tissue detection against the ground truth, and patches
streamed in regions equal to patches read one by one."""

import numpy as np
import pytest

from ird_tf.data.slides import (
    choose_level,
    detect_tissue,
    iter_regions,
    open_slide,
    otsu,
    reduce,
    tile_grid,
)
from ird_tf.data.synthetic.slide import SlideSpec, cell_labels, write_slide
from ird_tf.errors import ConfigError, DataError

SPEC = SlideSpec(width=1100, height=1000, seed=5, compression="deflate", variants=1)
BACKENDS = ("openslide", "tiffslide")


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("slides") / "s.tiff"
    write_slide(path, SPEC)
    return path


def test_backends_agree_and_paint_white_outside(slide_path, tmp_path):
    exact = tmp_path / "exact.tiff"
    write_slide(exact, SlideSpec(width=1024, height=768, seed=5, compression="deflate", variants=1))
    reads, inexact = {}, {}
    for backend in BACKENDS:
        with open_slide(exact, backend) as s:
            reads[backend] = [s.read(0, 900, 700, 200, 200), s.read(2, -10, -10, 40, 40),
                              s.read(3, 130, 50, 10, 10), s.read(3, 37, 21, 50, 40)]
        with open_slide(slide_path, backend) as s:
            # 1100 x 1000 halves to 550 x 500 ... 34 x 31: downsamples are inexact
            assert s.levels[3].downsample == pytest.approx(8.0146, abs=1e-4)
            assert s.levels[5].downsample == pytest.approx(32.26, abs=0.1)
            inexact[backend] = s.read(3, 37, 21, 50, 40).astype(float)
    for a, b in zip(*reads.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    # OpenSlide paints a fractional offset (< 1/8 px here) by interpolation; TiffSlide does not
    assert np.abs(inexact["openslide"] - inexact["tiffslide"]).mean() < 4
    corner, left_top, beyond, inside = reads["openslide"]
    assert (corner[68:, :] == 255).all() and (corner[:, 124:] == 255).all()  # past the bottom/right edge
    assert (corner[:68, :124] < 255).any()
    assert (left_top[:10] == 255).all() and (left_top[:, :10] == 255).all()
    assert (beyond == 255).all() and (inside < 255).any()


def test_unreadable_and_missing_slides_are_data_errors(tmp_path):
    bad = tmp_path / "bad.tiff"
    bad.write_bytes(b"not a tiff at all")
    for backend in BACKENDS:
        with pytest.raises(DataError, match=r"bad\.tiff"):
            open_slide(bad, backend)
    with pytest.raises(DataError, match="does not exist"):
        open_slide(tmp_path / "none.tiff")
    with pytest.raises(ConfigError, match="backend='bioformats'"):
        open_slide(bad, "bioformats")


def test_level_choice_with_inexact_downsamples():
    ds = (1.0, 4.0011, 16.0045, 64.02)
    mpp0 = 0.2527
    plan = choose_level(ds, mpp0, 1.0)  # level 1 is 1.011 µm/px: within 5 %, read as is
    assert (plan.level, plan.scale, plan.whole) == (1, 1.0, 1)
    plan = choose_level(ds, mpp0, 2.0)  # no level at 2: level 1 reduced by 2 (1.978)
    assert plan.level == 1 and plan.scale == pytest.approx(1.978, abs=1e-3) and plan.whole == 2
    assert plan.read_side(16) == 32
    assert choose_level(ds, mpp0, 0.25).level == 0  # 0.2527 is within 5 % of 0.25
    plan = choose_level(ds, mpp0, 16.0)
    assert plan.level == 3 and plan.scale == 1.0  # 16.18 µm/px: 1.1 % off
    plan = choose_level(ds, mpp0, 3.0)  # ratio 2.97 from level 1, not whole within 5 %? it is: |2.97-3|
    assert plan.level == 1 and plan.whole == 3
    plan = choose_level(ds, mpp0, 1.6)  # ratio 1.58: not whole, area resize
    assert plan.level == 1 and plan.whole is None and plan.read_side(16) == 25
    # never level 0 when a coarser level is fine enough
    assert choose_level((1, 2, 4), 0.25, 1.0).level == 2
    assert choose_level((1, 2, 4), 0.25, 0.99).level == 2  # 1 % coarser than asked: tolerated
    assert choose_level((1, 2, 4), 0.25, 0.9).level == 1
    with pytest.raises(DataError, match="too low a magnification"):
        choose_level(ds, mpp0, 0.2)


def test_reduce_is_the_training_view_block_mean():
    import tensorflow as tf

    from ird_tf.data.view import InputView

    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    plan = choose_level((1, 2), 1.0, 4.0)  # level 1, scale 2
    got = reduce(pixels, plan, 16)
    want = InputView("lr", 32, 2, "native").from_high(tf.constant(pixels / np.float32(255)))
    np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


def test_tissue_detection_matches_the_truth(slide_path):
    labels = cell_labels(SPEC)
    for backend in BACKENDS:
        with open_slide(slide_path, backend) as s:
            tissue = detect_tissue(s, s.mpp)
        cells = np.array([[tissue.fraction(c * 128, r * 128, 128, 128) for c in range(labels.shape[1])]
                          for r in range(labels.shape[0])])
        agree = ((cells > 0.5) == (labels >= 0)).mean()
        assert agree > 0.95, agree
        assert 0.05 <= tissue.threshold < 0.5


def test_tissue_opening_is_scipys_binary_opening():
    from scipy import ndimage

    from ird_tf.data.slides.tissue import open_cross

    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 7), (2, 5), (3, 3), (40, 1), (37, 52), (128, 96)]:
        for density in (0.1, 0.5, 0.9):
            mask = rng.random((h, w)) < density
            np.testing.assert_array_equal(open_cross(mask), ndimage.binary_opening(mask))


def test_otsu_splits_two_modes():
    v = np.concatenate([np.full(100, 0.02), np.full(100, 0.4)])
    assert 0.02 < otsu(v) <= 0.4


def test_grid_and_streamed_patches_equal_single_reads(slide_path):
    tiles = tile_grid(1100, 1000, 128, overlap=0.5)
    assert len(tiles) == 16 * 14 and tiles[1].x == 64
    assert len(tile_grid(1100, 1000, 128)) == 8 * 7
    with pytest.raises(ConfigError, match="overlap"):
        tile_grid(1100, 1000, 128, overlap=1.0)
    with open_slide(slide_path, "tiffslide") as s:
        tissue = detect_tissue(s, s.mpp)
        kept = tile_grid(1100, 1000, 128, 0.5, tissue, min_tissue=0.5)
        assert 0 < len(kept) < len(tiles) and all(t.tissue >= 0.5 for t in kept)
        plan = choose_level([lv.downsample for lv in s.levels], s.mpp, 8.0)  # 1.25x: level 3
        assert plan.level == 3
        small = list(iter_regions(s, kept, plan, 16, region_px=40))  # 2 tiles per region side
        large = list(iter_regions(s, kept, plan, 16))
        assert len(small) > len(large) == 1
        got = {}
        for idx, pixels in small:
            got.update(zip(idx, pixels, strict=True))
        assert sorted(got) == list(range(len(kept)))
        ds = s.levels[3].downsample  # 1100 / 137: the level-0 corner maps to round(x / ds)
        for i, t in enumerate(kept):
            np.testing.assert_array_equal(got[i], s.read(3, round(t.x / ds), round(t.y / ds), 16, 16))
        np.testing.assert_array_equal(np.concatenate([p for _, p in large]),
                                      np.stack([got[i] for i in large[0][0]]))


def test_vectorised_tissue_fractions_equal_the_single_ones(slide_path):
    with open_slide(slide_path, "tiffslide") as s:
        tissue = detect_tissue(s, s.mpp)
    xs = np.array([0, 5, 130, 1000, 1090, 37])
    ys = np.array([0, 999, 64, 900, 10, 511])
    want = [tissue.fraction(x, y, 128, 128) for x, y in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(tissue.fractions(xs, ys, 128), want)
    assert max(want) > 0 and max(want) <= 1


def test_rgba_to_rgb_opaque_shortcut_and_compositing():
    from ird_tf.data.slides.backends import _to_rgb

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (7, 9, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    np.testing.assert_array_equal(_to_rgb(rgba), rgba[..., :3])  # opaque: the pixels as they are
    rgba[0, 0, 3], rgba[1, 1, 3] = 0, 128  # transparent and half: composited on white
    out = _to_rgb(rgba)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    want = (rgba[1, 1, :3].astype(np.uint16) * 128 + 255 * 127 + 127) // 255
    np.testing.assert_array_equal(out[1, 1], want)
    np.testing.assert_array_equal(out[2:], rgba[2:, :, :3])
