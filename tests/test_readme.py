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


def _rows_in(section: str, files: tuple[str, ...], at_least: int) -> None:
    rows = _table_rows(_section(section))
    known = set()
    for name in files:
        known |= set(_table_rows((RESULTS / name).read_text(encoding="utf-8")))
    assert len(rows) >= at_least, f"the README lost tables of {section!r}"
    missing = [r for r in rows if r not in known]
    assert not missing, f"README rows of {section!r} in none of {files}: {missing}"


def test_sweep_rows_are_those_of_the_sweep_file():
    _rows_in("### What the synthetic benchmark gives", ("sweep_cpu.md",), 2 * 17)


def test_tuned_rows_are_those_of_the_tuned_study_file():
    _rows_in("### Loss weights chosen on validation", ("sweep_tuned_cpu.md",), 8)


def test_native_rows_are_those_of_the_trade_off_file():
    _rows_in("### Native Students", ("sweep_native_tradeoff_cpu.md",), 10)


def test_native_budget_and_long_training_rows_are_those_of_their_files():
    _rows_in("#### Within a tenth of the Teacher's FLOPs at 1.25x", ("sweep_native_budget_cpu.md",), 10)
    _rows_in("#### Trained long", ("sweep_native_long_cpu.md",), 6)


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


# the same for the second run (sections peer, machine, xla), in experiments/results/benchmark_peer_cpu.json
PEER_ROWS = {
    "ird_tf step / the authors' PyTorch step": [("peer", "summary", "ird_tf_over_pytorch_128px"),
                                                ("peer", "summary", "ird_tf_over_pytorch_512px")],
    "the same ratio in each round, 128 px": [("peer", "vgg16_128px_b8", "ratio_per_round")],
    "the same ratio in each round, 512 px": [("peer", "vgg16_512px_b8", "ratio_per_round")],
    "TensorFlow's 3x3 convolution / 2048² matmul": [("machine", "conv_gflop_s"),
                                                    ("machine", "matmul_gflop_s")],
    "FLOPs per image counted from VGG16": [
        ("machine", "steps", "vgg16@128", "forward_gflop_per_image"),
        ("machine", "steps", "vgg16@128", "gflop_per_image", "distill_ce_fm_at_all")],
    "share of the convolution throughput, VGG16": [
        ("machine", "steps", "vgg16@128", "share_of_conv", name)
        for name in ("teacher", "distill_ce_fm", "distill_ce_fm_at_all")],
    "share of the convolution throughput, `vgg_tiny`": [
        ("machine", "steps", "vgg_tiny@128", "share_of_conv", name)
        for name in ("teacher", "distill_ce_fm", "distill_ce_fm_at_all")],
    "convolutions' share of the op time": [("machine", "profile", "convolution_share_of_op_time")],
    "VGG16 Distiller step with one inter-op thread": [("machine", "threads", "inter1_speedup")],
    "NCHW convolution speed / NHWC": [("machine", "layout", "nchw_over_nhwc_speed")],
    "XLA / no XLA, train step time": [
        ("xla", "summary", "train_step_xla_over_plain_time", name)
        for name in ("vgg_tiny@128/teacher", "vgg_tiny@128/distill_ce_fm_at_all", "vgg16@128/teacher",
                     "vgg16@128/distill_ce_fm_at_all")],
    "XLA / no XLA, forward + backward time": [
        ("xla", "summary", "op_xla_over_plain_time", name)
        for name in ("maxpool2x2_128px_64ch", "conv3x3_128px_64ch", "conv3x3_32px_256ch")],
    "augmentation warp, XLA speed-up": [("xla", "summary", "warp_xla_speedup", "512"),
                                        ("xla", "summary", "warp_xla_speedup", "128")],
}


N = "native"
NATIVE_ROWS = {
    "FLOPs per image: Teacher": [(N, "flops_per_image", m) for m in
                                 ("vgg_tiny@128", "vgg_tiny@16", "vgg_tiny_keep1@16", "vgg_tiny_keep3@16")],
    "images/s ratio Student / Teacher, batch 32, `tf.function`": [
        (N, "batches", "32", "measured_ratio_vs_teacher", f"{m}@16/function")
        for m in ("vgg_tiny", "vgg_tiny_keep1", "vgg_tiny_keep3")],
    "the same at batch 32 with XLA": [(N, "batches", "32", "measured_ratio_vs_teacher", f"{m}@16/xla")
                                      for m in ("vgg_tiny", "vgg_tiny_keep1", "vgg_tiny_keep3")],
    "the same at batch 256, `tf.function`": [
        (N, "batches", "256", "measured_ratio_vs_teacher", f"{m}@16/function")
        for m in ("vgg_tiny", "vgg_tiny_keep1", "vgg_tiny_keep3")],
    "the same at batch 1, `tf.function` / XLA": [
        (N, "batches", "1", "measured_ratio_vs_teacher", f"vgg_tiny@16/{p}") for p in ("function", "xla")],
    "measured ratio / FLOPs ratio, plain `vgg_tiny`": [
        (N, "batches", b, "ratio_over_flops_ratio", "vgg_tiny@16/function") for b in ("32", "256")],
    "measured ratio / FLOPs ratio, `vgg_tiny_keep1`": [
        (N, "batches", "32", "ratio_over_flops_ratio", f"vgg_tiny_keep1@16/{p}")
        for p in ("function", "xla")],
    "FLOPs per image of `vgg_tiny_keep2_sep`": [
        (N, "flops_per_image", f"vgg_tiny_keep{k}_sep@16") for k in (2, 3)],
    "images/s ratio Student / Teacher, batch 32, `keep2_sep`": [
        (N, "batches", "32", "measured_ratio_vs_teacher", f"vgg_tiny_keep{k}_sep@16/{p}")
        for k in (2, 3) for p in ("function", "xla")],
    "a compiled call that returns its input": [(N, "batches", b, "overhead_ms") for b in ("32", "1")],
}


def _check_rows(rows: list[str], expected_by_label: dict, bench: dict) -> None:
    assert len(rows) == len(expected_by_label), "README benchmark rows and their expected keys differ"
    for row in rows:
        label, figure = row.split("|")[1].strip(), row.split("|")[2]
        keys = [k for k in expected_by_label if label.startswith(k)]
        assert len(keys) == 1, f"README benchmark row {label!r} is not in the expected rows"
        expected = []
        for path in expected_by_label[keys[0]]:
            value = bench
            for key in path:
                value = value[key]
            expected.extend(repr(v) for v in (value if isinstance(value, list) else [value]))
        assert re.findall(r"\d+(?:\.\d+)?", figure) == expected, (row, expected)


def test_benchmark_figures_are_those_of_the_benchmark_files():
    section = _section("## Benchmarks")
    parts = section.split("\n| measured |")  # each table's header row starts with it
    assert len(parts) == 4, "the Benchmarks section has three tables, each with a `| measured |` header"
    for part, name, expected in ((parts[1], "benchmark_cpu.json", BENCHMARK_ROWS),
                                 (parts[2], "benchmark_peer_cpu.json", PEER_ROWS),
                                 (parts[3], "benchmark_native_cpu.json", NATIVE_ROWS)):
        bench = json.loads((RESULTS / name).read_text(encoding="utf-8"))
        assert f"`{bench['command']}`" in section
        _check_rows(_table_rows(part), expected, bench)  # the header row's rest does not start with "|"


def test_quick_start_commands_exist_and_ci_calls_the_test_command():
    quick = _section("## Quick start")
    commands = re.findall(r"^(make \w+)", quick, flags=re.M)
    assert commands[:2] == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "python -m ird_tf.experiments.distill --res $(RES)" in makefile.replace("$(PY)", "python")
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), flags=re.M)
