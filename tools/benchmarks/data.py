"""tf.data pipeline throughput: images/s at 512 and 128 px, training and evaluation, cached and not.

Training = augmentation on, factor 4, "upsampled", class-balanced; evaluation = one pass, no
augmentation. The files are JPEGs of smooth random texture written to a temp dir (so their size and
decode cost are closer to tissue patches than white noise). Uncached figures include JPEG decoding;
cached ones start after a pass that filled the cache. Also reports the preflight file check, and the
synthetic generator's patches/s on one core (render + JPEG/PNG encode, at 256 and 128 px; target: at
least 25 patches/s at 256 px). And the augmentation's warp with and without XLA (``warp_xla``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from PIL import Image

from ird_tf.config import AugmentConfig, SyntheticConfig
from ird_tf.data import augment
from ird_tf.data.augment import geometric
from ird_tf.data.pipeline import check_images, make_dataset, steps_per_epoch
from ird_tf.data.synthetic import JPEG_QUALITY, random_style, render_patch

SIZES = (512, 128)
FACTOR = 4


def _write_images(folder: Path, size: int, count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"{size}_{i:04d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        paths.append(str(path))
    return pd.DataFrame({"path": paths, "label": [i % 4 for i in range(count)]})


def _images_per_s(ds, batches: int) -> float:
    """Throughput after the first batch (iterator start-up is not part of the steady state)."""
    it = iter(ds)
    next(it)
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            x = next(it)
        except StopIteration:
            break
        n += int((x[0] if isinstance(x, tuple) else x)["hr"].shape[0])
    return n / (time.perf_counter() - start)


def synthetic_patches_per_s(size: int, count: int) -> float:
    """Benchmark-v1 patches of ``size`` px rendered and encoded in this process (one core), classes in
    turn, a new slide style every 8 patches (as slides are generated)."""
    cfg = SyntheticConfig(patch_size=size)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="ird_bench_synth_") as tmp:
        start = time.perf_counter()
        style = random_style(rng)
        for i in range(count):
            if i % 8 == 0:
                style = random_style(rng)
            image, mask = render_patch(rng, i % 4, cfg, style=style)
            Image.fromarray(image).save(Path(tmp) / f"{i}.jpg", quality=JPEG_QUALITY)
            Image.fromarray(mask).save(Path(tmp) / f"{i}.png", compress_level=1)
        return count / (time.perf_counter() - start)


def warp_xla(*, sizes=SIZES, batch: int = 16, rounds: int = 5, repeats: int = 3) -> dict:
    """The augmentation's warp (``augment.geometric``: flip, rotations, scale, shift as one bilinear
    warp written as gathers) on a batch of uint8 images, compiled with and without XLA, and TensorFlow's
    own ``ImageProjectiveTransformV3`` kernel doing the same warp; images/s, interleaved rounds, and the
    median within-round ratios."""
    import tensorflow as tf

    from benchmarks.common import interleaved_rounds, median_ratio

    cfg = AugmentConfig()
    out: dict = {"batch": batch, "rounds": rounds, "repeats_per_round": repeats}
    for size in sizes:
        rng = np.random.default_rng(0)
        images = tf.constant(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
        uniforms = tf.constant(rng.random((batch, augment.N_UNIFORMS), dtype=np.float32))

        def gathers(img, u):
            return geometric(tf.cast(img, tf.float32) / 255.0, u, cfg)

        def kernel(img, u):
            def projective(x, t):
                return tf.raw_ops.ImageProjectiveTransformV3(
                    images=x, transforms=t, output_shape=tf.shape(x)[1:3], fill_value=0.0,
                    interpolation="BILINEAR", fill_mode="REFLECT")

            with mock.patch.object(augment, "warp", projective):  # only while tracing
                return geometric(tf.cast(img, tf.float32) / 255.0, u, cfg)

        fns = {"xla": tf.function(gathers, jit_compile=True), "no_xla": tf.function(gathers),
               "transform_kernel": tf.function(kernel)}
        steps = {k: (lambda f=f, x=images, u=uniforms: f(x, u).numpy()) for k, f in fns.items()}
        for fn in steps.values():
            fn()
            fn()
        per_round = interleaved_rounds(steps, rounds=rounds, repeats=repeats)
        rates = {k: float(np.median([batch / r[k] for r in per_round])) for k in steps}
        res = out[str(size)] = {f"{k}_images_per_s": round(v, 1) for k, v in rates.items()}
        res["xla_speedup"] = round(median_ratio(per_round, "no_xla", "xla"), 2)
        res["xla_over_transform_kernel"] = round(median_ratio(per_round, "transform_kernel", "xla"), 2)
        print(f"  warp {size}px batch {batch}: {res}", flush=True)
    return out


def run(args) -> dict:
    count = 48 if getattr(args, "quick", False) else 320
    synth = {f"synthetic_{size}px_patches_per_s_one_core": round(synthetic_patches_per_s(size, count // 4), 1)
             for size in (256, 128)}
    print(f"  synthetic generator: {synth}", flush=True)
    batch = 16
    results: dict = {"images": count, "batch_size": batch, "factor": FACTOR, **synth}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ird_bench_data_") as tmp:
        for size in SIZES:
            table = _write_images(Path(tmp), size, count)
            start = time.perf_counter()
            check_images(list(table["path"]))
            check_rate = count / (time.perf_counter() - start)
            res = results[str(size)] = {"check_images_per_s": round(check_rate, 1)}
            rows.append((size, "file check", "-", check_rate))
            steps = steps_per_epoch(count, batch)
            for mode, training in (("train", True), ("eval", False)):
                for cached in (False, True):
                    ds = make_dataset(
                        table, image_size=size, factor=FACTOR, mode="upsampled", batch_size=batch,
                        training=training, class_balanced=training, cache=cached, seed=0, num_classes=4,
                    )
                    if cached:  # fill the cache with one full pass
                        for _ in ds.take(steps + 1 if training else steps):
                            pass
                    rate = _images_per_s(ds, steps - 1)
                    res[f"{mode}_{'cached' if cached else 'uncached'}_images_per_s"] = round(rate, 1)
                    rows.append((size, mode, "yes" if cached else "no", rate))
    quick = getattr(args, "quick", False)
    results["warp_xla"] = warp_xla(rounds=2 if quick else 5, repeats=1 if quick else 3)
    print(f"{'px':>5} {'mode':>10} {'cache':>6} {'images/s':>10}")
    for size, mode, cached, rate in rows:
        print(f"{size:>5} {mode:>10} {cached:>6} {rate:>10.1f}")
    return results
