"""Run orchestration shared by the commands: the data, the teacher (found or trained), the student.

A run directory is named from the settings that change its result (a short digest of them), so the
same command finds its own earlier run — finished (reused) or killed (resumed from its backup).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ird_tf.config import ExperimentConfig

SPLITS = ("val", "test")


def log(msg: str) -> None:
    print(f"[ird_tf {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _mag(x: float) -> str:
    return f"{x:g}x"


def load_splits(cfg: ExperimentConfig):
    """The labeled train/val/test tables of the configured source (synthetic: generated on first use)."""
    from ird_tf.data.readers import read_class_folders, read_sicap
    from ird_tf.data.synthetic import ensure_dataset

    d = cfg.data
    if d.source == "synthetic":
        root = ensure_dataset(Path(d.cache_dir), d.synthetic)
        return read_sicap(root, d.fold)
    if d.source == "sicap":
        return read_sicap(d.root, d.fold, skip_missing=d.skip_missing)
    return read_class_folders(d.root, d.class_names)


def _data_identity(cfg: ExperimentConfig) -> dict:
    d = cfg.data
    ident = {"source": d.source, "root": str(Path(d.root).resolve()) if d.root else None, "fold": d.fold,
             "classes": d.class_names, "size": d.image_size, "augment": asdict(d.augment),
             "batch": d.batch_size, "balanced": d.class_balanced}
    if d.source == "synthetic":
        ident["synthetic"] = asdict(d.synthetic)
    return ident


def teacher_dir(cfg: ExperimentConfig) -> Path:
    """Where the teacher for these data, fold, backbone and seed lives."""
    from ird_tf.models.backbones import get_backbone

    ident = {"data": _data_identity(cfg), "teacher_mag": cfg.data.teacher_mag,
             "backbone": cfg.model.backbone, "revision": get_backbone(cfg.model.backbone).revision,
             "weights": cfg.model.weights,
             "optim": replace(cfg.optim, epochs=0).__dict__, "seed": cfg.run.seed,
             "precision": cfg.run.precision,
             # the one loss setting a teacher trains with (absent when 0, so older digests hold)
             **({"label_smoothing": cfg.loss.label_smoothing} if cfg.loss.label_smoothing else {})}
    name = (f"{cfg.model.backbone}_{_mag(cfg.data.teacher_mag)}_{cfg.data.fold}_s{cfg.run.seed}"
            f"_{digest(ident)}")
    return Path(cfg.run.output_dir) / "teachers" / name


def student_dir(cfg: ExperimentConfig, kind: str = "distill") -> Path:
    """Where the student of these settings lives (``--name`` overrides the derived name)."""
    if cfg.run.name:
        return Path(cfg.run.output_dir) / "students" / cfg.run.name
    ident = {"teacher": teacher_dir(cfg).name, "cfg": cfg.to_dict(), "kind": kind}
    ident["cfg"]["run"].pop("verbose", None)
    terms = "+".join(cfg.loss.weights()) if kind == "distill" else kind
    name = (f"{cfg.model.backbone}_{_mag(cfg.data.student_mag)}_{cfg.data.mode}_{terms}"
            f"_{cfg.data.fold}_s{cfg.run.seed}_{digest(ident)}")
    return Path(cfg.run.output_dir) / "students" / name


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, dict]  # split -> metrics
    seconds: float


def read_result(run_dir: Path) -> RunResult | None:
    """A finished run's metrics, or None when the run has not finished."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return RunResult(run_dir, d["metrics"], d["seconds"])


def write_result(result: RunResult) -> None:
    payload = {"metrics": result.metrics, "seconds": result.seconds}
    tmp = result.run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(result.run_dir / "result.json")  # atomic: a reader never sees half a file


def _lock_owner(lock: Path) -> tuple[str, int] | None:
    try:
        host, pid = lock.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_claim(run_dir: Path, cfg: ExperimentConfig, poll: float = 5.0) -> Iterator[RunResult | None]:
    """Yields the run's result if it has finished, else None while this process owns the run.

    One process trains a run directory at a time (``lock.pid`` holds its host and pid): another
    command or sweep that needs the same run waits for it and then finds its result, so sweeps can run
    side by side. A lock left by a killed process on this host is taken over. Multi-worker runs skip
    the lock: all their workers train the same run together.
    """
    found = read_result(run_dir)
    if found is not None or cfg.run.strategy == "multiworker":
        yield found
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock, me, waiting, owned = run_dir / "lock.pid", socket.gethostname(), False, False
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is None and time.time() - lock.stat().st_mtime < 10 * poll + 10:
                owner = (me, -1)  # just created, its owner is writing it
            if owner is None or (owner[0] == me and owner[1] != -1 and not _alive(owner[1])):
                lock.unlink(missing_ok=True)  # its process is gone (killed): take the run over
                continue
            if read_result(run_dir) is not None:
                break
            if not waiting:
                log(f"{run_dir} is being trained by process {owner[1]} on {owner[0]}: waiting for it "
                    f"(delete {lock} if that process is gone)")
                waiting = True
            time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{me} {os.getpid()}\n")
        owned = True
        break
    try:
        yield read_result(run_dir)
    finally:
        if owned:
            lock.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- setup
def setup_runtime(cfg: ExperimentConfig):
    """Devices, strategy, seed, precision and XLA, in the order TensorFlow needs; returns the strategy."""
    import tensorflow as tf

    from ird_tf.training.runtime import configure_cpu_devices, make_strategy, set_jit, set_precision, set_seed

    if cfg.run.strategy == "mirrored" and not tf.config.list_physical_devices("GPU"):
        configure_cpu_devices(2)
    strategy = make_strategy(cfg.run.strategy)
    set_seed(cfg.run.seed)
    set_precision(cfg.run.precision)
    set_jit(cfg.run.jit)
    return strategy


def datasets(cfg: ExperimentConfig, splits, *, factor: int, mode: str, train_table=None):
    """(train, val, test, steps_per_epoch): the training set repeats (augmented, class-balanced), the
    evaluation sets are one pass in file order. ``train_table`` replaces the labelled training table
    (e.g. an unlabeled folder: then the training batches carry no labels)."""
    from ird_tf.data.pipeline import make_dataset, steps_per_epoch

    d = cfg.data
    labeled = train_table is None
    table = splits.train if labeled else train_table
    common = dict(image_size=d.image_size, factor=factor, mode=mode, batch_size=d.batch_size,
                  cache=d.cache, skip_corrupt=d.skip_corrupt, num_classes=len(splits.class_names),
                  cache_dir=Path(d.cache_dir) / "checks")
    train = make_dataset(table, training=True, augment=d.augment, seed=cfg.run.seed, labeled=labeled,
                         class_balanced=d.class_balanced and labeled, jit=cfg.run.precision == "float32",
                         **common)
    val = make_dataset(splits.val, training=False, **common)
    test = make_dataset(splits.test, training=False, **common)
    return train, val, test, steps_per_epoch(len(table), d.batch_size)


def evaluate(classifier, ds_by_split: dict, input_key: str, class_names, run_dir: Path) -> dict[str, dict]:
    """Metrics of ``classifier`` on each split, written as ``metrics_<split>.json/.csv``."""
    from ird_tf.evaluation.metrics import classification_metrics, predict_proba, write_metrics

    out = {}
    for split, ds in ds_by_split.items():
        y_true, y_prob = predict_proba(classifier, ds, input_key=input_key)
        m = classification_metrics(y_true, y_prob, len(class_names), class_names=list(class_names))
        write_metrics(m, run_dir / f"metrics_{split}.json", run_dir / f"metrics_{split}.csv")
        out[split] = m
    return out


def _optimizer(cfg: ExperimentConfig, epochs: int):
    from ird_tf.training.loop import make_optimizer

    return make_optimizer(replace(cfg.optim, epochs=epochs))


# ------------------------------------------------------------------------------------------------ runs
def run_teacher(cfg: ExperimentConfig, splits, strategy) -> RunResult:
    """The teacher for these data, fold, backbone and seed: found on disk, or trained now (and said so)."""
    run_dir = teacher_dir(cfg)
    with run_claim(run_dir, cfg) as found:
        if found is not None:
            log(f"teacher found: {run_dir}")
            return found
        return _train_teacher(cfg, splits, strategy, run_dir)


def _train_teacher(cfg: ExperimentConfig, splits, strategy, run_dir: Path) -> RunResult:
    from ird_tf.models import build_classifier
    from ird_tf.training.board import run_hparams, write_hparams
    from ird_tf.training.loop import fit
    from ird_tf.training.runtime import worker_dir
    from ird_tf.training.teacher import Teacher

    log(f"no finished teacher at {run_dir}: training it first ({cfg.optim.teacher_epochs} epochs)")
    start = time.time()
    own = worker_dir(run_dir)
    own.mkdir(parents=True, exist_ok=True)
    cfg.save(own / "config.yaml")
    train, val, test, steps = datasets(cfg, splits, factor=1, mode="upsampled")
    size = cfg.data.image_size
    with strategy.scope():
        classifier = build_classifier(cfg.model.backbone, len(splits.class_names), (size, size, 3),
                                      cfg.model.weights, name="teacher")
        model = Teacher(classifier, input_key="hr", label_smoothing=cfg.loss.label_smoothing)
        model.compile(optimizer=_optimizer(cfg, cfg.optim.teacher_epochs), jit_compile=cfg.run.jit)
    fit(model, train, val, run_dir=run_dir, epochs=cfg.optim.teacher_epochs, steps_per_epoch=steps,
        num_classes=len(splits.class_names), val_input_key="hr", verbose=cfg.run.verbose)
    metrics = evaluate(classifier, {"val": val, "test": test}, "hr", splits.class_names, own)
    write_hparams(own / "tb", run_hparams(cfg, "teacher"), metrics, settings=cfg.to_dict())
    result = RunResult(own, metrics, time.time() - start)
    if own == run_dir:  # the chief (or a single process) marks the run finished
        write_result(result)
    return result


def load_teacher(cfg: ExperimentConfig, num_classes: int, run_dir: Path):
    from ird_tf.models import build_classifier

    size = cfg.data.image_size
    teacher = build_classifier(cfg.model.backbone, num_classes, (size, size, 3), None, name="teacher")
    teacher.load_weights(str(run_dir / "best.weights.h5"))
    return teacher


def run_student(cfg: ExperimentConfig, splits, strategy, *, kind: str = "distill",
                export_base: Path | None = None) -> tuple[RunResult, RunResult | None]:
    """Trains the student at ``data.student_mag`` — ``kind="distill"`` from the teacher with the
    configured terms (label-free when ``data.unlabeled`` is set), ``kind="alone"`` with labels only —
    and returns (student result, teacher result or None). Exports it when ``export_base`` is given."""
    teacher_result = run_teacher(cfg, splits, strategy) if kind == "distill" else None
    run_dir = student_dir(cfg, kind)
    with run_claim(run_dir, cfg) as found:
        if found is not None:
            log(f"student found: {run_dir}")
            return found, teacher_result
        result = _train_student(cfg, splits, strategy, kind, run_dir, teacher_result, export_base)
    return result, teacher_result


def _train_student(cfg: ExperimentConfig, splits, strategy, kind: str, run_dir: Path,
                   teacher_result: RunResult | None, export_base: Path | None) -> RunResult:
    from ird_tf.data.readers import read_unlabeled
    from ird_tf.models import build_classifier
    from ird_tf.training.board import run_hparams, write_hparams
    from ird_tf.training.distiller import Distiller
    from ird_tf.training.loop import fit
    from ird_tf.training.runtime import worker_dir
    from ird_tf.training.teacher import Teacher

    what = "distilling" if kind == "distill" else "training alone"
    log(f"student {what} at {cfg.data.student_mag:g}x ({cfg.data.mode}): {run_dir}")
    start = time.time()
    own = worker_dir(run_dir)
    own.mkdir(parents=True, exist_ok=True)
    cfg.save(own / "config.yaml")
    d = cfg.data
    unlabeled = read_unlabeled(d.unlabeled) if (d.unlabeled and kind == "distill") else None
    train, val, test, steps = datasets(cfg, splits, factor=d.factor, mode=d.mode, train_table=unlabeled)
    num_classes = len(splits.class_names)
    with strategy.scope():
        student = build_classifier(cfg.model.backbone, num_classes, (d.student_size, d.student_size, 3),
                                   cfg.model.student_weights or cfg.model.weights, name="student")
        if kind == "distill":
            teacher = load_teacher(cfg, num_classes, teacher_result.run_dir)
            model = Distiller(teacher, student, cfg.loss, labeled=unlabeled is None)
        else:
            model = Teacher(student, input_key="lr", label_smoothing=cfg.loss.label_smoothing)
        model.compile(optimizer=_optimizer(cfg, cfg.optim.epochs), jit_compile=cfg.run.jit)
    fit(model, train, val, run_dir=run_dir, epochs=cfg.optim.epochs, steps_per_epoch=steps,
        num_classes=num_classes, val_input_key="lr", verbose=cfg.run.verbose,
        attention_images=cfg.run.tensorboard_images, class_names=splits.class_names)
    metrics = evaluate(student, {"val": val, "test": test}, "lr", splits.class_names, own)
    write_hparams(own / "tb", run_hparams(cfg, kind), metrics, settings=cfg.to_dict())
    if export_base is not None and own == run_dir:  # one export per run: the chief's
        export_student(student, cfg, splits.class_names, run_dir, export_base / run_dir.name)
    result = RunResult(own, metrics, time.time() - start)
    if own == run_dir:
        write_result(result)
    return result


def export_student(student, cfg: ExperimentConfig, class_names, run_dir: Path, export_dir: Path) -> Path:
    """Exports the student's best weights as the next version under ``export_dir``, unless a version of
    the same run and weights is there already (a run killed after its export and resumed)."""
    from ird_tf.export.serving import export_for_serving, find_export

    d = cfg.data
    weights = hashlib.sha256((run_dir / "best.weights.h5").read_bytes()).hexdigest()
    found = find_export(export_dir, run_dir=str(run_dir), weights_sha256=weights)
    if found is not None:
        log(f"student already exported for TF Serving: {found}")
        return found
    path = export_for_serving(
        student, export_dir, input_size=d.student_size, class_names=class_names, factor=d.factor,
        mode=d.mode, metadata={"teacher_mag": d.teacher_mag, "student_mag": d.student_mag,
                               "backbone": cfg.model.backbone, "run_dir": str(run_dir),
                               "weights_sha256": weights},
    )
    log(f"student exported for TF Serving: {path}")
    return path


def summary_table(cfg: ExperimentConfig, teacher: RunResult | None, student: RunResult | None) -> str:
    """The closing table: teacher at its magnification and student at its own, val and test scores."""
    from ird_tf.evaluation.metrics import format_table

    rows = []
    for who, res, mag in (("teacher", teacher, cfg.data.teacher_mag),
                          ("student", student, cfg.data.student_mag)):
        if res is not None:
            row = {"model": who, "magnification": f"{mag:g}x", "run": str(res.run_dir)}
            for split in SPLITS:
                m = res.metrics.get(split, {})
                row[f"{split} bal. acc."] = m.get("balanced_accuracy")
                row[f"{split} kappa"] = m.get("kappa")
            rows.append(row)
    cols = ["model", "magnification", *(f"{s} {k}" for s in SPLITS for k in ("bal. acc.", "kappa")), "run"]
    return format_table(rows, cols, digits=3)
