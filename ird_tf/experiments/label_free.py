"""Label-free distillation (DiPalma et al. 2021): student accuracy against the size of the unlabeled set.

    python -m ird_tf.experiments.label_free --config experiments/configs/label_free_cpu.yaml \
        [--seeds N] [--quick] [--dry-run] [--preset paper --sicap ROOT --pool DIR]

The config file holds a complete experiment config (the ``ExperimentConfig`` sections, the same as
``sweep_cpu.yaml`` so the teacher and the labeled reference students are the sweep's own runs) plus a
``label_free:`` section::

    label_free:
      name: cpu                        # -> experiments/results/label_free_cpu.md, .csv and .png
      magnifications: [1.25, 0.625]
      extra_ratios: [0, 1, 2, 4]       # extra unlabeled images, x the fold's labeled training count
      pool_seed: 2024                  # seed of the extra synthetic pool (not the benchmark's)
      pool_dir: null                   # or a folder of unlabeled images as the extra pool (any source)
      mode: upsampled
      seeds: [22, 32, 43]
      methods:                         # name -> loss term weights and options; no ce (there are no labels)
        kd_fmap: {kd: 1, fmap: 1}
        kd_fmap_at: {kd: 1, fmap: 1, at: 10, at_classes: target}
      references: [alone, fm_at]       # labeled students of the sweep (ird_tf.experiments.sweep methods)

Unlabeled set of ratio r: the fold's N training images (their labels unused) plus the first r x N
images of one extra pool, in file order, so the sets are nested. The pool is the synthetic benchmark
with the file's settings and only another seed and patient count: new patients from the same
distribution, never the test patients. Its images are renamed ``X<pool_seed>-P...`` so no slide id
collides with the benchmark's. On SICAPv2 or class folders the pool is ``pool_dir`` (``--pool DIR``):
any folder of unlabeled patches at the teacher's magnification, read recursively in sorted order (for
instance patches of other slides from the same lab); it must not hold test images. Each set is a
folder of hard links (copies across file systems) under ``<data.cache_dir>/label_free/``, written
once and reused, and given to the student as ``data.unlabeled``: the run is exactly ``distill
--unlabeled DIR`` (CE off, labels never read in training; the best epoch is still chosen on the
labeled validation split, as for every run).

Fixed step budget: a larger unlabeled set must not win by training longer. Each label-free run gets
the whole number of epochs (at least 1) that brings epochs x steps-per-epoch closest to the labeled
runs' ``optim.epochs`` x ceil(N / batch); the tables give each row's epochs and steps.

Every run lives in the run directory ``distill``/``sweep`` would use for the same settings, so
finished runs (including the sweep's teacher and reference students) are reused and killed runs
resume. Tables and plot are rewritten after every run trained, and at the end.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ird_tf.config import MODES, PAPER_SEEDS, PRESETS, ConfigError, ExperimentConfig, preset
from ird_tf.data.errors import DataError
from ird_tf.experiments.runs import digest, read_result, student_dir, teacher_dir
from ird_tf.experiments.study import (
    as_integer,
    as_list,
    as_number,
    execute,
    fmt_time,
    git_commit,
    select_seeds,
)
from ird_tf.experiments.sweep import (
    LOSS_FIELDS,
    NAME_RE,
    Method,
    SweepConfig,
    default_methods,
    describe,
    run_config,
)

RESULTS_DIR = "experiments/results"
SECTION = "label_free"
METRICS = (("balanced_accuracy", "test bal. acc."), ("kappa", "test kappa"))


def default_label_free_methods() -> dict[str, dict[str, Any]]:
    return {"kd_fmap": {"kd": 1.0, "fmap": 1.0},
            "kd_fmap_at": {"kd": 1.0, "fmap": 1.0, "at": 10.0, "at_classes": "target"}}


# --------------------------------------------------------------------------------------------- config
@dataclass
class LabelFreeConfig:
    """The ``label_free:`` section (see the module docstring)."""

    name: str = "label_free"
    magnifications: tuple[float, ...] = (1.25, 0.625)
    extra_ratios: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    pool_seed: int = 2024
    pool_dir: str | None = None
    mode: str = "upsampled"
    seeds: tuple[int, ...] = PAPER_SEEDS
    methods: dict[str, dict[str, Any]] = field(default_factory=default_label_free_methods)
    references: tuple[str, ...] = ("alone", "fm_at")

    def method(self, name: str) -> Method:
        return Method("distill", dict(self.methods[name]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "magnifications": [float(m) for m in self.magnifications],
                "extra_ratios": [float(r) for r in self.extra_ratios], "pool_seed": int(self.pool_seed),
                "pool_dir": self.pool_dir, "mode": self.mode, "seeds": [int(s) for s in self.seeds],
                "methods": {n: dict(m) for n, m in self.methods.items()}, "references": list(self.references)}

    @classmethod
    def from_dict(cls, d: Any) -> LabelFreeConfig:
        """Parses the section; an unknown key or a value of the wrong type names the key."""
        if not isinstance(d, dict):
            raise ConfigError(f"{SECTION}: expected a mapping of settings, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s) {[f'{SECTION}.{k}' for k in unknown]}; known: {known}")
        kw: dict[str, Any] = {}
        if "name" in d:
            kw["name"] = str(d["name"])
        for key in ("magnifications", "extra_ratios"):
            if key in d:
                values = as_list(f"{SECTION}.{key}", d[key])
                kw[key] = tuple(as_number(f"{SECTION}.{key}[{i}]", v) for i, v in enumerate(values))
        if "seeds" in d:
            kw["seeds"] = tuple(as_integer(f"{SECTION}.seeds[{i}]", v)
                                for i, v in enumerate(as_list(f"{SECTION}.seeds", d["seeds"])))
        if "pool_seed" in d:
            kw["pool_seed"] = as_integer(f"{SECTION}.pool_seed", d["pool_seed"])
        if d.get("pool_dir") is not None:
            kw["pool_dir"] = str(d["pool_dir"])
        if "mode" in d:
            kw["mode"] = d["mode"]
        if "methods" in d:
            if not isinstance(d["methods"], dict):
                raise ConfigError(f"{SECTION}.methods={d['methods']!r}: expected a mapping name -> "
                                  "loss settings")
            methods = {}
            for name, loss in d["methods"].items():
                loss = {} if loss is None else loss
                if not isinstance(loss, dict):
                    raise ConfigError(f"{SECTION}.methods.{name}={loss!r}: expected a mapping of loss "
                                      "settings")
                bad = sorted(set(loss) - set(LOSS_FIELDS))
                if bad:
                    raise ConfigError(f"unknown setting(s) {[f'{SECTION}.methods.{name}.{k}' for k in bad]}; "
                                      f"known: {list(LOSS_FIELDS)}")
                methods[str(name)] = dict(loss)
            kw["methods"] = methods
        if "references" in d:
            kw["references"] = tuple(str(r) for r in as_list(f"{SECTION}.references", d["references"] or []))
        return cls(**kw)

    def validate(self, base: ExperimentConfig) -> LabelFreeConfig:
        """Checks every setting against the base experiment; errors name the ``label_free.`` key."""
        from ird_tf.losses import get_term

        if not NAME_RE.match(self.name):
            raise ConfigError(f"{SECTION}.name={self.name!r}: expected letters, digits and _ . + - "
                              "(a file name)")
        if self.mode not in MODES:
            raise ConfigError(f"{SECTION}.mode={self.mode!r} is not accepted; expected one of {list(MODES)}")
        for key, values in (("magnifications", self.magnifications), ("extra_ratios", self.extra_ratios),
                            ("seeds", self.seeds), ("methods", list(self.methods))):
            if not values:
                raise ConfigError(f"{SECTION}.{key} is empty; expected at least one")
            if len(set(values)) != len(values):
                raise ConfigError(f"{SECTION}.{key}={list(values)} has duplicates")
        if min(self.extra_ratios) < 0:
            raise ConfigError(f"{SECTION}.extra_ratios={list(self.extra_ratios)}: expected numbers >= 0")
        if max(self.extra_ratios) > 0 and self.pool_dir is None:
            if base.data.source != "synthetic":
                raise ConfigError(f"{SECTION}.extra_ratios={list(self.extra_ratios)}: with data.source="
                                  f"{base.data.source!r} the extra unlabeled images come from "
                                  f"{SECTION}.pool_dir (--pool DIR, a folder of unlabeled patches), which "
                                  "is not set; or use extra_ratios: [0]")
            if self.pool_seed == base.data.synthetic.seed:
                raise ConfigError(f"{SECTION}.pool_seed={self.pool_seed} is the benchmark's own seed "
                                  "(data.synthetic.seed): the pool would repeat its patients; pick another")
        for mag in self.magnifications:
            try:
                replace(base.data, student_mag=mag, mode=self.mode).validate()
            except ConfigError as e:
                raise ConfigError(f"{SECTION}.magnifications: {mag:g} is not accepted: {e}") from e
        for name in self.methods:
            key = f"{SECTION}.methods.{name}"
            if not NAME_RE.match(name) or name == "teacher" or name in self.references:
                raise ConfigError(f"{key}: not a usable method name (letters, digits, _ . + -; not 'teacher' "
                                  "nor a reference's name)")
            loss = self.method(name).loss_config(base.loss)
            try:
                loss.validate()
            except ConfigError as e:
                raise ConfigError(f"{key}: {e}") from e
            needs = [t for t in loss.weights() if get_term(t).needs_labels]
            if needs:
                raise ConfigError(f"{key}.{needs[0]}={getattr(loss, needs[0]):g}: label-free students have "
                                  f"no labels; the {needs} term(s) must be 0 (or left out)")
        builtin = default_methods()
        unknown = [r for r in self.references if r not in builtin]
        if unknown:
            raise ConfigError(f"{SECTION}.references: {unknown} are not sweep methods {list(builtin)}")
        return self


def load_study(path: str | Path) -> tuple[ExperimentConfig, LabelFreeConfig]:
    """(base experiment config, label-free settings) from a study file (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"label-free config file {path} does not exist")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"label-free config file {path} is not valid YAML: {e}") from e
    if not isinstance(d, dict) or SECTION not in d:
        raise ConfigError(f"label-free config file {path}: expected the experiment sections and a "
                          f"'{SECTION}:' section")
    section = d.pop(SECTION)
    try:
        return ExperimentConfig.from_dict(d), LabelFreeConfig.from_dict(section)
    except ConfigError as e:
        raise ConfigError(f"label-free config file {path}: {e}") from e


def save_study(path: str | Path, base: ExperimentConfig, study: LabelFreeConfig, header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({**base.to_dict(), SECTION: study.to_dict()}, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------ unlabeled sets
@dataclass(frozen=True)
class UnlabeledSet:
    """The fold's ``n_train`` training images plus the first ``n_extra`` pool images, in ``folder``."""

    ratio: float
    n_train: int
    n_extra: int
    folder: Path

    @property
    def size(self) -> int:
        return self.n_train + self.n_extra


def budget_steps(base: ExperimentConfig, n_train: int) -> int:
    """Training steps of a labeled student: ``optim.epochs`` x ceil(n_train / batch)."""
    return base.optim.epochs * math.ceil(n_train / base.data.batch_size)


def epochs_for(n_images: int, batch_size: int, budget: int) -> int:
    """Whole epochs (>= 1) over ``n_images`` whose steps come closest to ``budget`` (halves round up)."""
    return max(1, math.floor(budget / math.ceil(n_images / batch_size) + 0.5))


def _set_identity(base: ExperimentConfig, study: LabelFreeConfig) -> dict:
    from ird_tf.data.synthetic import GENERATOR_REVISION

    d = base.data
    synthetic = {**asdict(d.synthetic), "revision": GENERATOR_REVISION} if d.source == "synthetic" else None
    return {"source": d.source, "root": str(Path(d.root).resolve()) if d.root else None, "fold": d.fold,
            "classes": d.class_names, "synthetic": synthetic, "pool_seed": study.pool_seed,
            **({"pool_dir": str(Path(study.pool_dir).resolve())} if study.pool_dir else {})}


def unlabeled_sets(base: ExperimentConfig, study: LabelFreeConfig, n_train: int) -> dict[float, UnlabeledSet]:
    """Where each ratio's set lives (a name from the data, fold, pool seed and size; nothing written)."""
    out = {}
    for r in study.extra_ratios:
        n_extra = int(round(r * n_train))
        ident = {**_set_identity(base, study), "n_extra": n_extra}
        folder = Path(base.data.cache_dir) / "label_free" / f"{base.data.fold}_x{r:g}_{digest(ident)}"
        out[r] = UnlabeledSet(r, n_train, n_extra, folder)
    return out


def pool_config(base: ExperimentConfig, study: LabelFreeConfig, n_images: int):
    """The benchmark's settings with the pool seed and enough patients for ``n_images`` (the generator
    also needs a test patient and one per fold)."""
    from ird_tf.data.synthetic import patient_split

    syn = base.data.synthetic
    patients = max(1, math.ceil(n_images / (syn.slides_per_patient * syn.patches_per_slide)))
    while True:
        cfg = replace(syn, seed=study.pool_seed, patients=patients)
        try:
            patient_split(cfg)
            return cfg
        except ConfigError:
            patients += 1


def pool_images(base: ExperimentConfig, study: LabelFreeConfig, n_images: int) -> list[Path]:
    """The extra pool's images in file order: ``pool_dir``'s (sorted), or the synthetic pool's
    (patient, slide, patch), generated on first use."""
    from ird_tf.data.readers import read_unlabeled
    from ird_tf.data.synthetic import ensure_dataset

    if study.pool_dir is not None:
        images = [Path(p) for p in read_unlabeled(study.pool_dir)["path"]]
        if len(images) < n_images:
            raise DataError(f"{SECTION}.pool_dir {study.pool_dir} holds {len(images)} images; the largest "
                            f"extra ratio needs {n_images}")
        return images
    root = ensure_dataset(Path(base.data.cache_dir), pool_config(base, study, n_images))
    images = sorted((root / "images").glob("*.jpg"))
    if len(images) < n_images:
        raise DataError(f"extra pool {root} holds {len(images)} images; {n_images} needed")
    return images


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def materialise(uset: UnlabeledSet, train_paths: Sequence[str], pool: Sequence[Path], pool_seed: int) -> Path:
    """Writes ``uset.folder``: ``train/`` (the training images, same relative names) and ``extra/``
    (the first ``n_extra`` pool images, renamed ``X<pool_seed>-<name>``). A folder whose
    ``manifest.json`` lists the same files is reused; otherwise it is built aside and renamed in place."""
    if len(train_paths) != uset.n_train or len(pool) < uset.n_extra:
        raise ValueError(f"{uset.folder}: {len(train_paths)} training / {len(pool)} pool images for a set of "
                         f"{uset.n_train} + {uset.n_extra}")
    common = Path(os.path.commonpath([str(Path(p).parent) for p in train_paths]))
    entries = [(Path("train") / Path(p).relative_to(common), Path(p)) for p in train_paths]
    entries += [(Path("extra") / f"X{pool_seed}-{p.name}", p) for p in pool[: uset.n_extra]]
    files = sorted(str(dst) for dst, _ in entries)
    if len(set(files)) != len(files):
        raise ValueError(f"{uset.folder}: two images would get the same name")
    manifest = uset.folder / "manifest.json"
    try:
        same = json.loads(manifest.read_text())["files"] == files
        if same and all((uset.folder / f).is_file() for f in files):
            return uset.folder
    except (OSError, ValueError, KeyError):
        pass
    tmp = uset.folder.with_name(f"{uset.folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for dst, src in entries:
        (tmp / dst).parent.mkdir(parents=True, exist_ok=True)
        _link(src, tmp / dst)
    (tmp / "manifest.json").write_text(json.dumps(
        {"ratio": uset.ratio, "n_train": uset.n_train, "n_extra": uset.n_extra, "files": files}, indent=1))
    if uset.folder.exists():
        shutil.rmtree(uset.folder)  # an unfinished or stale set under our own name
    tmp.rename(uset.folder)
    return uset.folder


def prepare_sets(base: ExperimentConfig, study: LabelFreeConfig, splits) -> dict[float, UnlabeledSet]:
    """Every ratio's folder, written if missing (the pool is generated once, for the largest ratio)."""
    sets = unlabeled_sets(base, study, len(splits.train))
    n_pool = max(s.n_extra for s in sets.values())
    pool = pool_images(base, study, n_pool) if n_pool else []
    for s in sets.values():
        materialise(s, list(splits.train["path"]), pool, study.pool_seed)
    return sets


# ----------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Planned:
    """One run: ``group`` teacher / reference (labeled sweep student) / label_free."""

    group: str
    method: str
    kind: str
    mag: float
    seed: int
    cfg: ExperimentConfig = field(compare=False)
    run_dir: Path = field(compare=False)
    uset: UnlabeledSet | None = None

    def label(self) -> str:
        extra = f" +{self.uset.ratio:g}x extra" if self.uset is not None else ""
        return f"{self.mag:g}x {self.method}{extra} seed {self.seed}"


def plan(base: ExperimentConfig, study: LabelFreeConfig, n_train: int) -> list[Planned]:
    """Per seed: the teacher; per magnification the references, then every method x ratio."""
    refs = SweepConfig(name=study.name, magnifications=study.magnifications, seeds=study.seeds,
                       methods={r: default_methods()[r] for r in study.references}, mode=study.mode)
    sets = unlabeled_sets(base, study, n_train)
    budget = budget_steps(base, n_train)
    out = []
    for seed in study.seeds:
        tcfg = ExperimentConfig(base.data, base.model, base.loss, base.optim,
                                replace(base.run, seed=int(seed), name=None))
        out.append(Planned("teacher", "teacher", "teacher", float(base.data.teacher_mag), seed, tcfg,
                           teacher_dir(tcfg)))
        for mag in study.magnifications:
            for name, method in refs.methods.items():
                cfg = run_config(base, refs, mag, name, seed)
                out.append(Planned("reference", name, method.kind, float(mag), seed, cfg,
                                   student_dir(cfg, method.kind)))
            for name in study.methods:
                for ratio in study.extra_ratios:
                    s = sets[ratio]
                    cfg = ExperimentConfig(
                        data=replace(base.data, student_mag=float(mag), mode=study.mode,
                                     unlabeled=str(s.folder)),
                        model=base.model,
                        loss=study.method(name).loss_config(base.loss),
                        optim=replace(base.optim, epochs=epochs_for(s.size, base.data.batch_size, budget)),
                        run=replace(base.run, seed=int(seed), name=None),
                    ).validate()
                    out.append(Planned("label_free", name, "distill", float(mag), seed, cfg,
                                       student_dir(cfg, "distill"), s))
    return out


# ------------------------------------------------------------------------------------------ run it
def say(msg: str) -> None:
    print(f"[label_free {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_study(base: ExperimentConfig, study: LabelFreeConfig, *, command: str, results_dir: Path,
              out_name: str) -> int:
    """Runs (or reuses) every planned run, rewriting tables and plot after each one trained and at the
    end; 0 when all finished."""
    from ird_tf.experiments.runs import load_splits, setup_runtime

    start = time.time()
    strategy = setup_runtime(base)
    splits = load_splits(base)
    n_train = len(splits.train)
    sets = prepare_sets(base, study, splits)
    planned = plan(base, study, n_train)
    say(f"study {study.name!r}: {len(planned)} runs; {n_train} labeled training images; unlabeled sets "
        + ", ".join(f"+{r:g}x: {s.size} images" for r, s in sets.items())
        + f"; step budget {budget_steps(base, n_train)}; outputs {results_dir / out_name}.md/.csv/.png")
    header = dict(command=command, commit=git_commit(), start=start, trained=0, reused=0, failed=[])
    for i, p in enumerate(planned, 1):
        tag = f"{i}/{len(planned)} {p.label()}"
        _, found, failure = execute(p, splits, strategy, tag=tag, start=start, say=say)
        if failure:
            header["failed"].append(failure)
            continue
        header["reused" if found else "trained"] += 1
        if not found:
            write_outputs(base, study, planned, n_train, results_dir, out_name, header)
    md, _, _ = write_outputs(base, study, planned, n_train, results_dir, out_name, header)
    say(f"finished in {fmt_time(time.time() - start)}: {header['trained']} trained, {header['reused']} "
        f"reused, {len(header['failed'])} failed; table {md}")
    print(md.read_text(), flush=True)
    return 1 if header["failed"] else 0


# ------------------------------------------------------------------------------------------- tables
def collect(base: ExperimentConfig, study: LabelFreeConfig, planned: list[Planned], n_train: int
            ) -> list[dict]:
    """One record per row: teacher, then per magnification the references and method x ratio."""
    from ird_tf.evaluation.metrics import summarize_seeds

    batch = base.data.batch_size
    groups: dict[tuple, list[Planned]] = {}
    for p in planned:
        key = (p.mag, p.method, None if p.uset is None else p.uset.ratio)
        groups.setdefault(key, []).append(p)
    order = sorted(groups, key=lambda k: (k[0] != base.data.teacher_mag, -k[0]))  # stable: plan order kept
    records = []
    for key in order:
        runs = groups[key]
        first = runs[0]
        per_seed, dirs, seconds = [], [], 0.0
        for p in runs:
            result = read_result(p.run_dir)
            if result is not None:
                per_seed.append(result.metrics.get("test", {}))
                dirs.append(p.run_dir.name)
                seconds += result.seconds
        epochs = first.cfg.optim.teacher_epochs if first.kind == "teacher" else first.cfg.optim.epochs
        n_images = first.uset.size if first.uset else n_train
        records.append({
            "magnification": first.mag, "method": first.method, "group": first.group,
            "extra_ratio": None if first.uset is None else first.uset.ratio,
            "unlabeled_images": first.uset.size if first.uset else None,
            "extra_images": first.uset.n_extra if first.uset else None,
            "epochs": epochs, "train_steps": epochs * math.ceil(n_images / batch),
            "seeds_done": len(per_seed), "seeds_planned": len(runs),
            "summary": summarize_seeds(per_seed) if per_seed else {}, "runs": dirs, "seconds": seconds,
        })
    return records


def _fmt_stat(s: dict | None) -> str:
    return "" if not s or s.get("mean") is None else f"{s['mean']:.6g}"


def write_outputs(base: ExperimentConfig, study: LabelFreeConfig, planned: list[Planned], n_train: int,
                  results_dir: Path, out_name: str, header: dict) -> tuple[Path, Path, Path]:
    """``<out_name>.md``, ``.csv`` and ``.png`` under ``results_dir`` (each atomically replaced)."""
    from ird_tf.evaluation.metrics import format_table

    records = collect(base, study, planned, n_train)
    elapsed = time.time() - header["start"]
    recorded = sum(r["seconds"] for r in records)
    finished = sum(r["seeds_done"] for r in records)
    d, o = base.data, base.optim
    budget = budget_steps(base, n_train)
    refs = {r: default_methods()[r] for r in study.references}
    lines = [
        f"# Label-free distillation `{study.name}`: test balanced accuracy and quadratic kappa against the "
        "unlabeled-set size, mean ± std over seeds",
        "",
        f"- Command: `{header['command']}`",
        f"- Commit: `{header['commit']}`",
        f"- Run time: {elapsed / 60:.1f} min in the last invocation ({header['trained']} runs trained, "
        f"{header['reused']} reused); {recorded / 60:.1f} min of training recorded by the finished runs",
        f"- Progress: {finished}/{len(planned)} runs finished (updated {time.strftime('%Y-%m-%d %H:%M:%S')})",
        f"- Settings: {d.source} data (fold {d.fold}), {base.model.backbone}, {d.image_size} px at "
        f"{d.teacher_mag:g}x, student input {study.mode}, batch {d.batch_size}, {o.name} lr "
        f"{o.learning_rate:g}, seeds {list(study.seeds)}; teacher {o.teacher_epochs} epochs",
        f"- Unlabeled set of ratio r: the fold's {n_train} training images without their labels + the first "
        f"r x {n_train} images of an extra synthetic pool (benchmark settings, seed {study.pool_seed}: new "
        "patients, none of the test split); nested sets; labels never used in training, best epoch chosen "
        "on the labeled validation split as for every run",
        "- Fixed step budget: each label-free run trains the whole number of epochs whose steps come "
        f"closest to the labeled runs' {o.epochs} epochs x {math.ceil(n_train / d.batch_size)} steps = "
        f"{budget} steps (columns epochs, steps)",
        "- Label-free methods: " + "; ".join(f"`{n}` = {describe(study.method(n), base.loss)}"
                                             for n in study.methods),
        "- Labeled references (the sweep's runs): " + "; ".join(f"`{n}` = {describe(m, base.loss)}"
                                                               for n, m in refs.items()),
    ]
    if header.get("failed"):
        lines.append("- FAILED runs: " + "; ".join(header["failed"]))
    columns = ["magnification", "method", "training data", "epochs", "steps", "seeds",
               *(label for _, label in METRICS)]
    rows = []
    for r in records:
        data = (f"{r['unlabeled_images']} unlabeled (+{r['extra_ratio']:g}x extra)"
                if r["group"] == "label_free" else f"{n_train} labeled")
        row = {"magnification": f"{r['magnification']:g}x", "method": r["method"], "training data": data,
               "epochs": r["epochs"], "steps": r["train_steps"],
               "seeds": f"{r['seeds_done']}/{r['seeds_planned']}"}
        for k, label in METRICS:
            row[label] = r["summary"].get(k)
        rows.append(row)
    md = "\n".join(lines) + "\n\n" + format_table(rows, columns, digits=3) + "\n"

    buf = io.StringIO()
    buf.write(f"# command: {header['command']}\n# commit: {header['commit']}\n"
              f"# run_time_min: {elapsed / 60:.2f}\n# recorded_training_min: {recorded / 60:.2f}\n"
              f"# labeled_train_images: {n_train}\n# step_budget: {budget}\n")
    csv_cols = ["magnification", "method", "group", "extra_ratio", "unlabeled_images", "extra_images",
                "epochs", "train_steps", "seeds_done", "seeds_planned"]
    csv_cols += [f"{k}_{stat}" for k, _ in METRICS for stat in ("mean", "std")] + ["runs"]
    writer = csv.DictWriter(buf, fieldnames=csv_cols, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {c: ("" if r.get(c) is None else r[c]) for c in csv_cols[:10]}
        row["runs"] = ";".join(r["runs"])
        for k, _ in METRICS:
            s = r["summary"].get(k)
            row[f"{k}_mean"] = _fmt_stat(s)
            row[f"{k}_std"] = "" if not s or s.get("std") is None else f"{s['std']:.6g}"
        writer.writerow(row)

    results_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path, png_path = (results_dir / f"{out_name}{ext}" for ext in (".md", ".csv", ".png"))
    for path, text in ((md_path, md), (csv_path, buf.getvalue())):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    plot_curves(csv_path, png_path, title=f"Label-free distillation `{study.name}` (fixed step budget)")
    return md_path, csv_path, png_path


def plot_curves(csv_path: Path, png_path: Path, title: str = "") -> Path:
    """Accuracy (top) and kappa (bottom) against the unlabeled-set size, one column per magnification,
    one line per label-free method (error bars: std when > 1 seed), the teacher and the labeled
    references as horizontal lines. Reads the CSV this module writes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path, comment="#")
    mags = sorted({m for m in df.loc[df["group"] != "teacher", "magnification"]}, reverse=True)
    fig, axes = plt.subplots(2, len(mags), figsize=(5.2 * len(mags), 7.5), squeeze=False)
    styles = iter(("--", ":", "-.", (0, (5, 1)), (0, (1, 3))))
    ref_style = {"teacher": ("black", "--")}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name in df.loc[df["group"] == "reference", "method"].unique():
        ref_style[name] = ("grey", next(styles))
    teacher = df[df["group"] == "teacher"]
    for col, mag in enumerate(mags):
        at_mag = df[df["magnification"] == mag]
        for row, (key, label) in enumerate(METRICS):
            ax = axes[row, col]
            lf = at_mag[at_mag["group"] == "label_free"]
            for i, (name, g) in enumerate(lf.groupby("method", sort=False)):
                g = g.sort_values("unlabeled_images")
                yerr = g[f"{key}_std"].where(g["seeds_done"] > 1)
                ax.errorbar(g["unlabeled_images"], g[f"{key}_mean"], yerr=yerr, marker="o", capsize=3,
                            color=colors[i % len(colors)], label=f"{name} (label-free)")
            refs = ([(f"teacher {teacher['magnification'].iloc[0]:g}x", "teacher", teacher)]
                    if len(teacher) else [])
            refs += [(f"{n} (labeled)", n, g) for n, g in at_mag[at_mag["group"] == "reference"].groupby(
                "method", sort=False)]
            for text, name, g in refs:
                value = g[f"{key}_mean"].iloc[0]
                if pd.notna(value):
                    color, style = ref_style[name]
                    ax.axhline(value, color=color, linestyle=style, linewidth=1.2, label=text)
            sizes = sorted(lf["unlabeled_images"].dropna().unique())
            ax.set_xticks(sizes)
            ratios = lf.drop_duplicates("unlabeled_images").set_index("unlabeled_images")["extra_ratio"]
            ax.set_xticklabels([f"{int(s)}\n(+{ratios[s]:g}x)" for s in sizes])
            ax.set_title(f"student at {mag:g}x")
            ax.set_xlabel("unlabeled training images (train + extra)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(len(labels), 2 * len(mags))),
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png_path)
    return png_path


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="study file (experiments/configs/)")
    p.add_argument("--seeds", type=int, metavar="N", help=f"use the first N seeds of {SECTION}.seeds")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1-epoch budget (teacher 1 epoch), first seed; writes *_quick outputs")
    p.add_argument("--preset", choices=PRESETS,
                   help=f"take the experiment settings from this preset instead of the file (the {SECTION}: "
                        "section still comes from the file); outputs get the suffix _<preset>")
    p.add_argument("--sicap", metavar="ROOT", help="SICAPv2 root (overrides data.source and data.root)")
    p.add_argument("--pool", metavar="DIR", help=f"folder of unlabeled images for the extra sets "
                                                 f"(overrides {SECTION}.pool_dir)")
    p.add_argument("--results-dir", default=RESULTS_DIR, help=f"where the outputs go (default {RESULTS_DIR})")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, their epochs and whether they finished; train nothing")
    return p


def resolve(args: argparse.Namespace) -> tuple[ExperimentConfig, LabelFreeConfig, str]:
    """(base, study, output name) from the command line; ConfigError names the bad setting."""
    base, study = load_study(args.config)
    out_name = f"label_free_{study.name}"
    if args.preset:
        base = preset(args.preset)
        out_name += f"_{args.preset}"  # never overwrite the file's own outputs
    if args.sicap:
        base.data = replace(base.data, source="sicap", root=args.sicap)
    if args.pool:
        study = replace(study, pool_dir=args.pool)
    study = replace(study, seeds=select_seeds(study.seeds, args.seeds, args.quick, f"{SECTION}.seeds"))
    if args.quick:
        base.optim = replace(base.optim, epochs=1, teacher_epochs=1)
        out_name += "_quick"
    base.validate()
    study.validate(base)
    return base, study, out_name


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before validation imports TensorFlow
    try:
        base, study, out_name = resolve(args)
    except ConfigError as e:
        parser.error(str(e))
    root = base.data.root
    if base.data.source in ("sicap", "folders") and root and not Path(root).is_dir():
        parser.error(f"data.root={root!r} is not a folder")
    if args.dry_run:
        from ird_tf.experiments.runs import load_splits

        n_train = len(load_splits(base).train)
        planned = plan(base, study, n_train)
        print(f"{n_train} labeled training images; step budget {budget_steps(base, n_train)}")
        done = 0
        for i, p in enumerate(planned, 1):
            finished = read_result(p.run_dir) is not None
            done += finished
            extra = ""
            if p.uset is not None:
                steps = p.cfg.optim.epochs * math.ceil(p.uset.size / base.data.batch_size)
                extra = f" [{p.uset.size} unlabeled images, {p.cfg.optim.epochs} epochs = {steps} steps]"
            state = "finished" if finished else "pending"
            print(f"{i}/{len(planned)} {p.label()}{extra}: {state} ({p.run_dir})")
        print(f"{done}/{len(planned)} runs finished")
        return 0
    command = "python -m ird_tf.experiments.label_free " + shlex.join(argv)
    return run_study(base, study, command=command, results_dir=Path(args.results_dir), out_name=out_name)


if __name__ == "__main__":
    sys.exit(main())
