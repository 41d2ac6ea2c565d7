"""The two training tasks: the teacher (found on disk or trained now) and the student (distilled from
it, or trained alone), each in its own run directory, scored on val/test and, for a student,
exported for TF Serving."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView
from ird_tf.progress import say
from ird_tf.runs.claims import run_claim
from ird_tf.runs.classifiers import build_for, load_classifier
from ird_tf.runs.environment import calibration_dataset, datasets
from ird_tf.runs.evaluate import evaluate
from ird_tf.runs.export import export_student
from ird_tf.runs.identity import student_dir, teacher_dir
from ird_tf.runs.results import SPLITS, RunResult, mark_failed, write_result

KINDS = ("distill", "alone")


def run_teacher(cfg: ExperimentConfig, splits, strategy, *, scored: tuple[str, ...] = SPLITS) -> RunResult:
    """The teacher for these data, fold, backbone and seed: found on disk, or trained now (and said so).
    ``scored``: the splits it is scored on (always the validation split; tuning leaves out the test
    split, never opened then); a run found without a split of ``scored`` is scored on it now."""
    run_dir = teacher_dir(cfg)
    view = InputView.teacher(cfg.data)
    with run_claim(run_dir, cfg) as found:
        if found is not None:
            say(f"teacher found: {run_dir}")
            return _scored(cfg, splits, found, view, scored)
        say(f"no finished teacher at {run_dir}: training it first ({cfg.optim.teacher_epochs} epochs)")

        def model(classifier):
            from ird_tf.training.supervised import Supervised

            return Supervised(classifier, input_key=view.key, label_smoothing=cfg.loss.label_smoothing)

        return _train(cfg, splits, strategy, role="teacher", run_dir=run_dir, view=view,
                      epochs=cfg.optim.teacher_epochs, weights=cfg.model.weights, wrap=model, scored=scored)


def run_student(cfg: ExperimentConfig, splits, strategy, *, kind: str = "distill",
                export_base: Path | None = None, scored: tuple[str, ...] = SPLITS
                ) -> tuple[RunResult, RunResult | None]:
    """Trains the student at ``data.student_mag`` — ``kind="distill"`` from the teacher with the
    configured terms (label-free when ``data.unlabeled`` is set), ``kind="alone"`` with labels only —
    and returns (student result, teacher result or None). Exports it when ``export_base`` is given.
    ``scored``: the splits teacher and student are scored on (see :func:`run_teacher`)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {list(KINDS)}")
    teacher = run_teacher(cfg, splits, strategy, scored=scored) if kind == "distill" else None
    run_dir = student_dir(cfg, kind)
    d = cfg.data
    view = InputView.student(d)
    with run_claim(run_dir, cfg) as found:
        if found is not None:
            say(f"student found: {run_dir}")
            return _scored(cfg, splits, found, view, scored), teacher
        what = "distilling" if kind == "distill" else "training alone"
        say(f"student {what} at {d.student_mag:g}x ({d.mode}): {run_dir}")
        unlabeled = None
        if d.unlabeled and kind == "distill":
            from ird_tf.data.readers import read_unlabeled

            unlabeled = read_unlabeled(d.unlabeled)

        def model(student):
            from ird_tf.training.distiller import Distiller
            from ird_tf.training.supervised import Supervised

            if kind == "alone":
                return Supervised(student, input_key=view.key, label_smoothing=cfg.loss.label_smoothing)
            frozen = load_classifier(cfg, InputView.teacher(d), len(splits.class_names), teacher.run_dir)
            return Distiller(frozen, student, cfg.loss, labeled=unlabeled is None)

        result = _train(cfg, splits, strategy, role=kind, run_dir=run_dir, view=view, epochs=cfg.optim.epochs,
                        weights=cfg.model.student_weights or cfg.model.weights, wrap=model,
                        train_table=unlabeled, export_base=export_base,
                        attention_images=cfg.run.tensorboard_images, scored=scored)
    return result, teacher


def _scored(cfg: ExperimentConfig, splits, found: RunResult, view: InputView, scored: tuple[str, ...]
            ) -> RunResult:
    """A finished run, scored on the splits of ``scored`` other than validation (every run is scored on
    it when trained) that it has no scores for (a run trained while tuning has validation scores only):
    its best weights evaluated on them, ``result.json`` rewritten."""
    missing = tuple(s for s in scored if s != "val" and s not in found.metrics)
    if not missing:
        return found
    say(f"{found.run_dir}: scoring it on the {' and '.join(missing)} split (not scored when trained)")
    _, evaluation, _ = datasets(cfg, splits, view, scored=missing)
    classifier = load_classifier(cfg, view, len(splits.class_names), found.run_dir)
    metrics = evaluate(classifier, {s: evaluation[s] for s in missing}, view, splits.class_names, found.run_dir)
    result = replace(found, metrics={**found.metrics, **metrics})
    write_result(result)
    return result


def _train(cfg: ExperimentConfig, splits, strategy, *, role: str, run_dir: Path, view: InputView, epochs: int,
           weights: str | None, wrap: Callable, train_table=None, export_base: Path | None = None,
           attention_images: int = 0, scored: tuple[str, ...] = SPLITS) -> RunResult:
    """Builds the classifier on ``view``, wraps it in its training model (``wrap``), fits, scores (also
    into TensorBoard's HParams, as ``role``: teacher, distill or alone) and, with ``export_base``,
    exports it. Only the chief of a multi-worker run writes ``result.json`` and
    the export; the other workers keep their files under ``workers/<task>``."""
    from ird_tf.training.runtime import worker_dir

    start = time.time()
    own = worker_dir(run_dir)
    own.mkdir(parents=True, exist_ok=True)
    try:
        return _fill(cfg, splits, strategy, role=role, run_dir=run_dir, own=own, start=start, view=view,
                     epochs=epochs, weights=weights, wrap=wrap, train_table=train_table,
                     export_base=export_base, attention_images=attention_images, scored=scored)
    except Exception as e:
        mark_failed(own, e)
        raise


def _fill(cfg: ExperimentConfig, splits, strategy, *, role: str, run_dir: Path, own: Path, start: float,
          view: InputView, epochs: int, weights: str | None, wrap: Callable, train_table, export_base,
          attention_images: int, scored: tuple[str, ...]) -> RunResult:
    from ird_tf.runs import pool
    from ird_tf.training.board import run_hparams, write_hparams
    from ird_tf.training.callbacks import classifier_of
    from ird_tf.training.loop import fit, make_optimizer
    from ird_tf.training.runtime import set_seed
    from ird_tf.training.timing import Stopwatch

    stopwatch = Stopwatch()
    cfg.save(own / "config.yaml")
    with stopwatch.phase("datasets"):
        train, evaluation, steps = datasets(cfg, splits, view, train_table=train_table, scored=scored)
    val = evaluation["val"]
    num_classes = len(splits.class_names)
    # the model's initial weights follow from its seed alone, not from what this process did before
    # (a teacher trained or only loaded, other runs of a study): a rerun or a resumed run is the same run
    set_seed(cfg.run.seed)
    with stopwatch.phase("build"), strategy.scope():
        key = pool.pool_key(cfg, role=role, epochs=epochs, steps=steps, classes=num_classes, view=view,
                            labeled=train_table is None)
        model = pool.compiled(key, wrap(build_for(cfg, view, num_classes, weights)), lambda m: m.compile(
            optimizer=make_optimizer(replace(cfg.optim, epochs=epochs), steps), jit_compile=cfg.run.jit))
        classifier = classifier_of(model)
    with stopwatch.phase("datasets"):
        calibration = calibration_dataset(cfg, splits, view, train_table=train_table) \
            if cfg.optim.recalibrate_bn else None
    with stopwatch.phase("fit"):
        fit(model, train, val, run_dir=run_dir, epochs=epochs, steps_per_epoch=steps, num_classes=num_classes,
            val_input_key=view.key, verbose=cfg.run.verbose, attention_images=attention_images,
            class_names=splits.class_names, calibration_ds=calibration, stopwatch=stopwatch,
            checkpoint_seconds=cfg.run.checkpoint_seconds)
    with stopwatch.phase("evaluation"):
        metrics = evaluate(classifier, evaluation, view, splits.class_names, own)
    with stopwatch.phase("hparams"):
        write_hparams(own / "tb", run_hparams(cfg, role), metrics, settings=cfg.to_dict())
    chief = own == run_dir
    if export_base is not None and chief:  # one export per run: the chief's
        with stopwatch.phase("export"):
            export_student(classifier, cfg, splits.class_names, run_dir, export_base / run_dir.name)
    wall = time.time() - start
    result = RunResult(own, metrics, wall, timing=stopwatch.summary(wall))
    if chief:  # the chief (or a single process) marks the run finished
        write_result(result)
    return result


__all__ = ["KINDS", "run_student", "run_teacher"]
