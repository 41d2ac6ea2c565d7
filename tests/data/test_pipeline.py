"""Multi-resolution pipeline on small image files written by the tests."""

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from ird_tf.config import AugmentConfig, ConfigError
from ird_tf.data import DataError
from ird_tf.data.pipeline import check_images, make_dataset, steps_per_epoch

NO_AUG = AugmentConfig(enabled=False)


def _write(folder, name, array):
    path = folder / name
    Image.fromarray(array).save(path)
    return str(path)


def _noise(size, seed):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _table(paths, labels=None):
    return pd.DataFrame(
        {"path": paths, "label": labels if labels is not None else [i % 2 for i in range(len(paths))]}
    )


@pytest.fixture(scope="module")
def rgb32(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb32")
    return _table([_write(folder, f"{i}.png", _noise(32, i)) for i in range(6)])


def _block_mean(x, f):
    b, h, w, c = x.shape
    return x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))


def _bilinear_up(x, f):
    """Half-pixel-centre bilinear upsampling with clamped edges (PyTorch align_corners=False)."""
    n = x.shape[1]
    src = np.clip((np.arange(n * f) + 0.5) / f - 0.5, 0, n - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (src - i0)[None, :, None, None]
    x = x[:, i0] * (1 - w) + x[:, i1] * w
    w = w.transpose(0, 2, 1, 3)
    return x[:, :, i0] * (1 - w) + x[:, :, i1] * w


@pytest.mark.parametrize("factor", [1, 2, 4, 8, 16])
def test_views_shapes_ranges_and_area_downsampling(rgb32, factor):
    for training, aug in ((False, NO_AUG), (True, AugmentConfig())):
        native, up = (
            next(
                iter(
                    make_dataset(
                        rgb32,
                        image_size=32,
                        factor=factor,
                        mode=mode,
                        batch_size=4,
                        training=training,
                        augment=aug,
                        seed=1,
                    )
                )
            )
            for mode in ("native", "upsampled")
        )
        for (views, y), side in ((native, 32 // factor), (up, 32)):
            assert views["hr"].shape == (4, 32, 32, 3) and views["lr"].shape == (4, side, side, 3)
            assert views["hr"].dtype == "float32" and views["lr"].dtype == "float32" and y.dtype == "int32"
            for v in views.values():
                assert v.numpy().min() >= 0.0 and v.numpy().max() <= 1.0
        hr = native[0]["hr"].numpy()
        # lr is the block mean of the very hr it is yielded with (augmented or not).
        np.testing.assert_allclose(native[0]["lr"].numpy(), _block_mean(hr, factor), atol=1e-5)
        np.testing.assert_allclose(up[0]["hr"].numpy(), hr, atol=0)  # same seed → same augmented image
        np.testing.assert_allclose(
            up[0]["lr"].numpy(), _bilinear_up(_block_mean(hr, factor), factor), atol=1e-5
        )
        if factor == 1:
            np.testing.assert_array_equal(native[0]["lr"].numpy(), hr)
        if not training:
            files = np.stack([np.asarray(Image.open(p)) for p in rgb32["path"][:4]]) / 255.0
            np.testing.assert_allclose(hr, files, atol=1e-6)


def test_eval_is_one_pass_in_file_order(tmp_path):
    values = [10, 200, 30, 140, 50, 0, 255]
    paths = [_write(tmp_path, f"{i}.png", np.full((8, 8, 3), v, np.uint8)) for i, v in enumerate(values)]
    table = _table(paths, labels=[0, 1, 2, 0, 1, 2, 0])
    batches = list(make_dataset(table, image_size=8, factor=2, batch_size=3, training=False, num_classes=3))
    assert [b[1].shape[0] for b in batches] == [3, 3, 1]
    seen = np.concatenate([b[0]["hr"].numpy()[:, 0, 0, 0] for b in batches])
    np.testing.assert_allclose(seen * 255.0, values, atol=1e-4)
    assert np.concatenate([b[1].numpy() for b in batches]).tolist() == [0, 1, 2, 0, 1, 2, 0]
    dropped = list(
        make_dataset(table, image_size=8, factor=2, batch_size=3, training=False, drop_remainder=True)
    )
    assert len(dropped) == 2


def test_grey_rgba_palette_and_tiff_become_rgb(tmp_path):
    rgb = _noise(16, 1)
    grey = rgb[..., 0]
    rgba = np.dstack([rgb, np.full((16, 16), 90, np.uint8)])
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "pal.png")
    paths = [
        _write(tmp_path, "grey.png", grey),
        _write(tmp_path, "rgba.png", rgba),
        str(tmp_path / "pal.png"),
        _write(tmp_path, "rgb.tif", rgb),
        _write(tmp_path, "grey.tiff", grey),
        _write(tmp_path, "rgba.tif", rgba),
    ]
    expected = [np.dstack([grey] * 3), rgb, np.asarray(pal.convert("RGB")), rgb, np.dstack([grey] * 3), rgb]
    checks = check_images(paths)
    assert [c.format for c in checks] == ["PNG", "PNG", "PNG", "TIFF", "TIFF", "TIFF"]
    ds = make_dataset(_table(paths), image_size=16, factor=1, batch_size=6, training=False)
    hr = next(iter(ds))[0]["hr"].numpy()
    np.testing.assert_allclose(hr * 255.0, np.stack(expected).astype(np.float32), atol=1e-3)


def test_other_sizes_are_area_resized(tmp_path, caplog):
    big = _noise(64, 2)
    paths = [_write(tmp_path, "big.png", big), _write(tmp_path, "ok.png", _noise(32, 3))]
    with caplog.at_level(logging.WARNING, logger="ird_tf.data"):
        ds = make_dataset(_table(paths), image_size=32, factor=4, batch_size=2, training=False)
    assert "1 of 2 image(s) are not 32x32" in caplog.text
    hr = next(iter(ds))[0]["hr"].numpy()
    mean = _block_mean(big[None].astype(np.float64), 2)[0]
    np.testing.assert_allclose(hr[0] * 255.0, mean, atol=0.5 + 1e-3)


def test_two_channel_and_16_bit_png_are_errors_naming_the_file(tmp_path, rgb32):
    la = str(tmp_path / "grey_alpha.png")
    Image.fromarray(_noise(32, 4)[..., 0]).convert("LA").save(la)
    deep = str(tmp_path / "deep16.png")
    Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)).save(deep)
    for bad, why in ((la, "2 channels"), (deep, "16-bit")):
        table = _table([*rgb32["path"], bad])
        with pytest.raises(DataError, match=why) as err:
            make_dataset(table, image_size=32, factor=2, batch_size=2, training=False)
        assert bad in str(err.value) and "1 of 7" in str(err.value)


def test_corrupt_jpegs_raise_or_are_skipped_with_a_count(tmp_path, rgb32, caplog):
    good = _write(tmp_path, "good.jpg", _noise(32, 5))
    raw = Path(good).read_bytes()
    truncated, garbage = tmp_path / "truncated.jpg", tmp_path / "garbage.jpg"
    truncated.write_bytes(raw[: len(raw) // 2])
    garbage.write_bytes(b"this is not an image at all" * 20)
    paths = [*rgb32["path"], str(truncated), good, str(garbage)]
    with pytest.raises(DataError) as err:
        make_dataset(_table(paths), image_size=32, factor=2, batch_size=4, training=True)
    msg = str(err.value)
    assert "2 of 9" in msg and str(truncated) in msg and str(garbage) in msg and good not in msg
    with caplog.at_level(logging.WARNING, logger="ird_tf.data"):
        ds = make_dataset(
            _table(paths), image_size=32, factor=2, batch_size=4, training=False, skip_corrupt=True
        )
    assert "skipped 2 of 9" in caplog.text
    assert sum(int(b[1].shape[0]) for b in ds) == 7
    # Training over the remaining files runs past an epoch without a decoding error.
    train = make_dataset(
        _table(paths), image_size=32, factor=2, batch_size=4, training=True, skip_corrupt=True
    )
    assert len(list(train.take(5))) == 5
    # nothing left to train on: the error names the unreadable files even when skipping them
    with pytest.raises(DataError, match=r"none of the 2 image file\(s\) can be used; all are unreadable: "
                                        rf"{truncated}, {garbage}"):
        make_dataset(_table([str(truncated), str(garbage)]), image_size=32, factor=2, batch_size=2,
                     training=False, skip_corrupt=True)


def test_missing_files_are_named(rgb32):
    paths = [*rgb32["path"], "/nonexistent/a.png", "/nonexistent/b.png"]
    with pytest.raises(DataError, match=r"2 of 8 .*/nonexistent/a.png, /nonexistent/b.png"):
        make_dataset(_table(paths), image_size=32, factor=2, batch_size=2, training=False)


def test_class_balanced_sampling(tmp_path):
    paths = [_write(tmp_path, f"{i}.png", _noise(8, i)) for i in range(20)]
    table = _table(paths, labels=[0] * 18 + [1] * 2)
    for balanced, low, high in ((True, 0.4, 0.6), (False, 0.02, 0.2)):
        ds = make_dataset(
            table,
            image_size=8,
            factor=1,
            batch_size=50,
            training=True,
            augment=NO_AUG,
            class_balanced=balanced,
            seed=3,
        )
        labels = np.concatenate([y.numpy() for _, y in ds.take(8)])
        assert len(labels) == 400 and low <= labels.mean() <= high, (balanced, labels.mean())


def test_seeded_runs_are_reproducible_and_cache_does_not_change_them(rgb32):
    def first(seed, cache):
        ds = make_dataset(
            rgb32,
            image_size=32,
            factor=4,
            batch_size=4,
            training=True,
            seed=seed,
            cache=cache,
            class_balanced=True,
            num_classes=2,
        )
        return [(x["hr"].numpy(), x["lr"].numpy(), y.numpy()) for x, y in ds.take(2)]

    a, b, c = first(5, True), first(5, False), first(6, True)
    for (hr_a, lr_a, y_a), (hr_b, lr_b, y_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(hr_a, hr_b)
        np.testing.assert_array_equal(lr_a, lr_b)
        np.testing.assert_array_equal(y_a, y_b)
    assert np.abs(a[0][0] - c[0][0]).mean() > 0.01


def test_training_repeats_with_a_fixed_batch(rgb32):
    ds = make_dataset(rgb32, image_size=32, factor=2, batch_size=4, training=True, augment=NO_AUG)
    assert ds.element_spec[0]["hr"].shape.as_list() == [4, 32, 32, 3]
    steps = steps_per_epoch(len(rgb32), 4)
    assert steps == 2
    assert len(list(ds.take(3 * steps))) == 3 * steps


@pytest.mark.parametrize("training", [True, False])
def test_no_autotuning_thread_whose_sleep_the_iterator_end_would_wait_for(rgb32, training):
    """tf.data's autotuning thread made destroying an iterator wait up to a minute (see
    ``pipeline._prefetched``): every pipeline switches it off, and still yields its batches."""
    ds = make_dataset(rgb32, image_size=32, factor=2, batch_size=4, training=training, augment=NO_AUG)
    assert ds.options().autotune.enabled is False
    assert len(list(ds.take(2))) == 2


@pytest.mark.parametrize("balanced", [False, True])
def test_a_stream_started_later_is_the_same_stream(rgb32, balanced):
    """``start_batch=k`` yields what the stream from 0 yields after k batches (shuffles, class draws and
    augmentation alike), so a run resumed after epoch e trains on the batches an uninterrupted one would."""
    from ird_tf.data.pipeline import training_dataset
    from ird_tf.data.view import InputView

    view = InputView("lr", 32, 2, "upsampled")

    def stream(start):
        ds = training_dataset(rgb32, view, batch_size=4, seed=5, class_balanced=balanced, num_classes=2,
                              start_batch=start)
        return [(b[0]["hr"].numpy(), b[1].numpy()) for b in ds.take(3)]

    whole = stream(0) + stream(3)
    later = stream(2)
    for (x, y), (x2, y2) in zip(whole[2:5], later, strict=True):
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(whole[0][0], whole[2][0])  # the batches differ: the test can tell them apart


def test_unlabeled_yields_views_only(rgb32):
    ds = make_dataset(
        rgb32[["path"]], image_size=32, factor=2, mode="native", batch_size=4, training=True, labeled=False
    )
    batch = next(iter(ds))
    assert set(batch) == {"hr", "lr"} and batch["lr"].shape == (4, 16, 16, 3)
    with pytest.raises(DataError, match="label"):
        make_dataset(rgb32[["path"]], image_size=32, factor=2, batch_size=3, training=False)


def test_memory_cache_holds_decoded_images_within_the_budget(tmp_path):
    paths = [_write(tmp_path, f"{i}.png", _noise(8, i)) for i in range(3)]

    def two_passes(cache_bytes):
        ds = make_dataset(
            _table(paths), image_size=8, factor=2, batch_size=3, training=False, cache_bytes=cache_bytes
        )
        first = next(iter(ds))[0]["hr"].numpy()
        for p in paths:  # a second pass can only succeed from the cache
            os.rename(p, p + ".moved")
        try:
            return first, next(iter(ds))[0]["hr"].numpy()
        finally:
            for p in paths:
                os.rename(p + ".moved", p)

    first, second = two_passes(3 * 8 * 8 * 3)
    np.testing.assert_array_equal(first, second)
    with pytest.raises(tf.errors.NotFoundError):
        two_passes(3 * 8 * 8 * 3 - 1)


def test_bad_settings_name_the_setting(rgb32):
    with pytest.raises(ConfigError, match="factor=3"):
        make_dataset(rgb32, image_size=32, factor=3, batch_size=2, training=False)
    with pytest.raises(ConfigError, match="mode='tiny'"):
        make_dataset(rgb32, image_size=32, factor=2, mode="tiny", batch_size=2, training=False)
    with pytest.raises(DataError, match="label"):
        make_dataset(
            rgb32.assign(label=5), image_size=32, factor=2, batch_size=2, training=False, num_classes=4
        )
    assert steps_per_epoch(33, 8) == 5 and steps_per_epoch(32, 8) == 4


def test_xla_compiled_augmentation_gives_the_same_images(rgb32):
    first = [
        next(iter(make_dataset(rgb32, image_size=32, factor=2, batch_size=4, training=True, seed=2, jit=jit)))
        for jit in (True, False)
    ]
    np.testing.assert_allclose(first[0][0]["hr"].numpy(), first[1][0]["hr"].numpy(), atol=1e-4)
    np.testing.assert_array_equal(first[0][1].numpy(), first[1][1].numpy())
