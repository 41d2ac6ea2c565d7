"""The synthetic whole slide: a pyramid both readers see in full, levels that are exact block means of
level 0, ground truth that matches the pixels, and the command line (old invocations unchanged)."""

import json
import time

import numpy as np
import pytest
from PIL import Image

from ird_tf.config import ConfigError
from ird_tf.data.synthetic import cli
from ird_tf.data.synthetic.slide import DOWNSAMPLES, SlideSpec, cell_labels, cell_patch, write_slide

SMALL = SlideSpec(width=1024, height=768, seed=3, compression="deflate", variants=1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "small.tiff"
    return path, write_slide(path, SMALL)


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_both_readers_see_the_pyramid_and_its_scale(small, backend):
    from ird_tf.data.slides import open_slide

    path, _ = small
    with open_slide(path, backend) as s:
        assert [lv.downsample for lv in s.levels] == [float(f) for f in DOWNSAMPLES]
        assert [(lv.width, lv.height) for lv in s.levels] == [(1024 // f, 768 // f) for f in DOWNSAMPLES]
        assert s.mpp == pytest.approx(1.0)


def test_levels_are_block_means_of_level_zero(small):
    from ird_tf.data.slides import open_slide

    path, _ = small
    with open_slide(path, "tiffslide") as s:
        level0 = s.read(0, 0, 0, 1024, 768).astype(np.float64)
        for level, f in ((1, 2), (3, 8), (5, 32)):
            want = level0.reshape(768 // f, f, 1024 // f, f, 3).mean(axis=(1, 3))
            got = s.read(level, 0, 0, 1024 // f, 768 // f).astype(np.float64)
            assert np.abs(got - want).max() <= 0.5 + 1e-9, level  # one rounding, lossless tiles


def test_cells_hold_the_rendered_patches_and_the_truth_matches(small):
    from ird_tf.data.slides import open_slide

    path, truth = small
    labels = cell_labels(SMALL)
    assert truth["labels"] == labels.tolist()
    mask = np.asarray(Image.open(path.with_name("small.mask.png")))
    assert mask.shape == labels.shape == (768 // 128, 1024 // 128)
    values = {-1: 255, 0: 0, 1: 3, 2: 4, 3: 5}
    assert (mask == np.vectorize(values.get)(labels)).all()
    counts = truth["counts"]
    assert sum(counts.values()) == truth["tissue_cells"] == (labels >= 0).sum() == round(0.5 * 48)
    assert counts["G3"] == int(0.25 * 24) and counts["G4"] == int(0.15 * 24)
    row, col = np.argwhere(labels == 2)[0]
    with open_slide(path, "openslide") as s:
        read = s.read(0, col * 128, row * 128, 128, 128)
        glass_row, glass_col = np.argwhere(labels < 0)[0]
        glass = s.read(0, glass_col * 128, glass_row * 128, 128, 128)
    np.testing.assert_array_equal(read, cell_patch(SMALL, row, col))
    # glass is grey (unstained), tissue is coloured
    sat = lambda a: ((a.max(2).astype(float) - a.min(2)) / np.maximum(a.max(2), 1)).mean()  # noqa: E731
    assert sat(glass) < 0.03 < 0.1 < sat(read)


def test_a_4096_slide_is_written_fast_and_read_by_both(tmp_path):
    from ird_tf.data.slides import open_slide

    start = time.perf_counter()
    truth = write_slide(tmp_path / "big.tiff", SlideSpec())
    seconds = time.perf_counter() - start
    print(f"4096 x 4096 synthetic slide written in {seconds:.2f} s")
    # well under a second when the machine is free (0.3 s measured); the bound only catches a
    # generator that renders every cell instead of its library (tens of seconds)
    assert seconds < 5.0
    assert truth["counts"]["G5"] > 0
    for backend in ("openslide", "tiffslide"):
        with open_slide(tmp_path / "big.tiff", backend) as s:
            assert len(s.levels) == 6 and s.dimensions == (4096, 4096)


def test_command_line_slide_and_the_old_invocation(tmp_path, capsys):
    out = tmp_path / "c.tiff"
    assert cli.main(["slide", "--out", str(out), "--width", "512", "--height", "512", "--seed", "1"]) == 0
    assert out.is_file() and json.loads(out.with_name("c.truth.json").read_text())["width"] == 512
    assert "synthetic: slide" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["slide", "--out", str(out), "--cell", "100"])
    assert e.value.code == 2 and "cell=100" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # no subcommand: the dataset command, as before
        cli.main([])
    assert e.value.code == 2 and "give --out DIR" in capsys.readouterr().err


def test_bad_specs_are_config_errors():
    for bad in (SlideSpec(grades=(0, 0, 0, 0)), SlideSpec(tissue=0), SlideSpec(width=64),
                SlideSpec(compression="lzw")):
        with pytest.raises(ConfigError):
            bad.check()
