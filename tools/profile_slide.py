"""Where a 1.25x native Student's slide goes, and whether running the network over large tiles would help.

    python tools/profile_slide.py [--side 8192] [--rounds 5]

The benchmark's setting (``tools/benchmark.py slide``): a synthetic slide, ``vgg_tiny`` with random
weights exported as a 1.25x native Student. After two warm-up slides, ``process_slide`` runs
``--rounds`` times under cProfile; printed per slide: the cumulative seconds of each step.

Then the fully convolutional route, measured on the same slide and weights: the network's trunk over the
whole 1.25x level at once, each tile's cell of the pooled map through the classifier, against the
per-tile route (``infer``): the largest probability difference, the class agreement, the relative
difference of the pooled features, and the time of each (medians of interleaved rounds).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

STEPS = {  # label -> (file suffix, function name(s)) in cProfile's table
    "process_slide (whole slide)": ("runs/slide.py", "process_slide"),
    "  infer (reading, preparing, the model)": ("runs/slide.py", "infer"),
    "    the model (predict calls)": ("runs/slide.py", "predict"),
    "    reading regions": ("slides/grid.py", "iter_regions"),
    "  detect_tissue": ("slides/tissue.py", "detect_tissue"),
    "  tile_grid": ("slides/grid.py", "tile_grid"),
    "  per-tile table (tile_rows / TileTable)": ("evaluation/slide_report.py", ("tile_rows", "__init__")),
    "  heatmap.png": ("evaluation/slide_report.py", "write_heatmap"),
    "  tissue.png": ("evaluation/slide_report.py", "write_tissue_png"),
    "  tiles.geojson": ("evaluation/slide_report.py", "write_geojson"),
    "  tiles.csv": ("evaluation/slide_report.py", "write_csv"),
}


def profile(slide: Path, export: Path, out: Path, rounds: int) -> None:
    from ird_tf.runs.slide import SlideSettings, load_model, process_slide, settings_digest

    model = load_model(export)
    gc.freeze()  # as run_slides does
    settings = SlideSettings()
    digest = settings_digest(settings, model, None)
    for r in range(2):
        process_slide(slide, out / f"warm{r}", model, None, settings, digest)
    plain = []
    for _ in range(rounds):
        start = time.perf_counter()
        process_slide(slide, out / "plain", model, None, settings, digest)
        plain.append(time.perf_counter() - start)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(rounds):
        process_slide(slide, out / "profiled", model, None, settings, digest)
    prof.disable()
    stats = pstats.Stats(prof).stats
    print(f"process_slide without the profiler: median {statistics.median(plain):.3f} s of {rounds}")
    print(f"cProfile, cumulative seconds per slide ({rounds} slides):")
    for label, (suffix, name) in STEPS.items():
        names = (name,) if isinstance(name, str) else name
        total = sum(v[3] for (file, _, fn), v in stats.items() if fn in names and file.endswith(suffix))
        print(f"  {label:<42} {total / rounds:.4f}")


def large_tiles(slide: Path, rounds: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf
    from benchmarks.slide import NAMES, SIZE, _export

    from ird_tf.data.slides import detect_tissue, open_slide, tile_grid
    from ird_tf.models import build_classifier
    from ird_tf.runs.slide import infer, load_model

    side = SIZE // 8
    with tempfile.TemporaryDirectory() as tmp:
        student = load_model(_export(Path(tmp), "s", side, 8, "native", 1.25))
    keras.utils.set_random_seed(0)  # the weights _export gave the Student
    fixed = build_classifier("vgg_tiny", len(NAMES), (side, side, 3))
    free = build_classifier("vgg_tiny", len(NAMES), (None, None, 3))
    free.set_weights(fixed.get_weights())
    trunk = keras.Model(free.input, free.get_layer("global_pool").input)
    kernel, bias = (v.numpy() for v in free.get_layer("logits").weights)
    per_tile = keras.Model(fixed.input, fixed.get_layer("global_pool").output)
    run_trunk = tf.function(lambda x: trunk(x, training=False),
                            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    with open_slide(slide) as s:
        grid = tile_grid(*s.dimensions, SIZE, 0.0, detect_tissue(s, s.mpp), 0.5)
        level = next(lv for lv in s.levels if abs(lv.downsample - 8) < 0.05)
        rows = np.array([t.y // SIZE for t in grid])
        cols = np.array([t.x // SIZE for t in grid])

        def whole():
            image = s.read(level.index, 0, 0, level.width, level.height).astype(np.float32) / np.float32(255)
            cells = run_trunk(image[None]).numpy()[0][rows, cols]
            return cells, tf.nn.softmax(cells @ kernel + bias).numpy()

        probs, _ = infer(s, grid, student, s.mpp)
        cells, whole_probs = whole()
        image = s.read(level.index, 0, 0, level.width, level.height).astype(np.float32) / np.float32(255)
        tiles = np.stack([image[t.y // 8:t.y // 8 + side, t.x // 8:t.x // 8 + side] for t in grid])
        feats = np.concatenate([per_tile(tiles[i:i + 1024], training=False).numpy()
                                for i in range(0, len(tiles), 1024)])
        check = np.abs(tf.nn.softmax(feats @ kernel + bias).numpy() - probs).max()
        rel = np.linalg.norm(cells - feats, axis=1) / np.maximum(np.linalg.norm(feats, axis=1), 1e-12)
        times: dict[str, list[float]] = {"large tile (whole level)": [], "per tile (infer)": []}
        for _ in range(rounds):
            start = time.perf_counter()
            whole()
            times["large tile (whole level)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            infer(s, grid, student, s.mpp)
            times["per tile (infer)"].append(time.perf_counter() - start)
    print(f"large tile vs per tile, {len(grid)} tiles of {side} px (the per-tile features rebuilt in Keras "
          f"give the export's probabilities within {check:.2g}):")
    print(f"  max |probability difference| {np.abs(whole_probs - probs).max():.4g}; spread of the per-tile "
          f"top probability over tiles {np.ptp(probs.max(1)):.4g}")
    print(f"  class agreement {np.mean(whole_probs.argmax(1) == probs.argmax(1)):.4f}")
    print(f"  pooled features, relative L2 difference: median {np.median(rel):.3f}, max {rel.max():.3f}")
    for k, v in times.items():
        print(f"  {k}: median {statistics.median(v):.4f} s of {rounds}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--side", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    from benchmarks.slide import SIZE, _export, _slide

    with tempfile.TemporaryDirectory(prefix="ird_slide_profile_") as tmp:
        root = Path(tmp)
        slide, _ = _slide(root, "profile", args.side, 1)
        export = _export(root, "s125", SIZE // 8, 8, "native", 1.25)
        profile(slide, export, root / "out", args.rounds)
        large_tiles(slide, args.rounds)


if __name__ == "__main__":
    main()
