"""The ablation bar chart on a CSV written by the sweep's own table writer (finished runs faked by their
``result.json``), and its errors on CSVs it cannot use."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ird_tf.config import ExperimentConfig
from ird_tf.data import DataError
from ird_tf.experiments.sweep import Method, SweepConfig, plan, write_tables
from ird_tf.experiments.sweep import ablation_plot as plot_ablation
from ird_tf.runs import RunResult, write_result

COMBOS = [("minmax", "l2"), ("minmax", "kl"), ("softmax", "l2"), ("softmax", "kl"), ("none", "bce")]


def fake_sweep_csv(tmp_path: Path) -> tuple[Path, dict]:
    """The sweep CSV for 5 norm x distance methods at 2.5x and 1.25x, seeds 22 and 32, with known scores;
    ``softmax_kl`` at 1.25x has only seed 22 finished. Returns (csv, {(mag, method): [(acc, kappa) per
    finished seed]})."""
    base = ExperimentConfig()
    base.run.output_dir = str(tmp_path / "runs")
    methods = {f"{n}_{d}": Method("distill", {"ce": 1.0, "fm": 0.1, "at": 10.0, "at_norm": n,
                                              "at_distance": d}) for n, d in COMBOS}
    sweep = SweepConfig(name="ablation_tiny", magnifications=(2.5, 1.25), methods=methods, seeds=(22, 32),
                        localisation=())
    planned = plan(base, sweep)
    rng = np.random.default_rng(0)
    scores: dict = {}
    for p in planned:
        if p.method == "softmax_kl" and p.mag == 1.25 and p.seed == 32:
            continue  # not finished
        acc, kappa = rng.uniform(0.3, 0.9), rng.uniform(-0.2, 0.9)
        scores.setdefault((p.mag, p.method), []).append((acc, kappa))
        p.run_dir.mkdir(parents=True)
        write_result(RunResult(p.run_dir, {"test": {"balanced_accuracy": acc, "kappa": kappa}}, 1.0))
    header = {"command": "python -m ird_tf.experiments.sweep --config x.yaml", "commit": "abc1234",
              "start": time.time()}
    _, csv_path = write_tables(base, sweep, planned, tmp_path / "results", "sweep_ablation_tiny", header,
                               None)
    return csv_path, scores


def test_bar_heights_and_error_bars_are_the_sweep_means_and_stds(tmp_path):
    csv_path, scores = fake_sweep_csv(tmp_path)
    assert csv_path.read_text().startswith("# command: ")
    df = plot_ablation.read_ablation(csv_path)
    for mag in (2.5, 1.25):
        for k, key in enumerate(("balanced_accuracy", "kappa")):
            norms, dists, mean, std = plot_ablation.grid(df, mag, key)
            assert norms == ["minmax", "softmax", "none"] and dists == ["l2", "bce", "kl"]
            for i, d in enumerate(dists):
                for j, n in enumerate(norms):
                    values = [s[k] for s in scores.get((mag, f"{n}_{d}"), [])]
                    if not values:  # combination not in the sweep: no bar
                        assert np.isnan(mean[i, j]) and np.isnan(std[i, j])
                        continue
                    np.testing.assert_allclose(mean[i, j], np.mean(values), rtol=1e-5)
                    if len(values) > 1:
                        np.testing.assert_allclose(std[i, j], np.std(values, ddof=1), rtol=1e-5)
                    else:  # one seed: no error bar
                        assert np.isnan(std[i, j])
    assert not np.isnan(plot_ablation.grid(df, 1.25, "kappa")[2][2, 1])  # softmax_kl: the seed that finished


def test_cli_writes_png_next_to_the_csv_and_at_out(tmp_path, capsys):
    csv_path, _ = fake_sweep_csv(tmp_path)
    assert plot_ablation.main([str(csv_path)]) == 0
    default = csv_path.with_suffix(".png")
    assert f"wrote {default}" in capsys.readouterr().out
    with Image.open(default) as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 300
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 5  # bars and text were drawn, not a blank canvas
    other = tmp_path / "figs" / "ablation.png"
    assert plot_ablation.main([str(csv_path), "--out", str(other)]) == 0
    assert other.stat().st_size > 0 and Image.open(other).size == Image.open(default).size


def test_csv_without_the_needed_columns_names_the_file(tmp_path, capsys):
    bad = tmp_path / "not_a_sweep.csv"
    bad.write_text("# command: something\nmagnification,method,accuracy\n2.5,minmax_l2,0.7\n")
    with pytest.raises(DataError, match=r"not_a_sweep\.csv: missing column\(s\) \['seeds_done', "
                                        r"'balanced_accuracy_mean'"):
        plot_ablation.read_ablation(bad)
    with pytest.raises(SystemExit) as exit_info:
        plot_ablation.main([str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "kappa_mean" in err
    assert not bad.with_suffix(".png").exists()


def test_csv_of_another_sweep_or_missing_file_is_refused(tmp_path):
    csv_path, _ = fake_sweep_csv(tmp_path)
    text = csv_path.read_text()
    other = tmp_path / "sweep_cpu.csv"
    for n, d in COMBOS:
        text = text.replace(f"{n}_{d}", f"method{n}{d}")
    other.write_text(text)
    with pytest.raises(DataError, match=r"sweep_cpu\.csv: no method named <norm>_<distance>"):
        plot_ablation.read_ablation(other)
    with pytest.raises(DataError, match=r"missing\.csv: no such file"):
        plot_ablation.read_ablation(tmp_path / "missing.csv")
