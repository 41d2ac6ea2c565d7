"""The README's figures are copies of what committed commands printed: these tests fail when a copy drifts."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = ROOT / "experiments" / "results"


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end if end >= 0 else None]


def _table_rows(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("|") and "---" not in line]


def test_results_table_rows_are_those_of_the_sweep_file():
    rows = _table_rows(_section("### What the synthetic benchmark gives"))
    sweep_rows = set(_table_rows((RESULTS / "sweep_cpu.md").read_text(encoding="utf-8")))
    assert len(rows) >= 10, "the README lost its results table"
    missing = [r for r in rows if r not in sweep_rows]
    assert not missing, f"README rows not in experiments/results/sweep_cpu.md: {missing}"


# README benchmark row (its first words) -> the JSON values its figure column shows, in order
BENCHMARK_ROWS = {
    "distiller CE + FM + AT+ (all classes) train step, VGG16": [
        ("train", "vgg16_128px_b8", "distill_ce_fm_at_all_img_s")],
    "the same step in the bare attention harness": [("attention", "vgg16@128", "images_per_s", "at_all_2nd")],
    "AT+ step / FM step, VGG16": [("train", "vgg16_128px_b8", "at_target_over_fm_step"),
                                  ("train", "vgg16_128px_b8", "at_all_over_fm_step")],
    "the same ratio in the attention harness": [("attention", "vgg16@128", "ratio_vs_ce_fm", "at_target_2nd"),
                                                ("attention", "vgg16@128", "ratio_vs_ce_fm", "at_all_2nd")],
    "AT+ step / FM step, `vgg_tiny`": [("train", "cpu_preset_vgg_tiny_128px_b8", "at_target_over_fm_step"),
                                       ("train", "cpu_preset_vgg_tiny_128px_b8", "at_all_over_fm_step")],
    "teacher step, `vgg_tiny`": [("train", "cpu_preset_vgg_tiny_128px_b8", "teacher_img_s")],
    "peak memory": [("train", "distill_default_run", "peak_rss_mb")],
    "tf.data training view (augmentation, factor 4), 512 px": [
        ("data", "512", "train_uncached_images_per_s"), ("data", "512", "train_cached_images_per_s")],
    "tf.data training view, 128 px": [
        ("data", "128", "train_uncached_images_per_s"), ("data", "128", "train_cached_images_per_s")],
    "synthetic generator on one core": [("data", "synthetic_256px_patches_per_s_one_core"),
                                        ("data", "synthetic_128px_patches_per_s_one_core")],
}


def test_benchmark_figures_are_those_of_the_benchmark_file():
    bench = json.loads((RESULTS / "benchmark_cpu.json").read_text(encoding="utf-8"))
    section = _section("## Benchmarks")
    assert f"`{bench['command']}`" in section
    rows = _table_rows(section)[1:]  # without the header row
    assert len(rows) == len(BENCHMARK_ROWS), "README benchmark rows and BENCHMARK_ROWS differ"
    for row in rows:
        label, figure = row.split("|")[1].strip(), row.split("|")[2]
        keys = [k for k in BENCHMARK_ROWS if label.startswith(k)]
        assert len(keys) == 1, f"README benchmark row {label!r} is not in BENCHMARK_ROWS"
        expected = []
        for path in BENCHMARK_ROWS[keys[0]]:
            value = bench
            for key in path:
                value = value[key]
            expected.append(repr(value))
        assert re.findall(r"\d+(?:\.\d+)?", figure) == expected, (row, expected)


def test_quick_start_commands_exist_and_ci_calls_the_test_command():
    quick = _section("## Quick start")
    commands = re.findall(r"^(make \w+)", quick, flags=re.M)
    assert commands[:2] == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "python -m ird_tf.experiments.distill --res $(RES)" in makefile.replace("$(PY)", "python")
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), flags=re.M)
