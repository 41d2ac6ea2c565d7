"""Whole-slide inference, end to end, on synthetic slides (``python tools/benchmark.py slide``).

- End to end on one slide (tissue detection, grid, reading, inference, every output file; models
  loaded and traced before the clock starts): the 1.25x native Student against the 10x Teacher on the
  same grid (target: at least 30x faster), and the 2.5x upsampled Student (the paper's mode: it reads
  16x fewer pixels than the Teacher but runs the same network size); and the same with inference alone
  (reading, preparing, the model; no tissue detection, no files). ``vgg_tiny`` with random weights:
  speed does not depend on the weights. Rounds are interleaved and the median of each is kept.
- Reading: 1.25x tiles read from the 1.25x level against level 0 + block-mean resize, in large
  regions as the slide task reads them: tiles/s and decoded pixels/s.
- Peak memory (max RSS of a separate ``python -m ird_tf.experiments.slide`` process) on a large slide
  and on one 4x smaller (a quarter of the pixels): streaming means it must not grow with the slide.
  The peak is the process's own (``VmHWM``; ``ru_maxrss`` carries the parent's over ``exec``).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras

from ird_tf.data.slides import (
    ReadPlan,
    choose_level,
    detect_tissue,
    iter_regions,
    open_slide,
    reduce,
    tile_grid,
)
from ird_tf.data.synthetic.slide import SlideSpec, write_slide
from ird_tf.export.serving import export_for_serving
from ird_tf.models import build_classifier
from ird_tf.runs.slide import SlideSettings, infer, load_model, process_slide, settings_digest

NAMES = ("NC", "G3", "G4", "G5")
SIZE = 128  # the 10x patch of benchmark v1 (128 µm)

MEASURE = """
import resource, runpy, sys
sys.argv = ["python -m ird_tf.experiments.slide", *sys.argv[1:]]
try:
    runpy.run_module("ird_tf.experiments.slide", run_name="__main__")
except SystemExit as e:
    print("EXIT", e.code)
# VmHWM: this process's own peak resident set. ru_maxrss is not: Linux keeps it across the exec that
# started this process, so it reports the benchmark's own (larger) memory when that was higher
try:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("MAXRSS_KB", kb)
"""


def _export(root: Path, name: str, input_size: int, factor: int, mode: str, student_mag: float) -> Path:
    keras.utils.set_random_seed(0)
    model = build_classifier("vgg_tiny", len(NAMES), (input_size, input_size, 3))
    base = root / name
    export_for_serving(model, base, input_size=input_size, class_names=NAMES, factor=factor, mode=mode,
                       metadata={"teacher_mag": 10.0, "student_mag": student_mag})
    return base


def _slide(root: Path, name: str, side: int, seed: int) -> tuple[Path, float]:
    start = time.perf_counter()
    path = root / f"{name}.tiff"
    write_slide(path, SlideSpec(width=side, height=side, seed=seed))
    return path, round(time.perf_counter() - start, 2)


def end_to_end(slide: Path, models: dict, rounds: int, out: Path) -> dict:
    settings = SlideSettings(backend=None)  # the default batch: 64 tiles of the Teacher, 1024 of the Student
    times: dict[str, list[float]] = {k: [] for k in models}
    tiles = {}
    for r in range(rounds + 1):  # round 0 warms up (tracing, page cache)
        for key, model in models.items():
            start = time.perf_counter()
            digest = settings_digest(settings, model, None)
            s = process_slide(slide, out / f"{key}_{r}", model, None, settings, digest)
            if r:
                times[key].append(time.perf_counter() - start)
            tiles[key] = s["tiles"]
    # inference alone (read the level, prepare, run the model; no tissue detection, no output files)
    infer_times: dict[str, list[float]] = {k: [] for k in models}
    with open_slide(slide) as s:
        grid = tile_grid(*s.dimensions, SIZE, 0.0, detect_tissue(s, s.mpp), 0.5)
        for r in range(rounds + 1):
            for key, model in models.items():
                start = time.perf_counter()
                infer(s, grid, model, s.mpp, settings.batch_size)
                if r:
                    infer_times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    inf = {k: statistics.median(v) for k, v in infer_times.items()}
    res = {f"{k}_seconds": round(v, 3) for k, v in med.items()}
    res.update({f"{k}_tiles_per_s": round(tiles[k] / med[k], 1) for k in med})
    res["tiles"] = tiles["teacher_10x"]
    res["teacher_over_student_1.25x_native"] = round(med["teacher_10x"] / med["student_1.25x_native"], 2)
    res["teacher_over_student_2.5x_upsampled"] = round(med["teacher_10x"] / med["student_2.5x_upsampled"], 2)
    res["inference_only_seconds"] = {k: round(v, 3) for k, v in inf.items()}
    res["inference_only_teacher_over_student_1.25x_native"] = round(
        inf["teacher_10x"] / inf["student_1.25x_native"], 2)
    res["rounds"] = rounds
    return res


def reading(slide: Path, rounds: int) -> dict:
    side = SIZE // 8  # a 1.25x tile
    out = {}
    with open_slide(slide) as s:
        tissue = detect_tissue(s, s.mpp)
        tiles = tile_grid(*s.dimensions, SIZE, 0.0, tissue, 0.5)
        plans = {"level": choose_level([lv.downsample for lv in s.levels], s.mpp, 8.0),
                 "level0_resize": ReadPlan(0, s.mpp, 8.0, 8.0)}
        for key, plan in plans.items():
            best = []
            for _ in range(rounds):
                start = time.perf_counter()
                pixels = 0
                for _, raw in iter_regions(s, tiles, plan, side):
                    pixels += raw.shape[0] * raw.shape[1] * raw.shape[2]
                    reduce(raw, plan, side)
                best.append(time.perf_counter() - start)
            t = statistics.median(best)
            out[key] = {"level": plan.level, "tiles_per_s": round(len(tiles) / t, 1),
                        "decoded_px_per_s": round(pixels / t), "seconds": round(t, 3)}
        out["tiles"] = len(tiles)
        out["backend"] = s.backend
    ratio = out["level"]["tiles_per_s"] / out["level0_resize"]["tiles_per_s"]
    out["level_over_level0_tiles_per_s"] = round(ratio, 1)
    return out


def peak_memory(slide: Path, model: Path, out: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-c", MEASURE, str(slide), "--model", str(model), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    kb = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("MAXRSS_KB")]
    if proc.returncode or not kb:
        raise RuntimeError(f"slide command failed: {proc.stderr[-2000:]}")
    summary = json.loads((out / slide.stem / "summary.json").read_text())
    return {"max_rss_mb": round(kb[0] / 1024, 1), "tiles": summary["tiles"],
            "process_seconds": round(seconds, 1)}


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    big_side, e2e_side, rounds = (8192, 2048, 1) if quick else (16384, 8192, 3)
    with tempfile.TemporaryDirectory(prefix="ird_slide_bench_") as tmp:
        root = Path(tmp)
        e2e, t_e2e = _slide(root, "e2e", e2e_side, 1)
        big, t_big = _slide(root, "large", big_side, 2)
        small, t_small = _slide(root, "small", big_side // 2, 3)
        exports = {
            "student_1.25x_native": _export(root, "s125", SIZE // 8, 8, "native", 1.25),
            "student_2.5x_upsampled": _export(root, "s25", SIZE, 4, "upsampled", 2.5),
            "teacher_10x": _export(root, "t10", SIZE, 1, "native", 10.0),
        }
        models = {k: load_model(v) for k, v in exports.items()}
        gc.freeze()  # as run_slides does (process_slide is timed directly here)
        print(f"slide: end to end on a {e2e_side}^2 slide, {rounds} rounds", flush=True)
        result = {"slides": {"end_to_end": f"{e2e_side}x{e2e_side}", "large": f"{big_side}x{big_side}",
                             "small": f"{big_side // 2}x{big_side // 2}",
                             "write_seconds": {"end_to_end": t_e2e, "large": t_big, "small": t_small}}}
        result["end_to_end"] = end_to_end(e2e, models, rounds, root / "e2e_out")
        print(f"slide: {result['end_to_end']}", flush=True)
        result["reading_1.25x"] = reading(e2e, rounds)
        print(f"slide: {result['reading_1.25x']}", flush=True)
        student = exports["student_1.25x_native"]
        mem = {"large": peak_memory(big, student, root / "mem_large"),
               "small": peak_memory(small, student, root / "mem_small")}
        mem["large_over_small_pixels"] = 4
        mem["large_over_small_max_rss"] = round(mem["large"]["max_rss_mb"] / mem["small"]["max_rss_mb"], 3)
        result["peak_memory_1.25x_student"] = mem
        print(f"slide: {mem}", flush=True)
        ratio = result["end_to_end"]["teacher_over_student_1.25x_native"]
        result["targets"] = {
            "teacher_over_student_1.25x_at_least_30": ratio >= 30,
            "memory_does_not_grow_(large_over_small_at_most_1.1)": mem["large_over_small_max_rss"] <= 1.1,
        }
    return result
