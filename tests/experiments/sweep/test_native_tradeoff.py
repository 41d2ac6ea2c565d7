"""Sweep methods with their own student input mode and backbone (the native trade-off study)."""

import pytest

from ird_tf.config import ConfigError
from ird_tf.experiments.sweep.config import SweepConfig, load_sweep, parse_methods, student_backbone_for
from ird_tf.experiments.sweep.plan import plan


def test_keep_grid_per_factor():
    assert [student_backbone_for("keep-grid", "vgg_tiny", f) for f in (2, 4, 8, 16)] == [
        "vgg_tiny_keep1", "vgg_tiny_keep2", "vgg_tiny_keep3", "vgg_tiny_keep3"]
    assert student_backbone_for("keep-grid", "vgg16", 16) == "vgg16_keep4"
    assert student_backbone_for(None, "vgg16", 4) is None
    with pytest.raises(ConfigError, match="keep-grid"):
        student_backbone_for("keep-grid", "resnet50", 4)


def test_methods_parse_and_round_trip():
    methods = parse_methods({"g": {"kind": "alone", "student_backbone": "keep-grid"},
                             "u": {"kind": "alone", "mode": "upsampled"}})
    assert methods["g"].student_backbone == "keep-grid" and methods["u"].mode == "upsampled"
    assert SweepConfig.from_dict(SweepConfig(methods=methods).to_dict()).methods == methods
    with pytest.raises(ConfigError, match="student_backbone"):
        parse_methods({"g": {"student_backbone": "vgg19"}})
    with pytest.raises(ConfigError, match="mode"):
        parse_methods({"g": {"mode": "tiny"}})


def test_tradeoff_config_plans_each_backbone_and_mode():
    base, sweep = load_sweep("experiments/configs/native_tradeoff_cpu.yaml")
    sweep.validate(base)
    runs = {(p.mag, p.method): p for p in plan(base, sweep) if p.seed == 22}
    assert runs[(1.25, "grid_fm_at")].cfg.model.student == "vgg_tiny_keep3"
    assert runs[(2.5, "grid_alone")].cfg.model.student == "vgg_tiny_keep2"
    assert runs[(1.25, "keep1_alone")].cfg.model.student == "vgg_tiny_keep1"
    assert runs[(1.25, "alone")].cfg.data.mode == "upsampled"  # the reference of the paired table
    assert runs[(1.25, "native_alone")].cfg.data.mode == "native"
    assert runs[(1.25, "native_alone")].cfg.model.student == "vgg_tiny"
    # at 5x (factor 2) keep-grid is keep1: the same run, trained once; every other run is its own
    assert runs[(5.0, "grid_alone")].run_dir == runs[(5.0, "keep1_alone")].run_dir
    assert len({p.run_dir for p in runs.values()}) == len(runs) - 2


def test_tradeoff_plot_writes_png(tmp_path):
    from ird_tf.experiments.sweep.tradeoff_plot import plot_tradeoff

    csv = tmp_path / "s.csv"
    csv.write_text("# header\nmagnification,method,seeds_done,balanced_accuracy_mean,mflops_per_image\n"
                   "10,teacher,1,0.9,111\n1.25,alone,1,0.6,1.7\n1.25,grid_alone,1,0.7,37.6\n"
                   "2.5,alone,1,0.7,6.9\n2.5,up_alone,0,,111\n")
    out = plot_tradeoff(csv)
    assert out == tmp_path / "s.png" and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(Exception, match="columns"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        plot_tradeoff(tmp_path / "bad.csv")


def test_a_method_may_train_its_own_number_of_epochs():
    from ird_tf.config import ExperimentConfig
    from ird_tf.experiments.sweep.config import describe, run_config

    methods = parse_methods({"long": {"kind": "alone", "student_backbone": "vgg_tiny_keep1", "epochs": 40},
                             "short": {"kind": "alone", "student_backbone": "vgg_tiny_keep1"}})
    assert methods["long"].epochs == 40 and methods["short"].epochs is None
    assert SweepConfig.from_dict(SweepConfig(methods=methods).to_dict()).methods == methods
    base = ExperimentConfig()
    sweep = SweepConfig(magnifications=(1.25,), methods=methods, seeds=(22,), mode="native")
    assert run_config(base, sweep, 1.25, "long", 22).optim.epochs == 40
    assert run_config(base, sweep, 1.25, "short", 22).optim.epochs == base.optim.epochs
    # its own run: the epochs are part of the run's identity
    runs = {p.method: p.run_dir for p in plan(base, sweep) if p.kind != "teacher"}
    assert runs["long"] != runs["short"]
    assert describe(methods["long"], base.loss).endswith(", 40 epochs")
    for bad in (0, 2.5, "40", True):
        with pytest.raises(ConfigError, match=r"sweep.methods.g.epochs=.*whole number >= 1"):
            parse_methods({"g": {"kind": "alone", "epochs": bad}})
