"""The Distiller: a frozen teacher on the high-magnification view teaches a student on the low one.

One train step: the teacher runs on ``x["hr"]`` (``training=False``) *before* the tape opens, so
neither its ops nor its variables are ever recorded; its maps (when a term needs them) are computed
there once, first order, and held constant with ``tf.stop_gradient``. The student then runs on
``x["lr"]`` inside a tape that therefore sees only the student's variables (the teacher's are also
non-trainable); its maps come from the same forward pass (``attention_maps`` keeps the graph for
second-order gradients). The loss is the weighted sum of the
terms of ``LossConfig.weights()``, looked up in ``ird_tf.losses.TERMS``; each term has its own tracker.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ird_tf.attention import attention_maps
from ird_tf.config import ConfigError, LossConfig
from ird_tf.losses import TermInputs, cross_entropy, get_term
from ird_tf.training.steps import (
    Wrapper,
    batch_size,
    float32_outputs,
    regularization,
    replica_share,
    step_logs,
    unpack,
)
from ird_tf.training.supervised import Supervised


class Distiller(Wrapper):
    """``Distiller(teacher_model, student_model, loss_cfg, labeled=True)``.

    ``teacher_model``: a trained classifier (or a ``Supervised``); it is frozen here. ``student_model``: the
    classifier to train; ``call`` returns its outputs for ``x["lr"]`` and checkpoints save it.
    Labels are optional per batch: a batch of ``{"hr", "lr"}`` alone trains label-free (DiPalma et al.)
    with the configured terms that need no labels (CE is left out of that step, and of its logs), and
    logs ``agreement`` (student vs teacher class) instead of ``accuracy``. ``labeled=False`` declares
    unlabeled data: labels in a batch are then ignored, and terms that need labels are refused at
    construction. Target-class maps
    (``loss_cfg.at_classes="target"``) use the labels or, without labels, the teacher's predicted class.
    """

    def __init__(self, teacher_model: keras.Model, student_model: keras.Model, loss_cfg: LossConfig, *,
                 labeled: bool = True, name: str = "distiller", **kwargs):
        super().__init__(name=name, dtype=student_model.dtype_policy, **kwargs)
        loss_cfg.validate()
        if isinstance(teacher_model, Supervised):
            teacher_model = teacher_model.classifier
        teacher_model.trainable = False
        self.teacher = teacher_model
        self.student = student_model
        self.loss_cfg = loss_cfg
        self.labeled = bool(labeled)
        self._weights_by_term = tuple(loss_cfg.weights().items())
        self._terms = tuple((name, get_term(name), w) for name, w in self._weights_by_term)
        self._label_free_terms = tuple(t for t in self._terms if not t[1].needs_labels)
        for term_name, term, weight in self._terms:
            if term.needs_labels and not self.labeled:
                raise ConfigError(
                    f"loss.{term_name}={weight:g}: the {term_name!r} term needs labels but the data is "
                    f"unlabeled; set loss.{term_name}=0 or train on labelled data"
                )
        self.needs_teacher = any(t.needs_teacher for _, t, _ in self._terms)
        self.needs_maps = any(t.needs_maps for _, t, _ in self._terms)
        if self.needs_maps and loss_cfg.at_classes == "target" and not (self.labeled or self.needs_teacher):
            raise ConfigError(
                "loss.at_classes='target' without labels needs a teacher term to pick the class"
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {n: keras.metrics.Mean(name=n) for n, _ in self._weights_by_term}
        if "ce" not in self.term_trackers:  # test_step always reports the student's cross-entropy
            self.term_trackers["ce"] = keras.metrics.Mean(name="ce")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.agreement_tracker = keras.metrics.SparseCategoricalAccuracy(name="agreement")
        self.built = True

    @property
    def classifier(self) -> keras.Model:
        """The network being trained (what checkpoints and evaluation use)."""
        return self.student

    @property
    def term_weights(self) -> dict[str, float]:
        """The configured loss terms and their weights (``LossConfig.weights()``)."""
        return dict(self._weights_by_term)

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self._weights_by_term)

    @property
    def metrics(self):
        trackers = self.term_trackers.values()
        return [self.loss_tracker, *trackers, self.accuracy_tracker, self.agreement_tracker]

    def call(self, x, training=False):
        return self.student(x["lr"] if isinstance(x, dict) else x, training=training)

    # -- the two halves of a step ------------------------------------------------------------------------
    def teacher_pass(self, hr, labels=None, *, with_maps: bool | None = None):
        """Frozen teacher on ``hr``: float32 outputs, maps (or None) and the target class per sample
        (labels, else the teacher's prediction). Everything is a constant for the student's tape."""
        with_maps = self.needs_maps if with_maps is None else with_maps
        target_maps = self.loss_cfg.at_classes == "target"
        maps = None
        if with_maps:
            classes = labels if target_maps and labels is not None else "all"
            outputs, maps = attention_maps(self.teacher, hr, classes=classes,
                                           weighting=self.loss_cfg.at_weighting, second_order=False,
                                           training=False)
        else:
            outputs = self.teacher(hr, training=False)
        outputs = {k: tf.stop_gradient(v) for k, v in float32_outputs(outputs).items()}
        target = labels if labels is not None else tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)
        if maps is not None:
            maps = tf.cast(maps, tf.float32)
            if target_maps and labels is None:  # one forward for all classes, then the predicted one
                maps = tf.gather(maps, target, axis=-1, batch_dims=1)[..., None]
            maps = tf.stop_gradient(maps)
        return outputs, maps, target

    def student_pass(self, lr, target=None, *, training: bool, with_maps: bool | None = None,
                     second_order: bool | None = None):
        """Student on ``lr``: float32 outputs and (when maps are needed) its maps from the same forward."""
        with_maps = self.needs_maps if with_maps is None else with_maps
        if not with_maps:
            return float32_outputs(self.student(lr, training=training)), None
        second_order = self.loss_cfg.at_second_order if second_order is None else second_order
        classes = target if self.loss_cfg.at_classes == "target" else "all"
        outputs, maps = attention_maps(self.student, lr, classes=classes,
                                       weighting=self.loss_cfg.at_weighting, second_order=second_order,
                                       training=training)
        return float32_outputs(outputs), tf.cast(maps, tf.float32)

    def maps(self, x: dict, labels=None) -> dict:
        """Teacher and student maps of a batch, computed as in the train step but without training
        (for figures and tests): ``{"teacher", "student", "target", "teacher_logits", "student_logits"}``."""
        t_out, t_maps, target = self.teacher_pass(x["hr"], labels, with_maps=True)
        s_out, s_maps = self.student_pass(x["lr"], target, training=False, with_maps=True, second_order=False)
        return {"teacher": t_maps, "student": s_maps, "target": target,
                "teacher_logits": t_out["logits"], "student_logits": s_out["logits"]}

    def forward_losses(self, x: dict, labels=None):
        """The tape of one training step and what it recorded: ``(tape, scaled_loss, loss, parts,
        student_outputs, teacher_outputs)``. ``train_step`` takes its gradient; tests inspect
        ``tape.watched_variables()``."""
        terms = self._terms if labels is not None else self._label_free_terms
        if not terms:
            raise ValueError(
                f"Distiller: the batch has no labels and every configured term {list(self.term_names)} "
                "needs them; add a label-free term (loss.fm, loss.at, loss.kd, loss.fmap) or feed labels"
            )
        teacher, t_maps, target = (None, None, labels)
        target_needs_teacher = self.needs_maps and self.loss_cfg.at_classes == "target" and labels is None
        if self.needs_teacher or target_needs_teacher:
            teacher, t_maps, target = self.teacher_pass(x["hr"], labels)
        with tf.GradientTape() as tape:  # the teacher ran above: its variables are never accessed here
            student, s_maps = self.student_pass(x["lr"], target, training=True)
            inputs = TermInputs(labels=labels, student=student, teacher=teacher,
                                student_maps=s_maps, teacher_maps=t_maps)
            parts = {name: tf.cast(term(inputs, self.loss_cfg), tf.float32) for name, term, _ in terms}
            loss = tf.add_n([w * parts[name] for name, _, w in terms]) + regularization(self.student)
            scaled = self.optimizer.scale_loss(replica_share(loss))
        return tape, scaled, loss, parts, student, teacher

    # -- Keras hooks -------------------------------------------------------------------------------------
    def train_step(self, data):
        x, labels = unpack(data)
        labels = tf.cast(labels, tf.int32) if (self.labeled and labels is not None) else None
        tape, scaled, loss, parts, student, teacher = self.forward_losses(x, labels)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)  # Keras skips (and names) a variable no term reaches
        n = batch_size(student["logits"])
        self.loss_tracker.update_state(loss, sample_weight=n)
        for name, value in parts.items():
            self.term_trackers[name].update_state(value, sample_weight=n)
        logs = {"loss": self.loss_tracker.result()}
        logs.update({name: self.term_trackers[name].result() for name in parts})
        if labels is not None:
            self.accuracy_tracker.update_state(labels, student["logits"])
            logs["accuracy"] = self.accuracy_tracker.result()
        elif teacher is not None:
            self.agreement_tracker.update_state(tf.argmax(teacher["logits"], -1), student["logits"])
            logs["agreement"] = self.agreement_tracker.result()
        return step_logs(logs)

    def test_step(self, data):
        """Scores the student alone: cross-entropy and accuracy on ``x["lr"]``."""
        x, labels = unpack(data)
        if labels is None:
            raise ValueError("Distiller.test_step scores the student against labels; the batch has none")
        labels = tf.cast(labels, tf.int32)
        logits = tf.cast(self(x, training=False)["logits"], tf.float32)
        ce = cross_entropy(labels, logits)
        n = batch_size(logits)
        self.loss_tracker.update_state(ce, sample_weight=n)
        self.term_trackers["ce"].update_state(ce, sample_weight=n)
        self.accuracy_tracker.update_state(labels, logits)
        return step_logs({"loss": self.loss_tracker.result(), "ce": self.term_trackers["ce"].result(),
                          "accuracy": self.accuracy_tracker.result()})


__all__ = ["Distiller"]
