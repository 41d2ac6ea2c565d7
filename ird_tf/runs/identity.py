"""Run identity: which settings make a run, and the directory that holds it.

A run directory is named from the settings that change its result (a short digest of them), so the
same command finds its own earlier run — finished (reused) or killed (resumed from its backup). The
name starts with what tells runs apart (magnification, mode, loss terms, seed) and ends with the
digest, so TensorBoard's sidebar and a directory listing show the differences first. TF-free.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ird_tf.config import BACKBONE_REVISIONS, DataConfig, ExperimentConfig


def digest(obj: Any) -> str:
    """Eight hex digits of a stable hash of ``obj`` (JSON with sorted keys)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _mag(x: float) -> str:
    return f"{x:g}x"


def data_identity(d: DataConfig) -> dict[str, Any]:
    """What the labelled data is: the synthetic dataset's own name (its settings and the generator's
    revision: a new drawing is new data) or the resolved root of a dataset on disk; fold and classes."""
    if d.source == "synthetic":
        from ird_tf.data.synthetic.dataset import dataset_root

        data = dataset_root(".", d.synthetic).name
    else:
        data = str(Path(d.root).resolve()) if d.root else None
    return {"source": d.source, "data": data, "fold": d.fold, "classes": d.class_names}


def _training_data(d: DataConfig) -> dict[str, Any]:
    """The data and how a run draws it (size, augmentation, batch, class balance)."""
    return {**data_identity(d), "size": d.image_size, "augment": asdict(d.augment), "batch": d.batch_size,
            "balanced": d.class_balanced}


_SCHEDULE_FIELDS = ("schedule", "warmup_epochs", "final_lr_fraction")


def optim_identity(optim: dict[str, Any]) -> dict[str, Any]:
    """The optimisation settings that name a run: a constant learning rate leaves out the schedule's
    settings (they do not act) and ``recalibrate_bn`` is left out when off, so runs made before these
    settings existed keep their names."""
    out = dict(optim)
    if out.get("schedule", "constant") == "constant":
        out = {k: v for k, v in out.items() if k not in _SCHEDULE_FIELDS}
    if not out.get("recalibrate_bn", False):
        out.pop("recalibrate_bn", None)
    return out


def teacher_dir(cfg: ExperimentConfig) -> Path:
    """Where the teacher for these data, fold, backbone, seed and teacher settings lives."""
    ident = {"data": _training_data(cfg.data), "teacher_mag": cfg.data.teacher_mag,
             "backbone": cfg.model.backbone, "revision": BACKBONE_REVISIONS[cfg.model.backbone],
             "weights": cfg.model.weights, "optim": optim_identity(asdict(replace(cfg.optim, epochs=0))),
             "seed": cfg.run.seed, "precision": cfg.run.precision,
             "label_smoothing": cfg.loss.label_smoothing}
    name = (f"{_mag(cfg.data.teacher_mag)}_s{cfg.run.seed}_{cfg.model.backbone}_{cfg.data.fold}"
            f"_{digest(ident)}")
    return Path(cfg.run.output_dir) / "teachers" / name


def student_dir(cfg: ExperimentConfig, kind: str = "distill") -> Path:
    """Where the student of these settings lives (``--name`` overrides the derived name). ``kind``:
    ``distill`` (from the teacher) or ``alone`` (labels only)."""
    if cfg.run.name:
        return Path(cfg.run.output_dir) / "students" / cfg.run.name
    settings = cfg.to_dict()
    for section, key in (("run", "verbose"), ("run", "output_dir"), ("run", "checkpoint_seconds"),
                         ("data", "cache_dir")):
        settings[section].pop(key, None)  # how it is shown, saved and where files go, not what is trained
    if settings["model"].get("student_backbone") is None:  # unset: digests of earlier runs unchanged
        settings["model"].pop("student_backbone", None)
    settings["optim"] = optim_identity(settings["optim"])
    settings["data"] = {**settings["data"], **data_identity(cfg.data)}
    ident = {"teacher": teacher_dir(cfg).name, "cfg": settings, "kind": kind}
    terms = "+".join(cfg.loss.weights()) if kind == "distill" else kind
    name = (f"{_mag(cfg.data.student_mag)}_{cfg.data.mode}_{terms}_s{cfg.run.seed}_{cfg.model.student}"
            f"_{cfg.data.fold}_{digest(ident)}")
    return Path(cfg.run.output_dir) / "students" / name


__all__ = ["data_identity", "digest", "optim_identity", "student_dir", "teacher_dir"]
