"""The resolution sweep: every (student magnification, method, seed) plus the 10x teacher, one table.

    python -m ird_tf.experiments.sweep --config experiments/configs/sweep_cpu.yaml [--seeds N] [--quick]

The config file holds a complete experiment config (the ``ExperimentConfig`` sections) plus a
``sweep:`` section::

    sweep:
      name: cpu                          # -> experiments/results/sweep_cpu.md and .csv
      magnifications: [5, 2.5, 1.25, 0.625]
      mode: upsampled                    # or native (the student reads the small image)
      seeds: [22, 32, 43]
      methods:                           # name -> how the student is trained
        alone: {kind: alone}             # trained alone at that magnification, cross-entropy only
        fm: {loss: {ce: 1, fm: 0.1}}
        fm_at: {loss: {ce: 1, fm: 0.1, at: 10}}
        kd: {loss: {ce: 1, kd: 1}}
      localisation: [alone, fm, fm_at]   # methods (and the teacher) scored on the lesion masks
      localisation_weighting: gradcam
      cost: null                         # images/s and FLOPs columns; null = in native mode only

A method's ``loss`` lists its term weights (terms it does not list are off) and any loss option it
changes (``at_norm``, ``at_distance``, ``at_weighting``, ``at_classes``, ``kd_temperature`` ...); the
other options come from the file's ``loss:`` section, whose term weights are not used. The sweep sets
``data.student_mag``, ``data.mode`` and ``run.seed`` of each run; everything else is the file's.

Each run lives in the run directory the ``distill`` command would use for the same settings, so
finished runs are reused (by this sweep, another sweep file, or ``distill`` itself) and a killed run
resumes. The tables are rewritten after every run. Localisation: maps of the true class
(``localisation_weighting``, default plain Grad-CAM: the same explainer for every model, and not the
AT+ map the distilled students were trained to match) on each model's own input view of the test
split, scored with :mod:`ird_tf.evaluation.localisation` and cached in the run directory.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ird_tf.config import (
    AT_WEIGHTINGS,
    MODES,
    PAPER_SEEDS,
    PRESETS,
    ConfigError,
    ExperimentConfig,
    LossConfig,
    preset,
)
from ird_tf.experiments.runs import read_result, student_dir, teacher_dir
from ird_tf.experiments.study import (
    as_integer,
    as_list,
    as_number,
    execute,
    fmt_time,
    git_commit,
    nan_if_none,
    select_seeds,
)

DEFAULT_MAGNIFICATIONS = (5.0, 2.5, 1.25, 0.625)
KINDS = ("distill", "alone")
TERMS = ("ce", "fm", "at", "zk_at", "kd", "fmap")
LOCALISED_BY_DEFAULT = ("alone", "fm", "fm_at")
RESULTS_DIR = "experiments/results"
LOSS_FIELDS = tuple(f.name for f in fields(LossConfig))
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_TERM_LABELS = {"ce": "CE", "fm": "FM", "at": "AT+", "zk_at": "AT (Zagoruyko)", "kd": "KD", "fmap": "FMap"}


# --------------------------------------------------------------------------------------------- config
@dataclass
class Method:
    """How one student is trained: ``kind`` distill (from the teacher) or alone (labels only), and its
    loss term weights and options (see the module docstring)."""

    kind: str = "distill"
    loss: dict[str, Any] = field(default_factory=dict)

    def loss_config(self, base: LossConfig) -> LossConfig:
        """``base``'s options with this method's terms (all others off) and option changes."""
        terms = {t: 0.0 for t in TERMS}
        if self.kind == "alone":
            terms["ce"] = 1.0
        return replace(base, **{**terms, **self.loss})


def default_methods() -> dict[str, Method]:
    return {
        "alone": Method("alone"),
        "fm": Method("distill", {"ce": 1.0, "fm": 0.1}),
        "fm_at": Method("distill", {"ce": 1.0, "fm": 0.1, "at": 10.0}),
        "kd": Method("distill", {"ce": 1.0, "kd": 1.0}),
    }


@dataclass
class SweepConfig:
    name: str = "sweep"
    magnifications: tuple[float, ...] = DEFAULT_MAGNIFICATIONS
    methods: dict[str, Method] = field(default_factory=default_methods)
    seeds: tuple[int, ...] = PAPER_SEEDS
    mode: str = "upsampled"
    localisation: tuple[str, ...] | None = None
    localisation_weighting: str = "gradcam"
    cost: bool | None = None
    cost_seconds: float = 2.0

    @property
    def localised(self) -> tuple[str, ...]:
        """Methods whose runs get localisation scores (``None``: alone, fm, fm_at if present)."""
        if self.localisation is None:
            return tuple(m for m in LOCALISED_BY_DEFAULT if m in self.methods)
        return self.localisation

    @property
    def measures_cost(self) -> bool:
        return self.mode == "native" if self.cost is None else bool(self.cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "magnifications": [float(m) for m in self.magnifications],
            "methods": {n: {"kind": m.kind, "loss": dict(m.loss)} for n, m in self.methods.items()},
            "seeds": [int(s) for s in self.seeds], "mode": self.mode,
            "localisation": None if self.localisation is None else list(self.localisation),
            "localisation_weighting": self.localisation_weighting, "cost": self.cost,
            "cost_seconds": self.cost_seconds,
        }

    @classmethod
    def from_dict(cls, d: Any) -> SweepConfig:
        """Parses the ``sweep:`` section; an unknown key or a value of the wrong type names the key."""
        if not isinstance(d, dict):
            raise ConfigError(f"sweep: expected a mapping of sweep settings, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown sweep setting(s) {['sweep.' + k for k in unknown]}; known: {known}")
        kw: dict[str, Any] = {}
        if "name" in d:
            kw["name"] = str(d["name"])
        if "magnifications" in d:
            mags = as_list("sweep.magnifications", d["magnifications"])
            kw["magnifications"] = tuple(as_number(f"sweep.magnifications[{i}]", v)
                                         for i, v in enumerate(mags))
        if "seeds" in d:
            kw["seeds"] = tuple(as_integer(f"sweep.seeds[{i}]", v)
                                for i, v in enumerate(as_list("sweep.seeds", d["seeds"])))
        if "methods" in d:
            kw["methods"] = _methods(d["methods"])
        if "mode" in d:
            kw["mode"] = d["mode"]
        if d.get("localisation") is not None:
            kw["localisation"] = tuple(str(m) for m in as_list("sweep.localisation", d["localisation"]))
        if "localisation_weighting" in d:
            kw["localisation_weighting"] = d["localisation_weighting"]
        if d.get("cost") is not None:
            if not isinstance(d["cost"], bool):
                raise ConfigError(f"sweep.cost={d['cost']!r}: expected true, false or null (= native only)")
            kw["cost"] = d["cost"]
        if "cost_seconds" in d:
            kw["cost_seconds"] = as_number("sweep.cost_seconds", d["cost_seconds"])
        return cls(**kw)

    def validate(self, base: ExperimentConfig) -> SweepConfig:
        """Checks every setting against the base experiment; errors name the ``sweep.`` key."""
        if not NAME_RE.match(self.name):
            raise ConfigError(f"sweep.name={self.name!r}: expected letters, digits and _ . + - (a file name)")
        if self.mode not in MODES:
            raise ConfigError(f"sweep.mode={self.mode!r} is not accepted; expected one of {list(MODES)}")
        for key, values in (("magnifications", self.magnifications), ("seeds", self.seeds),
                            ("methods", list(self.methods))):
            if not values:
                raise ConfigError(f"sweep.{key} is empty; expected at least one")
            if len(set(values)) != len(values):
                raise ConfigError(f"sweep.{key}={list(values)} has duplicates")
        for mag in self.magnifications:
            try:
                replace(base.data, student_mag=mag, mode=self.mode).validate()
            except ConfigError as e:
                raise ConfigError(f"sweep.magnifications: {mag:g} is not accepted: {e}") from e
        for name, method in self.methods.items():
            if not NAME_RE.match(name) or name == "teacher":
                raise ConfigError(f"sweep.methods: {name!r} is not a usable method name (letters, digits, "
                                  "_ . + -; 'teacher' is reserved)")
            try:
                method.loss_config(base.loss).validate()
            except ConfigError as e:
                raise ConfigError(f"sweep.methods.{name}: {e}") from e
        missing = [m for m in self.localised if m not in self.methods]
        if missing:
            raise ConfigError(f"sweep.localisation names {missing}, which are not in sweep.methods "
                              f"{list(self.methods)}")
        if self.localisation_weighting not in AT_WEIGHTINGS:
            raise ConfigError(f"sweep.localisation_weighting={self.localisation_weighting!r} is not "
                              f"accepted; expected one of {list(AT_WEIGHTINGS)}")
        if self.cost_seconds <= 0:
            raise ConfigError(f"sweep.cost_seconds={self.cost_seconds!r}: expected a number > 0")
        return self


def _methods(value: Any) -> dict[str, Method]:
    """``{name: {kind, loss}}``, or a list of built-in method names (alone, fm, fm_at, kd)."""
    builtin = default_methods()
    if isinstance(value, list):
        unknown = [n for n in value if n not in builtin]
        if unknown:
            raise ConfigError(f"sweep.methods: {unknown} are not built-in methods {list(builtin)}; "
                              "define them as a mapping name -> {kind, loss}")
        return {n: builtin[n] for n in value}
    if not isinstance(value, dict):
        raise ConfigError(f"sweep.methods={value!r}: expected a mapping name -> {{kind, loss}}")
    out = {}
    for name, spec in value.items():
        key = f"sweep.methods.{name}"
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise ConfigError(f"{key}={spec!r}: expected a mapping with 'kind' and/or 'loss'")
        unknown = sorted(set(spec) - {"kind", "loss"})
        if unknown:
            raise ConfigError(f"unknown setting(s) {[f'{key}.{k}' for k in unknown]}; "
                              "known: ['kind', 'loss']")
        kind = spec.get("kind", "distill")
        if kind not in KINDS:
            raise ConfigError(f"{key}.kind={kind!r} is not accepted; expected one of {list(KINDS)}")
        loss = spec.get("loss") or {}
        if not isinstance(loss, dict):
            raise ConfigError(f"{key}.loss={loss!r}: expected a mapping of loss settings")
        bad = sorted(set(loss) - set(LOSS_FIELDS))
        if bad:
            raise ConfigError(f"unknown setting(s) {[f'{key}.loss.{k}' for k in bad]}; "
                              f"known: {list(LOSS_FIELDS)}")
        terms = [t for t in TERMS if t in loss and t != "ce" and loss[t]]
        if kind == "alone" and terms:
            raise ConfigError(f"{key}: kind 'alone' trains with cross-entropy only; it cannot use the "
                              f"teacher terms {terms}")
        if kind == "alone" and "ce" in loss:
            raise ConfigError(f"{key}.loss.ce: kind 'alone' always has ce = 1")
        out[str(name)] = Method(kind, dict(loss))
    return out


def load_sweep(path: str | Path) -> tuple[ExperimentConfig, SweepConfig]:
    """(base experiment config, sweep settings) from a sweep file (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep config file {path} does not exist")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"sweep config file {path} is not valid YAML: {e}") from e
    if not isinstance(d, dict) or "sweep" not in d:
        raise ConfigError(f"sweep config file {path}: expected the experiment sections and a 'sweep:' "
                          "section")
    sweep_d = d.pop("sweep")
    try:
        return ExperimentConfig.from_dict(d), SweepConfig.from_dict(sweep_d)
    except ConfigError as e:
        raise ConfigError(f"sweep config file {path}: {e}") from e


def save_sweep(path: str | Path, base: ExperimentConfig, sweep: SweepConfig, header: str = "") -> Path:
    """Writes a sweep file that :func:`load_sweep` reads back to equal objects."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({**base.to_dict(), "sweep": sweep.to_dict()}, sort_keys=False)
    path.write_text(header + text)
    return path


# ----------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Planned:
    """One run of the sweep: ``method`` is "teacher" or a method name; ``kind`` teacher/distill/alone."""

    method: str
    kind: str
    mag: float
    seed: int
    cfg: ExperimentConfig = field(compare=False)
    run_dir: Path = field(compare=False)

    def label(self) -> str:
        return f"{self.mag:g}x {self.method} seed {self.seed}"


def run_config(base: ExperimentConfig, sweep: SweepConfig, mag: float, method: str, seed: int
               ) -> ExperimentConfig:
    """The experiment config of one student run (validated)."""
    m = sweep.methods[method]
    return ExperimentConfig(
        data=replace(base.data, student_mag=float(mag), mode=sweep.mode),
        model=base.model,
        loss=m.loss_config(base.loss),
        optim=base.optim,
        run=replace(base.run, seed=int(seed), name=None),
    ).validate()


def plan(base: ExperimentConfig, sweep: SweepConfig) -> list[Planned]:
    """Per seed: the teacher, then every magnification x method, in the order they run."""
    out = []
    for seed in sweep.seeds:
        tcfg = ExperimentConfig(base.data, base.model, base.loss, base.optim,
                                replace(base.run, seed=int(seed), name=None))
        out.append(Planned("teacher", "teacher", float(base.data.teacher_mag), seed, tcfg, teacher_dir(tcfg)))
        for mag in sweep.magnifications:
            for name, method in sweep.methods.items():
                cfg = run_config(base, sweep, mag, name, seed)
                out.append(Planned(name, method.kind, float(mag), seed, cfg, student_dir(cfg, method.kind)))
    return out


def describe(method: Method, base: LossConfig) -> str:
    """``CE + 0.1 FM + 10 AT+ (AT: minmax norm, l2 distance, ...)`` — for the table header."""
    if method.kind == "alone":
        return "student trained alone, CE only"
    loss = method.loss_config(base)
    parts = [(_TERM_LABELS[t] if w == 1 else f"{w:g} {_TERM_LABELS[t]}") for t, w in loss.weights().items()]
    text = " + ".join(parts)
    if loss.at:
        text += (f" (AT: {loss.at_norm} norm, {loss.at_distance} distance, {loss.at_weighting} weighting, "
                 f"{loss.at_classes} classes)")
    if loss.kd:
        text += f" (KD: T = {loss.kd_temperature:g})"
    return text


# ------------------------------------------------------------------------------------------ run it
def say(msg: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _localisation_key(sweep: SweepConfig) -> dict:
    return {"split": "test", "classes": "true", "weighting": sweep.localisation_weighting}


def load_classifier(p: Planned, num_classes: int):
    """The trained classifier of a finished run (best epoch), on its own input size."""
    from ird_tf.models import build_classifier

    d = p.cfg.data
    size = d.image_size if p.kind == "teacher" else d.student_size
    model = build_classifier(p.cfg.model.backbone, num_classes, (size, size, 3), None,
                             name="teacher" if p.kind == "teacher" else "student")
    model.load_weights(str(p.run_dir / "best.weights.h5"))
    return model


def localise(p: Planned, splits, sweep: SweepConfig) -> tuple[dict, bool]:
    """Localisation scores of a finished run on the test split: cached, or computed and cached."""
    from ird_tf.evaluation.attention_eval import cached_localisation, localisation_on_split

    d = p.cfg.data
    teacher = p.kind == "teacher"

    def compute():
        model = load_classifier(p, len(splits.class_names))
        return localisation_on_split(
            model, splits.test, image_size=d.image_size, factor=1 if teacher else d.factor,
            mode="upsampled" if teacher else d.mode, input_key="hr" if teacher else "lr",
            weighting=sweep.localisation_weighting, batch_size=d.batch_size)

    return cached_localisation(p.run_dir, compute, key=_localisation_key(sweep))


def measure_costs(base: ExperimentConfig, sweep: SweepConfig, num_classes: int) -> dict[int, dict]:
    """``{input size: {"images_per_s", "mflops"}}`` for the teacher's and every student's input size,
    measured on freshly built models (throughput does not depend on the weights)."""
    from ird_tf.evaluation.attention_eval import flops_per_image, images_per_second
    from ird_tf.models import build_classifier

    sizes = sorted({base.data.image_size}
                   | {replace(base.data, student_mag=m, mode=sweep.mode).student_size
                      for m in sweep.magnifications}, reverse=True)
    out = {}
    for size in sizes:
        model = build_classifier(base.model.backbone, num_classes, (size, size, 3), None, name=f"cost{size}")
        rate = images_per_second(model, size, batch_size=32, min_seconds=sweep.cost_seconds)
        out[size] = {"images_per_s": rate, "mflops": flops_per_image(model) / 1e6}
        say(f"cost at {size} px: {rate:.0f} images/s (batch 32), {out[size]['mflops']:.2f} MFLOPs/image")
    return out


def run_sweep(base: ExperimentConfig, sweep: SweepConfig, *, command: str, results_dir: Path,
              out_name: str) -> int:
    """Runs (or reuses) every planned run and rewrites the tables after each; 0 when all finished."""
    from ird_tf.experiments.runs import load_splits, setup_runtime

    start = time.time()
    planned = plan(base, sweep)
    strategy = setup_runtime(base)
    splits = load_splits(base)
    say(f"sweep {sweep.name!r}: {len(planned)} runs ({len(sweep.seeds)} seed(s) x (teacher + "
        f"{len(sweep.magnifications)} magnification(s) x {len(sweep.methods)} method(s))), "
        f"mode {sweep.mode}; tables: {results_dir / out_name}.md/.csv")
    if sweep.localised and not ("mask" in splits.test.columns and splits.test["mask"].notna().any()):
        say("the test split has no lesion masks: no localisation columns")
        sweep = replace(sweep, localisation=())
    costs = measure_costs(base, sweep, len(splits.class_names)) if sweep.measures_cost else None
    header = dict(command=command, commit=git_commit(), start=start)
    failed: list[str] = []
    trained = reused = 0
    for i, p in enumerate(planned, 1):
        tag = f"{i}/{len(planned)} {p.label()}"
        _, found, failure = execute(p, splits, strategy, tag=tag, start=start, say=say)
        if failure:
            failed.append(failure)
            continue
        trained, reused = trained + (not found), reused + found
        if sweep.localised and p.method in (*sweep.localised, "teacher"):
            scores, cached = localise(p, splits, sweep)
            if not cached:
                say(f"run {tag}: localisation energy {scores['energy_inside']:.3f}, pointing "
                    f"{scores['pointing_game']:.3f} (n={scores['n']})")
        header.update(trained=trained, reused=reused, failed=failed)
        write_tables(base, sweep, planned, results_dir, out_name, header, costs)
    md, _ = write_tables(base, sweep, planned, results_dir, out_name, header, costs)
    say(f"finished in {fmt_time(time.time() - start)}: {trained} trained, {reused} reused, "
        f"{len(failed)} failed; table {md}")
    print(md.read_text(), flush=True)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------- tables
def _row_runs(planned: list[Planned], method: str, mag: float) -> list[Planned]:
    return [p for p in planned if p.method == method and p.mag == mag]


def collect(base: ExperimentConfig, sweep: SweepConfig, planned: list[Planned],
            costs: dict[int, dict] | None) -> list[dict]:
    """One record per table row (teacher, then magnification x method) from the run directories."""
    from ird_tf.evaluation.attention_eval import read_localisation
    from ird_tf.evaluation.metrics import summarize_seeds

    groups = [("teacher", float(base.data.teacher_mag))]
    groups += [(m, float(mag)) for mag in sweep.magnifications for m in sweep.methods]
    key = _localisation_key(sweep)
    records = []
    for method, mag in groups:
        runs = _row_runs(planned, method, mag)
        per_seed, dirs, seconds = [], [], 0.0
        for p in runs:
            result = read_result(p.run_dir)
            if result is None:
                continue
            scores = dict(result.metrics.get("test", {}))
            loc = read_localisation(p.run_dir, key)
            if loc is not None:
                scores.update(energy_inside=loc["energy_inside"], pointing_game=loc["pointing_game"])
            per_seed.append(scores)
            dirs.append(p.run_dir.name)
            seconds += result.seconds
        summary = summarize_seeds(per_seed) if per_seed else {}
        kind = "teacher" if method == "teacher" else sweep.methods[method].kind
        size = runs[0].cfg.data.image_size if kind == "teacher" else runs[0].cfg.data.student_size
        rec = {"magnification": mag, "method": method, "kind": kind, "input_px": size,
               "seeds_done": len(per_seed), "seeds_planned": len(runs), "summary": summary,
               "runs": dirs, "seconds": seconds}
        if costs is not None:
            rec.update(costs[size])
        records.append(rec)
    return records


_METRICS = (("balanced_accuracy", "test bal. acc."), ("kappa", "test kappa"),
            ("energy_inside", "energy in lesion"), ("pointing_game", "pointing game"))


def write_tables(base: ExperimentConfig, sweep: SweepConfig, planned: list[Planned], results_dir: Path,
                 out_name: str, header: dict, costs: dict[int, dict] | None) -> tuple[Path, Path]:
    """``<results_dir>/<out_name>.md`` and ``.csv`` from the finished runs (atomically replaced)."""
    from ird_tf.evaluation.metrics import format_table

    records = collect(base, sweep, planned, costs)
    localised = bool(sweep.localised)
    metric_keys = _METRICS if localised else _METRICS[:2]
    finished = sum(r["seeds_done"] for r in records)
    elapsed = time.time() - header["start"]
    recorded = sum(r["seconds"] for r in records)
    d, o = base.data, base.optim
    lines = [
        f"# Sweep `{out_name.removeprefix('sweep_')}`: test balanced accuracy and quadratic kappa, "
        "mean ± std over seeds",
        "",
        f"- Command: `{header['command']}`",
        f"- Commit: `{header['commit']}`",
        f"- Run time: {elapsed / 60:.1f} min in the last invocation ({header.get('trained', 0)} runs "
        f"trained, {header.get('reused', 0)} reused); {recorded / 60:.1f} min of training recorded by the "
        "finished runs",
        f"- Progress: {finished}/{len(planned)} runs finished (updated {time.strftime('%Y-%m-%d %H:%M:%S')})",
        f"- Settings: {d.source} data (fold {d.fold}), {base.model.backbone}, {d.image_size} px at "
        f"{d.teacher_mag:g}x, student input {sweep.mode}, {o.epochs} epochs (teacher {o.teacher_epochs}), "
        f"batch {d.batch_size}, {o.name} lr {o.learning_rate:g}, seeds {list(sweep.seeds)}",
        "- Methods: " + "; ".join(f"`{n}` = {describe(m, base.loss)}" for n, m in sweep.methods.items()),
    ]
    if localised:
        lines.append(f"- Localisation (test split, patches with a lesion): share of the true class's "
                     f"{sweep.localisation_weighting} attention energy inside the lesion mask, and "
                     f"pointing-game accuracy; for the teacher and {list(sweep.localised)}")
    if costs is not None:
        lines.append("- Cost: inference images/s (batch 32, compiled call, this machine, measured in the "
                     "sweep process) and FLOPs per image (2 x multiply-adds of the Conv/Dense layers)")
    if header.get("failed"):
        lines.append("- FAILED runs: " + "; ".join(header["failed"]))
    columns = ["magnification", "method", "seeds", *(label for _, label in metric_keys)]
    if costs is not None:
        columns += ["input px", "images/s", "MFLOPs/image"]
    rows = []
    for r in records:
        row = {"magnification": f"{r['magnification']:g}x", "method": r["method"],
               "seeds": f"{r['seeds_done']}/{r['seeds_planned']}", "input px": r["input_px"]}
        for k, label in metric_keys:
            row[label] = r["summary"].get(k)
        if costs is not None:
            row["images/s"] = f"{r['images_per_s']:.0f}"
            row["MFLOPs/image"] = f"{r['mflops']:.3g}"
        rows.append(row)
    md = "\n".join(lines) + "\n\n" + format_table(rows, columns, digits=3) + "\n"

    buf = io.StringIO()
    buf.write(f"# command: {header['command']}\n# commit: {header['commit']}\n"
              f"# run_time_min: {elapsed / 60:.2f}\n# recorded_training_min: {recorded / 60:.2f}\n")
    csv_cols = ["magnification", "method", "kind", "mode", "input_px", "seeds_done", "seeds_planned"]
    for k, _ in metric_keys:
        csv_cols += [f"{k}_mean", f"{k}_std"]
    if costs is not None:
        csv_cols += ["images_per_s", "mflops_per_image"]
    csv_cols.append("runs")
    writer = csv.DictWriter(buf, fieldnames=csv_cols, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {"magnification": r["magnification"], "method": r["method"], "kind": r["kind"],
               "mode": "upsampled" if r["kind"] == "teacher" else sweep.mode, "input_px": r["input_px"],
               "seeds_done": r["seeds_done"], "seeds_planned": r["seeds_planned"],
               "runs": ";".join(r["runs"])}
        for k, _ in metric_keys:
            s = r["summary"].get(k, {})
            for stat in ("mean", "std"):
                v = nan_if_none(s.get(stat))
                row[f"{k}_{stat}"] = "" if math.isnan(v) else f"{v:.6g}"
        if costs is not None:
            row.update(images_per_s=f"{r['images_per_s']:.1f}", mflops_per_image=f"{r['mflops']:.4g}")
        writer.writerow(row)
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = (results_dir / f"{out_name}.md", results_dir / f"{out_name}.csv")
    for path, text in zip(paths, (md, buf.getvalue()), strict=True):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="sweep file (experiments/configs/)")
    p.add_argument("--seeds", type=int, metavar="N", help="use the first N seeds of sweep.seeds")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 epoch (teacher too), first seed; writes sweep_<name>_quick.md/.csv")
    p.add_argument("--preset", choices=PRESETS,
                   help="take the experiment settings from this preset instead of the file (the sweep: "
                        "section still comes from the file); tables get the suffix _<preset>")
    p.add_argument("--sicap", metavar="ROOT", help="SICAPv2 root (overrides data.source and data.root)")
    p.add_argument("--results-dir", default=RESULTS_DIR, help=f"where the tables go (default {RESULTS_DIR})")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and whether they finished; train nothing")
    p.add_argument("--print-config", action="store_true", help="print the resolved sweep file and exit")
    return p


def resolve(args: argparse.Namespace) -> tuple[ExperimentConfig, SweepConfig, str]:
    """(base, sweep, table name) from the command line; ConfigError names the bad setting."""
    base, sweep = load_sweep(args.config)
    if args.preset:
        base = preset(args.preset)
        out_suffix = f"_{args.preset}"  # never overwrite the file's own table
    else:
        out_suffix = ""
    if args.sicap:
        base.data = replace(base.data, source="sicap", root=args.sicap)
    out_name = f"sweep_{sweep.name}{out_suffix}"
    seeds = select_seeds(sweep.seeds, args.seeds, args.quick, "sweep.seeds")
    sweep = replace(sweep, seeds=seeds)
    if args.quick:
        base.optim = replace(base.optim, epochs=1, teacher_epochs=1)
        out_name += "_quick"
    base.validate()
    sweep.validate(base)
    return base, sweep, out_name


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        base, sweep, out_name = resolve(args)
    except ConfigError as e:
        parser.error(str(e))
    if args.print_config:
        sys.stdout.write(yaml.safe_dump({**base.to_dict(), "sweep": sweep.to_dict()}, sort_keys=False))
        return 0
    if args.dry_run:
        planned = plan(base, sweep)
        done = 0
        for i, p in enumerate(planned, 1):
            finished = read_result(p.run_dir) is not None
            done += finished
            print(f"{i}/{len(planned)} {p.label()}: {'finished' if finished else 'pending'} ({p.run_dir})")
        print(f"{done}/{len(planned)} runs finished")
        return 0
    root = base.data.root
    if base.data.source in ("sicap", "folders") and root and not Path(root).is_dir():
        parser.error(f"data.root={root!r} is not a folder; pass the dataset root with --sicap ROOT")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = "python -m ird_tf.experiments.sweep " + shlex.join(argv)
    return run_sweep(base, sweep, command=command, results_dir=Path(args.results_dir), out_name=out_name)


if __name__ == "__main__":
    sys.exit(main())
