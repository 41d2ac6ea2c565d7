"""The paired-difference section of the sweep table and its figure, from faked finished runs."""

from __future__ import annotations

import time

from ird_tf.config import ExperimentConfig
from ird_tf.evaluation.paired import paired_cell, paired_difference
from ird_tf.experiments.sweep import Method, SweepConfig, plan, write_tables
from ird_tf.runs import RunResult, write_result

SCORES = {  # method -> seed -> test balanced accuracy
    "teacher": {22: 0.90, 32: 0.92, 43: 0.94},
    "alone": {22: 0.70, 32: 0.72, 43: 0.75},
    "fm": {22: 0.74, 32: 0.75, 43: 0.80},
    "kd": {22: 0.80, 32: 0.70, 43: 0.90},
}


def test_sweep_table_has_paired_differences_against_alone_and_fm(tmp_path):
    base = ExperimentConfig()
    base.run.output_dir = str(tmp_path / "runs")
    methods = {"alone": Method("alone", {}), "fm": Method("distill", {"ce": 1.0, "fm": 0.1}),
               "kd": Method("distill", {"ce": 1.0, "kd": 1.0})}
    sweep = SweepConfig(name="tiny", magnifications=(2.5,), methods=methods, seeds=(22, 32, 43),
                        localisation=())
    planned = plan(base, sweep)
    for p in planned:
        p.run_dir.mkdir(parents=True, exist_ok=True)
        score = SCORES[p.method][p.seed]
        write_result(RunResult(p.run_dir, {"test": {"balanced_accuracy": score, "kappa": score}}, 1.0))
    header = {"command": "python -m ird_tf.experiments.sweep --config x.yaml", "commit": "abc1234",
              "start": time.time()}
    md_path, _ = write_tables(base, sweep, planned, tmp_path / "results", "sweep_tiny", header, None)
    md = md_path.read_text()
    assert "95 % paired-t interval over seeds" in md
    fm_vs_alone = paired_difference(SCORES["fm"], SCORES["alone"])
    assert fm_vs_alone.excludes_zero  # differences 0.04, 0.03, 0.05
    kd_vs_alone = paired_difference(SCORES["kd"], SCORES["alone"])
    kd_vs_fm = paired_difference(SCORES["kd"], SCORES["fm"])
    # gap closed: fm mean(0.04, 0.03, 0.05) / mean(0.20, 0.20, 0.19); kd mean(0.10, -0.02, 0.15) / the same
    assert f"| 2.5x | fm | 3 | {paired_cell(fm_vs_alone)} | n/a | +20% |" in md
    assert f"| 2.5x | kd | 3 | {paired_cell(kd_vs_alone)} | {paired_cell(kd_vs_fm)} | +39% |" in md
    assert "| 2.5x | alone | 3 | n/a |" in md
    png = tmp_path / "results" / "sweep_tiny_paired.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_methods_of_different_lengths_show_their_epochs_and_training_cost(tmp_path):
    """A study whose methods set their own epochs: each row says its epochs and, with costs, epochs x
    MFLOPs per image (worked by hand below); the teacher row its own epochs."""
    base = ExperimentConfig()
    base.run.output_dir = str(tmp_path / "runs")
    base.data.student_mag, base.data.mode = 1.25, "native"
    methods = {"alone": Method("alone", {}, mode="upsampled"),
               "keep1_e32": Method("alone", {}, student_backbone="vgg_tiny_keep1", epochs=32)}
    sweep = SweepConfig(name="long", magnifications=(1.25,), methods=methods, seeds=(22, 32),
                        localisation=(), mode="native")
    planned = plan(base, sweep)
    for p in planned:
        p.run_dir.mkdir(parents=True, exist_ok=True)
        write_result(RunResult(p.run_dir, {"test": {"balanced_accuracy": 0.8, "kappa": 0.8}}, 1.0))
    cost = {"images_per_s": 100.0, "images_per_s_b1": 10.0, "params": 7}
    costs = {(128, "vgg_tiny"): {**cost, "mflops": 110.9}, (16, "vgg_tiny_keep1"): {**cost, "mflops": 5.71}}
    header = {"command": "python -m ird_tf.experiments.sweep --config x.yaml", "commit": "abc1234",
              "start": time.time()}
    md_path, csv_path = write_tables(base, sweep, planned, tmp_path / "results", "sweep_long", header, costs,
                                     figures=False)
    md = md_path.read_text()
    assert "| images/s b1 | params | epochs | epochs x MFLOPs |" in md
    assert "| 10x | teacher |" in md and "| 100 | 111 | 10 | 7 | 20 | 2.22e+03 |" in md  # 20 x 110.9
    assert "| 1.25x | alone |" in md and "| 7 | 8 | 887 |" in md  # 8 x 110.9 = 887.2
    assert "| 1.25x | keep1_e32 |" in md and "| 5.71 | 10 | 7 | 32 | 183 |" in md  # 32 x 5.71 = 182.7
    assert "proportional to the training compute" in md
    assert [line.split(",")[-2] for line in csv_path.read_text().splitlines()[-3:]] == ["20", "8", "32"]
