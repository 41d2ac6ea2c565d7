"""The sweep command as a user runs it (a real process on a tiny synthetic benchmark, then a restart that
trains nothing), the Figure-3 command on its runs, and the sweep files: round trip, errors, presets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny import tiny_experiment

from ird_tf.config import ConfigError, ExperimentConfig, LossConfig
from ird_tf.experiments import figure_attention, sweep
from ird_tf.experiments.sweep import Method, SweepConfig, default_methods, load_sweep, plan, save_sweep

CONFIGS = Path(__file__).resolve().parents[3] / "experiments" / "configs"


def tiny_base(tmp_path: Path) -> ExperimentConfig:
    """48 patches of 64 px, vgg_tiny, one epoch each: seconds per run."""
    return tiny_experiment(tmp_path, size=64, per_slide=6, verbose=0)


def tiny_sweep() -> SweepConfig:
    m = default_methods()
    return SweepConfig(name="tiny", magnifications=(2.5,), methods={"alone": m["alone"], "fm_at": m["fm_at"]},
                       seeds=(22,), mode="native", cost_seconds=0.2)


def run(args: list[str], cwd: Path, timeout: int = 300) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "ird_tf.experiments.sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - start


@pytest.mark.large
def test_tiny_sweep_writes_tables_then_reuses_every_run(tmp_path, monkeypatch, capsys):
    config = save_sweep(tmp_path / "tiny.yaml", tiny_base(tmp_path), tiny_sweep())
    first, first_seconds = run(["--config", str(config)], tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "run 1/3 10x teacher seed 22: training" in first.stdout
    assert "run 3/3 2.5x fm_at seed 22: training" in first.stdout
    assert "3 trained, 0 reused, 0 failed" in first.stdout

    md = (tmp_path / "experiments/results/sweep_tiny.md").read_text()
    assert f"- Command: `python -m ird_tf.experiments.sweep --config {config}`" in md
    assert re.search(r"- Commit: `(unknown|[0-9a-f]{4,})`", md)
    assert re.search(r"- Run time: \d+\.\d min", md)
    assert "3/3 runs finished" in md
    # where the wall time went: the parts add up to the invocation's wall time, compute is positive
    spent = re.search(r"this invocation (\d+\.\d) min; the train and eval steps of the 3 runs it trained, "
                      r"at their steady speed, (\d+\.\d) min \(wall / compute = (\d+\.\d\d)\)", md)
    assert spent, md[:2000]
    assert float(spent.group(2)) >= 0 and float(spent.group(3)) >= 1.0
    main_table, paired = md.split("\n### Paired differences", 1)
    table = [line for line in main_table.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| magnification | method | seeds | test bal. acc. | test kappa | energy in "
                               "lesion | pointing game | input px | images/s | MFLOPs/image |")
    assert [row.split(" | ")[:3] for row in table[1:]] == [
        ["| 10x", "teacher", "1/1"], ["| 2.5x", "alone", "1/1"], ["| 2.5x", "fm_at", "1/1"]]
    assert all(re.search(r"\d\.\d{3} ± \d\.\d{3}", row) for row in table[1:])
    assert re.search(r"\| 2\.5x \| fm_at \| 1 \| [+-]\d\.\d{3} \(1 seed\) \|", paired)  # no interval
    assert (tmp_path / "experiments/results/sweep_tiny_paired.png").is_file()

    csv_path = tmp_path / "experiments/results/sweep_tiny.csv"
    head = csv_path.read_text().splitlines()[:4]
    assert head[0] == f"# command: python -m ird_tf.experiments.sweep --config {config}"
    assert head[1].startswith("# commit: ") and head[2].startswith("# run_time_min: ")
    preamble = dict(line[2:].split(": ", 1) for line in csv_path.read_text().splitlines()
                    if line.startswith("# "))
    parts = [float(preamble[f"{k}_min"]) for k in ("compute", "first_calls", "epoch_end", "setup", "outside")]
    assert parts[0] > 0 and abs(sum(parts) - float(preamble["run_time_min"])) < 0.05
    rows = pd.read_csv(csv_path, comment="#")
    assert rows["method"].tolist() == ["teacher", "alone", "fm_at"]
    assert rows["input_px"].tolist() == [64, 16, 16]  # native: the 2.5x student reads 64 / 4 px
    assert rows["mflops_per_image"][0] > 10 * rows["mflops_per_image"][1]
    for col in ("balanced_accuracy_mean", "kappa_mean", "energy_inside_mean", "pointing_game_mean"):
        assert rows[col].between(-1, 1).all() if col == "kappa_mean" else rows[col].between(0, 1).all()
    assert (rows["images_per_s"] > 0).all()
    run_dirs = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]
    assert len(run_dirs) == 3
    loc_files = [d / "localisation.json" for d in run_dirs]
    assert all(f.is_file() for f in loc_files)
    stamps = [f.stat().st_mtime_ns for f in loc_files]

    again, again_seconds = run(["--config", str(config)], tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count(": reused (") == 3 and ": training (" not in again.stdout
    assert "0 trained, 3 reused, 0 failed" in again.stdout
    assert "[fit]" not in again.stdout  # nothing was fitted, not even resumed
    assert [f.stat().st_mtime_ns for f in loc_files] == stamps  # localisation read from the cache
    assert again_seconds < first_seconds
    assert "| 2.5x | fm_at | 1/1 |" in (tmp_path / "experiments/results/sweep_tiny.md").read_text()

    monkeypatch.chdir(tmp_path)
    assert sweep.main(["--config", str(config), "--dry-run"]) == 0
    assert "3/3 runs finished" in capsys.readouterr().out
    assert figure_attention.main(["--config", str(config), "--res", "2.5", "--per-class", "1"]) == 0
    figure = tmp_path / "experiments/results/figure3_tiny_2.5x.png"
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # the paper preset's runs are other runs: not there yet
        figure_attention.main(["--config", str(config), "--res", "2.5", "--preset", "paper", "--sicap",
                               str(tmp_path)])
    assert exit_info.value.code == 2
    assert re.search(r"2\.5x alone seed 22 run has not finished "
                     r"\(runs/students/2\.5x_[a-z]+_alone_s22_vgg16_", capsys.readouterr().err)


def test_a_bad_image_stops_the_sweep_before_its_first_run_in_one_line(tmp_path, monkeypatch, capsys):
    from ird_tf.data.synthetic import ensure_dataset

    base = tiny_base(tmp_path)
    root = ensure_dataset(base.data.cache_dir, base.data.synthetic, progress=False)
    broken = sorted((root / "images").iterdir())[0]
    broken.write_bytes(b"\xff\xd8\xff\xe0 a truncated JPEG")
    config = save_sweep(tmp_path / "tiny.yaml", base, tiny_sweep())
    monkeypatch.chdir(tmp_path)
    assert sweep.main(["--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and broken.name in err, err
    assert "data.skip_corrupt: true in the study file" in err, err  # the study commands have no option
    assert not (tmp_path / "runs").exists() or not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]


def test_sweep_file_round_trip(tmp_path):
    base = tiny_base(tmp_path)
    s = replace(tiny_sweep(), localisation=("fm_at",), localisation_weighting="positive", cost=True,
                methods={**tiny_sweep().methods,
                         "soft": Method("distill", {"ce": 1.0, "at": 10.0, "at_norm": "softmax"})})
    path = save_sweep(tmp_path / "s.yaml", base, s)
    base2, s2 = load_sweep(path)
    assert base2 == base and s2 == s
    assert save_sweep(tmp_path / "s2.yaml", base2, s2).read_text() == path.read_text()


def test_method_losses_switch_off_unlisted_terms():
    base = LossConfig(fm=0.5, at=3.0, kd=2.0, at_norm="softmax")
    fm = default_methods()["fm"].loss_config(base)
    assert fm.weights() == {"ce": 1.0, "fm": 0.1} and fm.at_norm == "softmax"
    assert default_methods()["alone"].loss_config(base).weights() == {"ce": 1.0}


def write_bad(tmp_path: Path, change: dict) -> Path:
    d = {**tiny_base(tmp_path).to_dict(), "sweep": {**tiny_sweep().to_dict(), **change}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize("change, named", [
    ({"magnificatons": [2.5]}, "sweep.magnificatons"),
    ({"magnifications": [3]}, "sweep.magnifications"),
    ({"magnifications": ["2.5x"]}, "sweep.magnifications[0]"),
    ({"seeds": []}, "sweep.seeds"),
    ({"mode": "tiny"}, "sweep.mode"),
    ({"name": "a/b"}, "sweep.name"),
    ({"methods": {"fm": {"loss": {"alpha_fm": 1}}}}, "sweep.methods.fm.loss.alpha_fm"),
    ({"methods": {"fm": {"kind": "teacher"}}}, "sweep.methods.fm.kind"),
    ({"methods": {"fm": {"loss": {"at_norm": "max"}}}}, "sweep.methods.fm: loss.at_norm"),
    ({"methods": {"solo": {"kind": "alone", "loss": {"fm": 0.1}}}}, "sweep.methods.solo"),
    ({"methods": ["fm", "nope"]}, "sweep.methods"),
    ({"localisation": ["kd"]}, "sweep.localisation"),
    ({"localisation_weighting": "cam"}, "sweep.localisation_weighting"),
])
def test_bad_sweep_setting_names_the_key(tmp_path, capsys, change, named):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--config", str(write_bad(tmp_path, change)), "--dry-run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err, err


def test_missing_sweep_section_and_bad_seed_count(tmp_path, capsys):
    path = tiny_base(tmp_path).save(tmp_path / "plain.yaml")
    with pytest.raises(ConfigError, match="'sweep:' section"):
        load_sweep(path)
    good = save_sweep(tmp_path / "good.yaml", tiny_base(tmp_path), tiny_sweep())
    with pytest.raises(SystemExit):
        sweep.main(["--config", str(good), "--seeds", "2", "--dry-run"])
    assert "--seeds 2" in capsys.readouterr().err


def test_seeds_and_quick_options(tmp_path):
    good = save_sweep(tmp_path / "good.yaml", tiny_base(tmp_path), replace(tiny_sweep(), seeds=(22, 32, 43)))
    parser = sweep.build_parser()
    base, s, name = sweep.resolve(parser.parse_args(["--config", str(good), "--seeds", "2"]))
    assert s.seeds == (22, 32) and name == "sweep_tiny" and len(plan(base, s)) == 2 * 3
    base, s, name = sweep.resolve(parser.parse_args(["--config", str(good), "--quick"]))
    assert s.seeds == (22,) and name == "sweep_tiny_quick" and base.optim.epochs == 1


# ------------------------------------------------------------------------------ committed sweep files
def committed(name: str):
    base, s = load_sweep(CONFIGS / name)
    return base.validate(), s.validate(base)


@pytest.mark.parametrize("name", ["sweep_cpu.yaml", "native_tradeoff_cpu.yaml", "tuned_cpu.yaml",
                                  "ablation_norm_cpu.yaml", "ablation_maps_cpu.yaml",
                                  "native_budget_cpu.yaml", "native_long_cpu.yaml"])
def test_committed_cpu_sweeps_are_valid_and_share_runs(name):
    base, s = committed(name)
    main_base, main = committed("sweep_cpu.yaml")
    assert base == main_base  # same settings, so identical runs are found in each other's run dirs
    assert s.name == name.removesuffix(".yaml").removeprefix("sweep_")
    if name == "sweep_cpu.yaml":
        assert s.magnifications == (5.0, 2.5, 1.25, 0.625)
        assert list(s.methods) == ["alone", "fm", "fm_at", "kd"]
        assert s.mode == "upsampled" and not s.measures_cost and s.localised == ("alone", "fm", "fm_at")
    if name == "native_tradeoff_cpu.yaml":
        assert s.mode == "native" and s.measures_cost and s.seeds == main.seeds
        upsampled = {p.run_dir for p in plan(base, s) if p.method in ("alone", "up_fm_at")}
        assert upsampled <= {p.run_dir for p in plan(main_base, main)}  # the main sweep's Students
    if name == "native_budget_cpu.yaml":
        _, tradeoff = committed("native_tradeoff_cpu.yaml")
        runs = {p.method: p.run_dir for p in plan(base, s) if p.seed == 22}
        reused = {p.run_dir for p in plan(main_base, main)} | {p.run_dir for p in plan(base, tradeoff)}
        assert {runs["alone"], runs["keep1_alone"], runs["grid_alone"]} <= reused
        assert runs["keep1_e32"] not in reused and s.methods["keep1_e32"].epochs == 32
    if name == "native_long_cpu.yaml":  # the main sweep's alone and the budget study's keep1_e32, reused
        _, budget = committed("native_budget_cpu.yaml")
        runs = {p.method: p.run_dir for p in plan(base, s)}
        assert runs["alone"] in {p.run_dir for p in plan(main_base, main)}
        assert runs["keep1_e32"] in {p.run_dir for p in plan(base, budget)}
        assert {s.methods[m].epochs for m in ("keep1_e128", "sep2_e128")} == {128}
    if name == "tuned_cpu.yaml":
        assert list(s.methods) == ["alone", "fm", "fm_at", "tuned"] and s.seeds == main.seeds
        fixed = {p.run_dir for p in plan(base, s) if p.method != "tuned"}
        assert fixed <= {p.run_dir for p in plan(main_base, main)}
    if name.startswith("ablation"):
        assert s.magnifications == (2.5, 1.25)
        runs = {p.run_dir for p in plan(base, s)}
        assert {p.run_dir for p in plan(main_base, main) if p.method == "fm_at" and p.mag in (2.5, 1.25)
                and p.seed in s.seeds} <= runs  # the paper's setting is not trained twice
    if name == "ablation_norm_cpu.yaml":
        combos = {(m.loss["at_norm"], m.loss["at_distance"]) for m in s.methods.values()}
        assert combos == {(n, d) for n in ("minmax", "softmax", "l2", "none") for d in ("l2", "bce", "kl")}


def test_paper_sweep_asks_for_the_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base, s = load_sweep(CONFIGS / "sweep_paper.yaml")
    assert base.model.backbone == "vgg16" and base.data.image_size == 512 and base.data.source == "sicap"
    assert s.seeds == (22, 32, 43) and s.magnifications == (5.0, 2.5, 1.25, 0.625)
    with pytest.raises(SystemExit):
        sweep.main(["--config", str(CONFIGS / "sweep_paper.yaml")])
    err = capsys.readouterr().err
    assert "data.root" in err and "--sicap ROOT" in err
