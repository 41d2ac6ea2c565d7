"""TensorBoard that explains itself: one run folder (``tb/``) per training run with self-describing tags,
titled attention panels, the run's settings as text and its hyperparameters and final scores for the
HParams plugin.

Tags (step = epoch, counted from 1 like ``history.csv`` and ``best.json``; every tag has a description
saying what it is, its weight and its unit)::

    train/loss_total                  the objective minimised: sum of w·term (+ regularisation), per epoch
    train/accuracy | train/agreement  student vs labels | vs the teacher's class (label-free batches)
    train_terms/<term>                each loss term, raw (unweighted)
    train_terms_weighted/<term>       w·term: these add up to train/loss_total
    val/cross_entropy                 cross-entropy alone on the validation split (no other term)
    val/accuracy, val/balanced_accuracy, val/kappa, val/macro_f1     ird_tf.scoring on the validation split
    optimizer/learning_rate
    attention/validation_patches      (Distiller) hr | lr | teacher map | student map, titled

and, in the sub-folder ``tb/hparams`` (:func:`write_hparams`, after evaluation), the run's HParams
session (hyperparameters), ``final/<split>_<score>`` (balanced accuracy and kappa of the selected
weights, best.weights.h5, on the validation and test splits) and the text ``run/settings``.

Keras's own TensorBoard callback is not used: it writes the training total and the validation
cross-entropy under one tag (``epoch_loss``) in two runs, leaves descriptions empty and counts epochs
from 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import matplotlib
import numpy as np
import tensorflow as tf
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ird_tf.attention import normalize_maps
from ird_tf.config import ExperimentConfig
from ird_tf.scoring import SCORES

CORRECT_COLOUR = "#1a9641"  # as in the attention figure (Figure 3): green, the top class is the true one
WRONG_COLOUR = "#d7191c"

TERM_TEXT = {
    "ce": "cross-entropy of the student's logits with the labels (nats)",
    "fm": "feature matching: RMSE between the student's and the frozen teacher's feature maps "
          "(units of the features)",
    "at": "AT+: distance between the teacher's and the student's normalised class-attention maps "
          "(Grad-CAM with positive gradient weighting; unitless)",
    "zk_at": "attention transfer (Zagoruyko & Komodakis): distance between channel-pooled feature maps "
             "(unitless)",
    "kd": "soft-label distillation: T²·KL(teacher ‖ student) at temperature T (nats)",
    "fmap": "feature-map loss (DiPalma et al.): Lp distance between feature maps, the teacher's resized to "
            "the student's grid (units of the features)",
}
SCORE_TEXT = {
    "accuracy": "share of patches whose top class is the label",
    "balanced_accuracy": "mean recall over the classes present in the labels",
    "kappa": "quadratic-weighted Cohen's kappa (NaN when undefined, e.g. a single class)",
    "macro_f1": "mean F1 over the classes present in the labels or the predictions",
}
SPLIT_TEXT = {"val": "validation", "test": "test"}

# Hyperparameters of every run, in the order the HParams table shows them.
HPARAMS = {
    "role": "teacher or student",
    "magnification": "magnification of the model's input (x)",
    "teacher_magnification": "magnification of the teacher's input (x)",
    "mode": "student input: upsampled (resized back to the teacher's size) or native (small image); "
            "hr for the teacher",
    "method": "loss terms: e.g. ce+fm+at (distilled), alone (student, labels only), teacher",
    "label_free": "distilled from unlabeled images (no cross-entropy)",
    "w_ce": "weight of the cross-entropy term (0: off)",
    "w_fm": "weight of feature matching (0: off)",
    "w_at": "weight of AT+ (0: off)",
    "w_zk_at": "weight of attention transfer (0: off)",
    "w_kd": "weight of soft-label distillation (0: off)",
    "w_fmap": "weight of the feature-map loss (0: off)",
    "at_norm": "attention-map normalisation",
    "at_distance": "attention-map distance",
    "backbone": "network of teacher and student",
    "init": "initial weights (none: from scratch)",
    "seed": "random seed",
    "epochs": "training epochs",
    "learning_rate": "initial learning rate",
    "batch_size": "batch size",
    "data": "data source",
    "fold": "validation fold",
}
FINAL_METRICS = ("val_balanced_accuracy", "val_kappa", "test_balanced_accuracy", "test_kappa")
TERMS = ("ce", "fm", "at", "zk_at", "kd", "fmap")


def _weights_text(term_weights: Mapping[str, float]) -> str:
    return " + ".join(f"{w:g}·{t}" for t, w in term_weights.items()) or "(none)"


def scalar_descriptions(term_weights: Mapping[str, float], label_smoothing: float = 0.0) -> dict[str, str]:
    """Tag -> description of every scalar the training callback may write, for these term weights."""
    total = _weights_text(term_weights)
    smooth = f" Labels smoothed by {label_smoothing:g}." if label_smoothing else ""
    d = {
        "train/loss_total": (
            f"The objective being minimised: {total} (+ the weights' regularisation losses, if any), mean "
            "over the epoch's training batches (augmented, class-balanced). It is NOT comparable with "
            "val/cross_entropy, which is the cross-entropy alone on validation patches."),
        "train/accuracy": "Student accuracy on the epoch's training batches (augmented); share in [0, 1].",
        "train/agreement": ("Label-free batches: share of training patches where the student's top class "
                            "is the teacher's; in [0, 1]."),
        "val/cross_entropy": ("Mean cross-entropy of the model being trained on the validation split, "
                              "in nats: the cross-entropy term alone, unweighted, no augmentation."),
        "optimizer/learning_rate": "The optimizer's learning rate at the end of the epoch.",
    }
    for term, w in term_weights.items():
        what = TERM_TEXT.get(term, term) + (smooth if term == "ce" else "")
        d[f"train_terms/{term}"] = (f"Raw (unweighted) loss term {term}: {what}. Mean over the epoch's "
                                    f"training batches. Its weight in train/loss_total is {w:g}.")
        d[f"train_terms_weighted/{term}"] = (
            f"{w:g}·{term}: the term as it enters train/loss_total ({total}); the weighted terms add up "
            f"to the total. Raw value: train_terms/{term}.")
    for score, text in SCORE_TEXT.items():
        d[f"val/{score}"] = f"Validation {score.replace('_', ' ')}: {text}; computed by ird_tf.scoring."
    return d


def panel_epochs(epochs: int, panels: int) -> set[int]:
    """The epochs (from 1) of a run of ``epochs`` that get attention panels: ``panels`` of them evenly
    spaced, the last always among them (every epoch when the run is that short)."""
    return {max(1, round(epochs * k / panels)) for k in range(1, panels + 1)} if panels > 0 else set()


class ScalarBoard(keras.callbacks.Callback):
    """Writes the epoch's logs to ``log_dir`` under self-describing tags (see the module doc), at step
    ``epoch + 1``; with ``val_batch`` also titled attention panels of those validation patches
    (``Distiller`` only) at ``panels`` evenly spaced epochs ending with the last (:func:`panel_epochs`:
    drawing them takes Grad-CAM of both models, 0.05 s, and four drawings of 0.02 s each on a CPU, per
    panel epoch). Put it after the callbacks that add validation scores and the
    learning rate to the logs."""

    def __init__(self, log_dir: str | Path, *, term_weights: Mapping[str, float],
                 label_smoothing: float = 0.0, val_batch=None, class_names: Sequence[str] | None = None,
                 num_classes: int | None = None, panels: int = 4, max_images: int = 4):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.term_weights = {k: float(v) for k, v in term_weights.items()}
        self.descriptions = scalar_descriptions(self.term_weights, label_smoothing)
        self.panels, self.n = int(panels), int(max_images)
        self.x = self.labels = None
        if val_batch is not None and self.n > 0:
            x, labels = val_batch if isinstance(val_batch, tuple | list) else (val_batch, None)
            self.x = {k: np.asarray(x[k])[:self.n] for k in ("hr", "lr")}
            self.labels = None if labels is None else np.asarray(labels)[:self.n]
        if class_names is None and num_classes is not None:
            class_names = [str(i) for i in range(num_classes)]
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self._writer = None
        self._canvas: PanelCanvas | None = None

    def _scalars(self, logs: Mapping[str, Any]) -> dict[str, float]:
        out = {}
        if "loss" in logs:
            out["train/loss_total"] = logs["loss"]
        for key in ("accuracy", "agreement"):
            if key in logs:
                out[f"train/{key}"] = logs[key]
        for term, w in self.term_weights.items():
            if term in logs:
                out[f"train_terms/{term}"] = logs[term]
                out[f"train_terms_weighted/{term}"] = w * float(logs[term])
        if "val_loss" in logs:
            out["val/cross_entropy"] = logs["val_loss"]
        for score in SCORE_TEXT:
            if f"val_{score}" in logs:
                out[f"val/{score}"] = logs[f"val_{score}"]
        if "learning_rate" in logs:
            out["optimizer/learning_rate"] = logs["learning_rate"]
        return out

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        self._writer = self._writer or tf.summary.create_file_writer(str(self.log_dir))
        with self._writer.as_default():
            for tag, value in self._scalars(logs or {}).items():
                tf.summary.scalar(tag, float(value), step=step, description=self.descriptions.get(tag))
            if self.x is not None and step in panel_epochs(self.params.get("epochs") or step, self.panels):
                self._canvas = self._canvas or PanelCanvas()
                images = attention_panels(self.model, self.x, self.labels, self.class_names, self._canvas)
                tf.summary.image("attention/validation_patches", images, step=step, max_outputs=self.n,
                                 description=PANEL_DESCRIPTION)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# -- attention panels ------------------------------------------------------------------------------------
PANEL_DESCRIPTION = (
    "One validation patch per image (the same patches every epoch): the teacher's input (hr), the "
    "student's input (lr, shown at the teacher's size), the teacher's attention map over hr and the "
    "student's over lr. The title gives the patch's true class and the class whose map is shown (the "
    "true class; without labels the teacher's prediction); under each map, that model's probability of "
    "the true class and its top class, green when the top class is right, red when wrong.")


def overlay(images: np.ndarray, maps: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Colour-mapped maps ``[n, h, w]`` (min-max normalised per image) blended over images
    ``[n, S, S, 3]`` in [0, 1]."""
    size = images.shape[1:3]
    m = normalize_maps(tf.convert_to_tensor(maps[..., None], tf.float32), method="minmax")
    m = tf.image.resize(m, size, method="bilinear").numpy()[..., 0].clip(0, 1)
    heat = matplotlib.colormaps[cmap](m)[..., :3]
    return ((1 - alpha) * images + alpha * heat).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def panel_titles(labels, target, p_teacher: np.ndarray, p_student: np.ndarray,
                 class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per patch: the title (true class, class of the map) and one caption per model with the
    probability of the true class and the top class, coloured green (right) or red (wrong)."""
    out = []
    for i, t in enumerate(np.asarray(target).reshape(-1)):
        label = None if labels is None else int(np.asarray(labels).reshape(-1)[i])
        shown = class_names[int(t)]
        if label is None:
            title = f"true class: unknown · map of class {shown} (teacher's prediction)"
        else:
            title = f"true class: {class_names[label]} · maps of class {shown} (the true class)"
        captions = {}
        for who, p in (("teacher", p_teacher[i]), ("student", p_student[i])):
            top = int(np.argmax(p))
            ref = label if label is not None else int(t)
            captions[who] = (f"{who}: p({class_names[ref]}) = {p[ref]:.2f}\ntop class {class_names[top]} "
                             f"({p[top]:.2f})", CORRECT_COLOUR if top == ref else WRONG_COLOUR)
        out.append({"title": title, "captions": captions})
    return out


class PanelCanvas:
    """One Matplotlib figure of four titled images (hr | lr | teacher map | student map), laid out once
    and redrawn per patch: building the figure, its axes and texts each time cost about 4x the drawing
    itself (57 ms against 19 ms a patch on a CPU)."""

    HEADS = ("teacher input (hr)", "student input (lr)", "teacher map on hr", "student map on lr")

    def __init__(self, dpi: int = 80):
        n = len(self.HEADS)
        self.fig = Figure(figsize=(2.2 * n, 3.1), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        self.images, self.captions = [], {}
        for k, head in enumerate(self.HEADS):
            ax = self.fig.add_axes((k / n + 0.01, 0.2, 1 / n - 0.02, 0.64))
            self.images.append(ax.imshow(np.zeros((2, 2, 3)), interpolation="nearest"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(head, fontsize=9)
            who = {2: "teacher", 3: "student"}.get(k)
            if who:
                self.captions[who] = ax.set_xlabel("", fontsize=8, fontweight="bold")
        self.title = self.fig.suptitle("", fontsize=10, y=0.98)

    def draw(self, panels: Sequence[np.ndarray], title: str,
             captions: Mapping[str, tuple[str, str]]) -> np.ndarray:
        """``[H, W, 3]`` in [0, 1]: the four ``panels`` under their heads, ``title`` above, and each
        model's ``(text, colour)`` caption under its map."""
        for artist, image in zip(self.images, panels, strict=True):
            image = np.clip(image, 0, 1)
            artist.set_data(image)
            artist.set_extent((-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
        for who, (text, colour) in captions.items():
            self.captions[who].set_text(text)
            self.captions[who].set_color(colour)
        self.title.set_text(title)
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0


def attention_panels(distiller: keras.Model, x: dict, labels=None, class_names: Sequence[str] | None = None,
                     canvas: PanelCanvas | None = None) -> np.ndarray:
    """``[n, H, W, 3]`` titled images, one per patch: hr | lr | teacher map on hr | student map on lr
    for the target class (the label, else the teacher's prediction), with the true class, the map's
    class and the teacher's and student's probabilities (see :data:`PANEL_DESCRIPTION`). ``canvas``: the
    figure to draw on (a caller drawing panels often keeps one; default a new one)."""
    out = distiller.maps({"hr": tf.convert_to_tensor(x["hr"]), "lr": tf.convert_to_tensor(x["lr"])},
                         None if labels is None else tf.cast(labels, tf.int32))
    target = out["target"].numpy()
    p_teacher, p_student = _softmax(out["teacher_logits"].numpy()), _softmax(out["student_logits"].numpy())
    names = list(class_names) if class_names is not None else [str(i) for i in range(p_teacher.shape[-1])]

    def pick(maps):
        maps = maps.numpy()
        return maps[..., 0] if maps.shape[-1] == 1 else maps[np.arange(len(target)), ..., target]

    hr = np.asarray(x["hr"], np.float32)
    lr = tf.image.resize(np.asarray(x["lr"], np.float32), hr.shape[1:3], method="nearest").numpy()
    t_over, s_over = overlay(hr, pick(out["teacher"])), overlay(lr, pick(out["student"]))
    texts = panel_titles(labels, target, p_teacher, p_student, names)
    canvas = canvas or PanelCanvas()
    return np.stack([canvas.draw((hr[i], lr[i], t_over[i], s_over[i]), text["title"], text["captions"])
                     for i, text in enumerate(texts)])


# -- hyperparameters ------------------------------------------------------------------------------------
def run_hparams(cfg: ExperimentConfig, kind: str = "distill") -> dict[str, bool | int | float | str]:
    """The hyperparameters of a run (:data:`HPARAMS`, every key always present) from its config.
    ``kind``: ``"teacher"``, ``"distill"`` (student from the teacher) or ``"alone"`` (student, labels
    only). Pure: reads nothing but ``cfg``."""
    if kind not in ("teacher", "distill", "alone"):
        raise ValueError(f"run_hparams: kind={kind!r}; expected 'teacher', 'distill' or 'alone'")
    d, loss = cfg.data, cfg.loss
    teacher = kind == "teacher"
    weights = {"ce": 1.0} if kind in ("teacher", "alone") else loss.weights()
    label_free = kind == "distill" and bool(d.unlabeled)
    method = "teacher" if teacher else ("alone" if kind == "alone" else "+".join(weights))
    return {
        "role": "teacher" if teacher else "student",
        "magnification": float(d.teacher_mag if teacher else d.student_mag),
        "teacher_magnification": float(d.teacher_mag),
        "mode": "hr" if teacher else d.mode,
        "method": method + (" (label-free)" if label_free else ""),
        "label_free": label_free,
        **{f"w_{t}": float(weights.get(t, 0.0)) for t in TERMS},
        "at_norm": loss.at_norm if weights.get("at") else "-",
        "at_distance": loss.at_distance if weights.get("at") else "-",
        "backbone": cfg.model.backbone,
        "init": str((cfg.model.weights if teacher else (cfg.model.student_weights or cfg.model.weights))
                    or "none"),
        "seed": int(cfg.run.seed),
        "epochs": int(cfg.optim.teacher_epochs if teacher else cfg.optim.epochs),
        "learning_rate": float(cfg.optim.learning_rate),
        "batch_size": int(d.batch_size),
        "data": d.source,
        "fold": d.fold,
    }


def final_scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{"<split>_<score>": value}`` from ``{split: metrics}`` (what evaluation returns) or from an
    already flat mapping; undefined values stay NaN."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}_{s}": value[s] for s in SCORES if s in value})
        else:
            flat[key] = value
    return {k: math.nan if v is None else float(v) for k, v in flat.items()}


def _metric_description(name: str) -> str:
    split, _, score = name.partition("_")
    return (f"{SCORE_TEXT.get(score, score)}; {SPLIT_TEXT.get(split, split)} split, weights selected by "
            "validation kappa (best.weights.h5).")


def settings_markdown(hparams: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> str:
    """The run's settings as Markdown: the hyperparameter table, then the full config as YAML."""
    lines = ["| hyperparameter | value | meaning |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {HPARAMS.get(k, '')} |" for k, v in hparams.items()]
    if settings is not None:
        text = yaml.safe_dump(dict(settings), sort_keys=False)
        lines += ["", "Full settings (config.yaml):", "", *("    " + line for line in text.splitlines())]
    return "\n".join(lines)


SUMMARY_RUN = "hparams"  # the sub-folder of tb/ holding a run's HParams session and final scores


def write_hparams(tb_dir: str | Path, hparams: Mapping[str, Any], metrics: Mapping[str, Any], *,
                  settings: Mapping[str, Any] | None = None, step: int | None = None) -> Path:
    """Writes a run's HParams session to ``tb_dir/hparams`` (returned): its hyperparameters
    (``hparams``, e.g. :func:`run_hparams`), its final scores as ``final/<split>_<score>`` scalars
    (``metrics``: ``{split: metrics}`` or flat, see :func:`final_scores`; the HParams table's metric
    columns) and its settings as the text ``run/settings``. ``step``: defaults to ``hparams["epochs"]``.

    The session sits in its own sub-folder so that only the final scores are HParams metrics (the
    plugin takes every scalar of a session's folder, and the training curves are in ``tb_dir``). No
    experiment definition is written: TensorBoard then derives each hyperparameter's type and values
    from all the runs it shows, and lists the hyperparameters that differ between them first."""
    from tensorboard.plugins.hparams import api as hp

    out = Path(tb_dir) / SUMMARY_RUN
    out.mkdir(parents=True, exist_ok=True)
    scores = final_scores(metrics)
    step = int(hparams.get("epochs", 0) if step is None else step)
    writer = tf.summary.create_file_writer(str(out))
    try:
        with writer.as_default():
            hp.hparams(dict(hparams), trial_id=Path(tb_dir).parent.name)
            for name in FINAL_METRICS:
                if name in scores:
                    tf.summary.scalar(f"final/{name}", scores[name], step=step,
                                      description=_metric_description(name))
            tf.summary.text("run/settings", settings_markdown(hparams, settings), step=step,
                            description="Hyperparameters of this run and its full settings.")
        writer.flush()
    finally:
        writer.close()
    return out


__all__ = [
    "PanelCanvas", "ScalarBoard", "attention_panels", "overlay", "panel_titles", "scalar_descriptions",
    "run_hparams",
    "final_scores", "settings_markdown", "write_hparams", "HPARAMS", "FINAL_METRICS", "PANEL_DESCRIPTION",
    "SUMMARY_RUN",
]
