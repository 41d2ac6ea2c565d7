"""Loss weights chosen on the validation split: the grid, the rule of choice and the tuning record.

Each candidate of the grid is an ordinary student run (its directory named by :func:`student_dir`
from its weights), so ``distill`` with the same weights finds it. Candidates are trained and scored on
the validation split only: the test split is neither checked, nor read, nor scored while tuning. The
choice: the best validation quadratic kappa, then the best validation balanced accuracy, then the
simpler candidate (fewer distillation terms, then smaller weights). The record
(``<output_dir>/tuning/<name>/tuning.json`` and a ``tuning.md`` table) holds the grid, every
candidate's run directory and validation scores, the choice and its reason, and what the weights were
tuned for (magnification, mode, data), which ``distill --weights-from`` checks. The bookkeeping here
is TF-free; :func:`tune` trains.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ird_tf.config import ExperimentConfig
from ird_tf.errors import ConfigError
from ird_tf.files import write_json, write_text
from ird_tf.progress import say
from ird_tf.runs.identity import data_identity, digest, student_dir
from ird_tf.scoring import json_safe
from ird_tf.terms import TERMS, term_spec

#: the terms a grid may vary: those that need the teacher (CE stays as configured)
GRID_TERMS: tuple[str, ...] = tuple(t.name for t in TERMS if t.needs_teacher)
#: the default grid: FM x AT+, each with 0 (so the student without distillation is a candidate)
DEFAULT_GRID: dict[str, tuple[float, ...]] = {"fm": (0.0, 0.1), "at": (0.0, 1.0, 10.0)}
RECORD = "tuning.json"
TABLE = "tuning.md"
SCORED = ("val",)  # the only split a tuning run is scored on
FORMAT = 1


def _option(term: str) -> str:
    return f"argument --grid-{term.replace('_', '-')}"


def check_grid(grid: dict[str, tuple[float, ...]], where=_option) -> dict[str, tuple[float, ...]]:
    """The grid with sorted, distinct values; every value a number >= 0 and every term's values holding
    0 (the candidate without that term). Errors name the setting: ``where(term)`` (by default the
    command-line option, ``argument --grid-fm``)."""
    out = {}
    for name, values in grid.items():
        if name not in GRID_TERMS:
            raise ConfigError(f"{where(name)}: {term_spec(name).label} is not a distillation term; the grid "
                              f"varies {list(GRID_TERMS)}")
        if not values or any(not math.isfinite(v) or v < 0 for v in values):
            raise ConfigError(f"{where(name)}: {list(values)}: expected numbers >= 0")
        if 0 not in values:
            raise ConfigError(f"{where(name)}: {list(values)}: the grid must hold 0 (the candidate "
                              "without this term), so the student without it is always a candidate")
        out[name] = tuple(sorted(set(float(v) for v in values)))
    return out


def grid_points(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    """Every combination of the grid's values, the all-zero one (no distillation) first; each point
    gives every distillation term a weight (0 for a term the grid leaves out)."""
    names = list(grid)
    return [{**dict.fromkeys(GRID_TERMS, 0.0), **dict(zip(names, values))}
            for values in itertools.product(*(grid[n] for n in names))]


def candidate_config(cfg: ExperimentConfig, weights: dict[str, float]) -> ExperimentConfig:
    """The experiment config of one candidate: ``cfg`` with these distillation term weights (validated);
    CE and the terms' options as configured."""
    return ExperimentConfig(cfg.data, cfg.model, replace(cfg.loss, **weights), cfg.optim,
                            replace(cfg.run, name=None)).validate()


def tuned_for(cfg: ExperimentConfig) -> dict[str, Any]:
    """What tuned weights apply to: the student's magnification and mode, the teacher's, and the data."""
    return {"student_mag": cfg.data.student_mag, "mode": cfg.data.mode, "teacher_mag": cfg.data.teacher_mag,
            "data": json_safe(data_identity(cfg.data))}


def tuning_dir(cfg: ExperimentConfig, grid: dict[str, tuple[float, ...]], name: str | None = None) -> Path:
    """``<output_dir>/tuning/<name>``; by default named from the magnification, mode, seed, student and
    fold, and a digest of the runs the grid makes (the same command finds its own record)."""
    if not name:
        runs = [student_dir(candidate_config(cfg, w)).name for w in grid_points(grid)]
        d = cfg.data
        name = f"{d.student_mag:g}x_{d.mode}_s{cfg.run.seed}_{cfg.model.student}_{d.fold}_{digest(runs)}"
    return Path(cfg.run.output_dir) / "tuning" / name


def _label(weights: dict[str, float]) -> str:
    active = [f"{w:g} {term_spec(t).label}" for t, w in weights.items() if w]
    return " + ".join(active) if active else "no distillation"


def _number(x: Any) -> float:
    return x if isinstance(x, int | float) and math.isfinite(x) else -math.inf


def choose(candidates: list[dict[str, Any]]) -> tuple[int, str]:
    """(index of the chosen candidate, reason): the best validation kappa, then the best validation
    balanced accuracy, then the simpler one (fewer distillation terms, then a smaller sum of weights).
    An undefined score ranks below every number. Reads only ``candidate["val"]``."""
    if not candidates:
        raise ValueError("no candidates to choose from")

    def key(i: int) -> tuple:
        c = candidates[i]
        weights = c["weights"].values()
        return (_number(c["val"].get("kappa")), _number(c["val"].get("balanced_accuracy")),
                -sum(1 for w in weights if w), -sum(weights))

    def shown(x: float) -> str:
        return f"{x:.4f}" if math.isfinite(x) else "undefined"

    order = sorted(range(len(candidates)), key=key, reverse=True)
    best = order[0]
    kappa, bal = key(best)[:2]
    if len(order) == 1:
        return best, "the only candidate"
    runner_up = key(order[1])
    if kappa > runner_up[0]:
        why = f"the highest validation kappa ({shown(kappa)})"
    elif bal > runner_up[1]:
        why = (f"tied on validation kappa ({shown(kappa)}); the highest validation balanced accuracy "
               f"({shown(bal)})")
    else:
        why = (f"tied on validation kappa ({shown(kappa)}) and balanced accuracy ({shown(bal)}); the "
               "simpler candidate (fewer, smaller distillation terms)")
    return best, why


def _table(record: dict[str, Any]) -> str:
    lines = [f"# Loss weights chosen on validation: {record['name']}", "",
             f"Student at {record['for']['student_mag']:g}x ({record['for']['mode']}), seed {record['seed']}; "
             "scored on the validation split only (the test split was not read).", "",
             "| candidate | val kappa | val bal. acc. | chosen | run |", "|---|---|---|---|---|"]
    for i, c in enumerate(record["candidates"]):
        scores = [("" if c["val"].get(k) is None else f"{c['val'][k]:.4f}") for k in ("kappa", "balanced_accuracy")]
        mark = "yes" if i == record["choice"]["index"] else ""
        lines.append(f"| {c['label']} | {scores[0]} | {scores[1]} | {mark} | {c['run_dir']} |")
    lines += ["", f"Chosen: {record['choice']['label']}: {record['choice']['reason']}.", ""]
    return "\n".join(lines)


def write_record(path: Path, cfg: ExperimentConfig, grid: dict[str, tuple[float, ...]],
                 candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Chooses among ``candidates`` and writes ``tuning.json`` and ``tuning.md`` into ``path``."""
    index, reason = choose(candidates)
    chosen = candidates[index]
    record = {
        "format": FORMAT, "name": path.name, "for": tuned_for(cfg), "seed": cfg.run.seed,
        "selection": "validation quadratic kappa, then validation balanced accuracy, then the simpler candidate",
        "grid": {k: list(v) for k, v in grid.items()}, "candidates": candidates,
        "choice": {"index": index, "label": chosen["label"], "weights": chosen["weights"],
                   "run_dir": chosen["run_dir"], "reason": reason},
    }
    record = json_safe(record)
    write_json(path / RECORD, record)
    write_text(path / TABLE, _table(record))
    return record


def read_record(path: str | Path, option: str = "--weights-from") -> dict[str, Any]:
    """A tuning record (the folder or its ``tuning.json``); a missing or invalid one is a ConfigError
    naming ``option``."""
    path = Path(path)
    file = path if path.name == RECORD else path / RECORD
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"argument {option}: {file} does not exist; make it with python -m "
                          "ird_tf.experiments.tune") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"argument {option}: {file} is not a readable tuning record ({e})") from None
    try:
        weights = record["choice"]["weights"]
        ok = (record["format"] == FORMAT and isinstance(record["for"], dict) and isinstance(weights, dict)
              and all(k in GRID_TERMS and isinstance(v, int | float) and v >= 0 for k, v in weights.items()))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(f"argument {option}: {file} is not a valid tuning record (expected 'format' "
                          f"{FORMAT}, 'for' and 'choice.weights' over {list(GRID_TERMS)})")
    return record


def apply_record(cfg: ExperimentConfig, record: dict[str, Any], source: str,
                 option: str = "--weights-from") -> ExperimentConfig:
    """``cfg`` with the record's chosen weights, after checking the record was tuned for the same
    magnification, mode, teacher magnification and data (a ConfigError naming ``option`` otherwise)."""
    want, have = json_safe(tuned_for(cfg)), record["for"]
    for key in want:
        if have.get(key) != want[key]:
            raise ConfigError(f"argument {option}: {source} was tuned for {key} {have.get(key)!r}, this run has "
                              f"{want[key]!r}; tune for these settings first")
    return replace(cfg, loss=replace(cfg.loss, **{k: float(v) for k, v in record["choice"]["weights"].items()}))


def tune(cfg: ExperimentConfig, splits, strategy, grid: dict[str, tuple[float, ...]], *,
         name: str | None = None, before_each=None) -> tuple[Path, dict[str, Any]]:
    """Trains (or reuses) one student per grid point against the one teacher, each scored on the
    validation split only, chooses, and writes the record: ``(record folder, record)``.
    ``before_each(cfg)`` runs before each candidate (a study's fresh Keras state)."""
    from ird_tf.runs.train import run_student

    grid = check_grid(grid)
    path = tuning_dir(cfg, grid, name)
    points = grid_points(grid)
    say(f"tuning {len(points)} candidates ({', '.join(f'{k} in {list(v)}' for k, v in grid.items())}) on the "
        f"validation split: {path}")
    candidates = []
    for i, weights in enumerate(points, 1):
        ccfg = candidate_config(cfg, weights)
        if before_each is not None:
            before_each(ccfg)
        say(f"candidate {i}/{len(points)}: {_label(weights)}")
        result, _ = run_student(ccfg, splits, strategy, scored=SCORED)
        val = result.metrics["val"]
        candidates.append({"label": _label(weights), "weights": weights, "run_dir": str(result.run_dir),
                           "val": {k: val.get(k) for k in ("kappa", "balanced_accuracy", "macro_f1", "accuracy")}})
    record = write_record(path, cfg, grid, candidates)
    say(f"chosen: {record['choice']['label']} ({record['choice']['reason']}); record {path / RECORD}")
    return path, record


__all__ = ["DEFAULT_GRID", "GRID_TERMS", "RECORD", "SCORED", "TABLE", "apply_record", "candidate_config",
           "check_grid", "choose", "grid_points", "read_record", "tune", "tuned_for", "tuning_dir",
           "write_record"]
