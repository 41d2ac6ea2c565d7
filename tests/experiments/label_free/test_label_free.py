"""The label-free study: its unlabeled folders on disk (train + r x N pool images, nested, no test image),
the fixed step budget, a tiny end-to-end run then a restart that trains nothing, the committed config
and the errors of bad settings."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from tiny import tiny_experiment

from ird_tf.config import ConfigError, ExperimentConfig
from ird_tf.data.readers import read_unlabeled, slide_id
from ird_tf.errors import DataError
from ird_tf.experiments import label_free, sweep
from ird_tf.experiments.label_free import LabelFreeConfig, load_study, save_study
from ird_tf.runs import RunResult, load_splits, write_result

CONFIGS = Path(__file__).resolve().parents[3] / "experiments" / "configs"


def tiny_base(tmp_path: Path) -> ExperimentConfig:
    """48 patches of 64 px (24 in the Val1 training split), vgg_tiny, one epoch: seconds per run."""
    return tiny_experiment(tmp_path, size=64, per_slide=6, verbose=0)


def tiny_study(**kw) -> LabelFreeConfig:
    d = dict(name="tiny", magnifications=(2.5,), extra_ratios=(0.0, 1.0), seeds=(22,),
             methods={"kd_fmap_at": {"kd": 1.0, "fmap": 1.0, "at": 10.0, "at_classes": "target"}},
             references=("alone",))
    return LabelFreeConfig(**{**d, **kw})


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------- budget
def test_epochs_keep_the_labeled_step_budget():
    base = ExperimentConfig()
    base.data.batch_size, base.optim.epochs = 32, 5
    budget = label_free.budget_steps(base, 624)
    assert budget == 5 * 20
    sizes = [624 * (1 + r) for r in (0, 1, 2, 4)]
    epochs = [label_free.epochs_for(n, 32, budget) for n in sizes]
    assert epochs == [5, 3, 2, 1]
    for n, e in zip(sizes, epochs, strict=True):
        spe = math.ceil(n / 32)
        assert all(abs(e * spe - budget) <= abs(k * spe - budget) for k in range(1, 10))  # the closest
    assert label_free.epochs_for(10_000, 32, 100) == 1  # never 0 epochs


# ------------------------------------------------------------------------------------ unlabeled sets
def test_unlabeled_folders_hold_train_plus_nested_pool_images_and_no_test_image(tmp_path, capsys):
    base = tiny_base(tmp_path)
    study = tiny_study(extra_ratios=(0.0, 1.0, 2.0), pool_seed=7)
    splits = load_splits(base)
    n = len(splits.train)
    assert n == 24
    sets = label_free.prepare_sets(base, study, splits)
    train_names = sorted(Path(p).name for p in splits.train["path"])
    test_slides = {slide_id(p) for p in splits.test["path"]}
    test_hashes = {sha1(Path(p)) for p in splits.test["path"]}
    extras = {}
    for r, s in sets.items():
        assert s.folder.is_dir() and s.folder.parent == Path(base.data.cache_dir) / "label_free"
        files = sorted(p for p in s.folder.rglob("*") if p.is_file() and p.name != "manifest.json")
        assert len(files) == n + int(r * n) == s.size
        assert len(read_unlabeled(s.folder)) == s.size  # what the student reads
        assert sorted(p.name for p in (s.folder / "train").iterdir()) == train_names
        extra = sorted((s.folder / "extra").glob("*.jpg")) if r else []
        assert len(extra) == int(r * n)
        assert all(re.fullmatch(r"X7-P\d{3}-S\d{2}_\d{4}\.jpg", p.name) for p in extra)
        slides = {slide_id(p.name) for p in files}
        assert not slides & test_slides  # no test slide, hence no test patient
        assert not {sha1(p) for p in files} & test_hashes  # and no test image under another name
        extras[r] = [p.name for p in extra]
    assert extras[1.0] == extras[2.0][: n]  # nested: the first r x N pool images
    # the pool: new patients of the same benchmark settings (only seed and patient count differ)
    metas = {p.parent: json.loads(p.read_text())["config"]
             for p in Path(base.data.cache_dir).glob("synthetic_v1_*/dataset.json")}
    assert len(metas) == 2
    (pool_root, pool_cfg), = ((root, m) for root, m in metas.items() if m["seed"] == 7)
    labeled_cfg, = (m for m in metas.values() if m["seed"] == 2023)
    assert pool_cfg == {**labeled_cfg, "seed": 7, "patients": 8}
    linked = sets[2.0].folder / "extra" / extras[2.0][-1]
    assert sha1(linked) == sha1(pool_root / "images" / extras[2.0][-1].removeprefix("X7-"))

    stamps = {r: (s.folder / "manifest.json").stat().st_mtime_ns for r, s in sets.items()}
    capsys.readouterr()
    again = label_free.prepare_sets(base, study, splits)
    assert {r: (s.folder / "manifest.json").stat().st_mtime_ns for r, s in again.items()} == stamps
    assert "generating" not in capsys.readouterr().out  # pool and labeled data reused
    # a damaged folder is rebuilt
    victim = next((sets[1.0].folder / "extra").iterdir())
    victim.unlink()
    label_free.prepare_sets(base, study, splits)
    assert victim.is_file()


# -------------------------------------------------------------------------------------- end to end
@pytest.mark.large
def test_tiny_study_writes_table_csv_png_then_reuses_every_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base, study = tiny_base(tmp_path), tiny_study()
    config = save_study(tmp_path / "tiny.yaml", base, study)
    # the labeled reference finished earlier (as a sweep run would have): found in its run dir, not retrained
    ref, = (p for p in label_free.plan(base, study, 24) if p.group == "reference")
    ref.run_dir.mkdir(parents=True)
    write_result(RunResult(ref.run_dir, {"test": {"balanced_accuracy": 0.625, "kappa": 0.5}}, 2.0))
    assert label_free.main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "run 1/4 10x teacher seed 22: training" in out
    assert f"run 2/4 2.5x alone seed 22: reused ({ref.run_dir})" in out
    assert "run 4/4 2.5x kd_fmap_at +1x extra seed 22: training" in out
    assert "3 trained, 1 reused, 0 failed" in out

    results = tmp_path / "experiments/results"
    md = (results / "label_free_tiny.md").read_text()
    assert f"- Command: `python -m ird_tf.experiments.label_free --config {config}`" in md
    assert re.search(r"- Commit: `(unknown|[0-9a-f]{4,})`", md) and re.search(r"- Run time: \d+\.\d min", md)
    assert "Fixed step budget" in md and "1 epochs x 3 steps = 3 steps" in md
    main_table, paired = md.split("\n### Paired differences", 1)
    table = [line for line in main_table.splitlines() if line.startswith("| ")]
    # one seed: the paired differences against the labeled alone student have no interval
    assert re.search(r"\| 2\.5x \| kd_fmap_at \+1x \| 1 \| [+-]\d\.\d{3} \(1 seed\) \|", paired)
    assert (results / "label_free_tiny_paired.png").is_file()
    assert [row.split(" | ")[:3] for row in table[1:]] == [
        ["| 10x", "teacher", "24 labeled"], ["| 2.5x", "alone", "24 labeled"],
        ["| 2.5x", "kd_fmap_at", "24 unlabeled (+0x extra)"],
        ["| 2.5x", "kd_fmap_at", "48 unlabeled (+1x extra)"]]
    assert all(re.search(r"\d\.\d{3} ± \d\.\d{3}", row) for row in table[1:])
    assert "| 2.5x | alone | 24 labeled | 1 | 3 | 1/1 | 0.625 ± 0.000 | 0.500 ± 0.000 |" in table

    rows = pd.read_csv(results / "label_free_tiny.csv", comment="#")
    assert rows["group"].tolist() == ["teacher", "reference", "label_free", "label_free"]
    lf = rows[rows["group"] == "label_free"]
    assert lf["unlabeled_images"].tolist() == [24, 48] and lf["extra_images"].tolist() == [0, 24]
    assert lf["epochs"].tolist() == [1, 1] and lf["train_steps"].tolist() == [3, 6]
    assert rows["balanced_accuracy_mean"].between(0, 1).all() and rows["kappa_mean"].between(-1, 1).all()
    assert (rows["seeds_done"] == 1).all()
    with Image.open(results / "label_free_tiny.png") as im:
        assert im.format == "PNG" and im.width > 300 and np.asarray(im.convert("L")).std() > 5

    # the label-free runs are `distill --unlabeled DIR` runs: no CE, the folder, label-free logs
    for run in lf["runs"]:
        run_dir = tmp_path / "runs" / "students" / run
        cfg = ExperimentConfig.load(run_dir / "config.yaml")
        assert cfg.loss.ce == 0 and cfg.loss.at_classes == "target"
        assert Path(cfg.data.unlabeled).parent == tmp_path / "cache" / "label_free"
        assert "agreement" in pd.read_csv(run_dir / "history.csv").columns
    results_json = sorted((tmp_path / "runs").glob("*/*/result.json"))
    assert len(results_json) == 4
    stamps = [p.stat().st_mtime_ns for p in results_json]

    assert label_free.main(["--config", str(config)]) == 0
    again = capsys.readouterr().out
    assert again.count(": reused (") == 4 and ": training (" not in again
    assert "0 trained, 4 reused, 0 failed" in again and "[fit]" not in again
    assert [p.stat().st_mtime_ns for p in results_json] == stamps
    assert label_free.main(["--config", str(config), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "4/4 runs finished" in dry and "[48 unlabeled images, 1 epochs = 6 steps]: finished" in dry


# ------------------------------------------------------------------------------------------ config
def test_committed_config_shares_teacher_and_references_with_the_sweep():
    base, study = load_study(CONFIGS / "label_free_cpu.yaml")
    base.validate()
    study.validate(base)
    main_base, main = sweep.load_sweep(CONFIGS / "sweep_cpu.yaml")
    assert base == main_base
    assert study.magnifications == (1.25, 0.625) and study.extra_ratios == (0, 1, 2, 4)
    assert study.methods == {"kd_fmap": {"kd": 1.0, "fmap": 1.0},
                             "kd_fmap_at": {"kd": 1.0, "fmap": 1.0, "at": 10.0, "at_classes": "target"}}
    planned = label_free.plan(base, study, 624)
    ours = {p.run_dir for p in planned if p.group in ("teacher", "reference")}
    theirs = {p.run_dir for p in sweep.plan(main_base, main)
              if p.method == "teacher" or (p.method in ("alone", "fm_at") and p.mag in (1.25, 0.625))}
    assert ours == theirs  # trained once, whichever command runs first
    lf = [p for p in planned if p.group == "label_free"]
    assert len(lf) == 5 * 2 * 2 * 4 and len({p.run_dir for p in lf}) == len(lf)
    assert {p.cfg.loss.ce for p in lf} == {0.0}
    assert {p.uset.ratio: p.cfg.optim.epochs for p in lf} == {0: 8, 1: 4, 2: 3, 4: 2}


def write_bad(tmp_path: Path, change: dict) -> Path:
    d = {**tiny_base(tmp_path).to_dict(), "label_free": {**tiny_study().to_dict(), **change}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize("change, named", [
    ({"ratios": [1]}, "label_free.ratios"),
    ({"extra_ratios": [0, -1]}, "label_free.extra_ratios"),
    ({"extra_ratios": ["x2"]}, "label_free.extra_ratios[0]"),
    ({"extra_ratios": [1, 1]}, "label_free.extra_ratios"),
    ({"magnifications": [3]}, "label_free.magnifications"),
    ({"pool_seed": 2023}, "label_free.pool_seed"),
    ({"seeds": []}, "label_free.seeds"),
    ({"methods": {"kd": {"ce": 1.0, "kd": 1.0}}}, "label_free.methods.kd.ce"),
    ({"methods": {"kd": {"kd": 1.0, "alpha": 1}}}, "label_free.methods.kd.alpha"),
    ({"methods": {"kd": {"kd": 1.0, "at_norm": "max"}}}, "label_free.methods.kd: loss.at_norm"),
    ({"methods": {"alone": {"kd": 1.0}}}, "label_free.methods.alone"),
    ({"references": ["kd_fmap"]}, "label_free.references"),
    ({"mode": "tiny"}, "label_free.mode"),
])
def test_bad_setting_names_the_key(tmp_path, capsys, change, named):
    with pytest.raises(SystemExit) as exit_info:
        label_free.main(["--config", str(write_bad(tmp_path, change)), "--dry-run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err, err


def test_missing_section_seed_count_and_real_data_without_pool(tmp_path, capsys):
    plain = tiny_base(tmp_path).save(tmp_path / "plain.yaml")
    with pytest.raises(ConfigError, match="'label_free:' section"):
        load_study(plain)
    good = save_study(tmp_path / "good.yaml", tiny_base(tmp_path), tiny_study())
    with pytest.raises(SystemExit):
        label_free.main(["--config", str(good), "--seeds", "2", "--dry-run"])
    assert "--seeds 2" in capsys.readouterr().err
    base = tiny_base(tmp_path)
    base.data = replace(base.data, source="sicap", root=str(tmp_path))
    with pytest.raises(ConfigError, match=r"label_free\.extra_ratios.*data\.source='sicap'.*pool_dir"):
        tiny_study().validate(base)
    tiny_study(extra_ratios=(0.0,)).validate(base)  # the training images alone need no pool
    tiny_study(pool_dir=str(tmp_path)).validate(base)  # or a folder of unlabeled images


def test_pool_dir_supplies_the_extra_images_in_sorted_order(tmp_path):
    base = tiny_base(tmp_path)
    splits = load_splits(base)
    pool = tmp_path / "pool"
    for i in range(30):  # more than needed; nested under sub-folders like real slide exports
        folder = pool / f"slide{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((64, 64, 3), i, np.uint8)).save(folder / f"p{i:02d}.png")
    study = tiny_study(extra_ratios=(0.0, 1.0), pool_dir=str(pool))
    sets = label_free.prepare_sets(base, study, splits)
    expected = sorted(str(p) for p in pool.rglob("*.png"))[:24]
    extra = sorted((sets[1.0].folder / "extra").iterdir())
    assert [p.name for p in extra] == sorted(f"X{study.pool_seed}-{Path(p).name}" for p in expected)
    assert {sha1(p) for p in extra} == {sha1(Path(p)) for p in expected}
    benchmark_only = list(Path(base.data.cache_dir).glob("synthetic_v1_*/dataset.json"))
    assert len(benchmark_only) == 1  # no synthetic pool was generated
    with pytest.raises(DataError, match=r"label_free\.pool_dir .* holds 30 images; the largest extra "
                                        r"ratio needs 48"):
        label_free.prepare_sets(base, tiny_study(extra_ratios=(2.0,), pool_dir=str(pool)), splits)


def test_paper_preset_on_sicap_with_a_pool(tmp_path):
    config = save_study(tmp_path / "good.yaml", tiny_base(tmp_path), tiny_study())
    args = label_free.build_parser().parse_args(
        ["--config", str(config), "--preset", "paper", "--sicap", str(tmp_path), "--pool", str(tmp_path)])
    base, study, out_name = label_free.resolve(args)
    assert out_name == "label_free_tiny_paper"
    assert base.model.backbone == "vgg16" and base.data.image_size == 512
    assert base.data.source == "sicap" and base.data.root == str(tmp_path)
    assert study.pool_dir == str(tmp_path)
