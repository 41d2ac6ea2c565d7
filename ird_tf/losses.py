"""Distillation losses as pure functions of tensors, and the registry the Distiller sums by name.

Every function returns a float32 scalar (inputs are cast to float32 first, so float16 features under a
mixed policy are fine). Teacher-side tensors are wrapped in ``tf.stop_gradient`` by the terms.
Where two grids differ, the teacher's tensor is brought to the student's grid (the student's is the
one being trained, and at native low resolution it is the smaller).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from ird_tf.attention import normalize_maps, resize_maps
from ird_tf.config import AT_DISTANCES, FMAP_RESIZES, ConfigError, LossConfig
from ird_tf.terms import TERMS as TERM_SPECS
from ird_tf.terms import TermSpec, term_spec

_EPS = 1e-7


def _f32(x) -> tf.Tensor:
    """Loss maths in float32 at least: half precision is cast up, float64 (gradient checks) is kept."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float64 else tf.cast(x, tf.float32)


def _sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt with a finite gradient at 0 (identical student and teacher tensors, e.g. a student started
    from the teacher's weights or two all-zero maps, would otherwise give NaN gradients)."""
    return tf.sqrt(x + 1e-12)


def _to_grid(f_t: tf.Tensor, f_s: tf.Tensor, method: str = "area") -> tf.Tensor:
    return resize_maps(f_t, tuple(f_s.shape[1:3]), method) if f_s.shape[1:3] != f_t.shape[1:3] else f_t


def cross_entropy(labels, logits, label_smoothing: float = 0.0) -> tf.Tensor:
    """Mean softmax cross-entropy of sparse int labels [B] and logits [B, C]."""
    logits = _f32(logits)
    if label_smoothing:
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1])
        ce = keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=label_smoothing
        )
    else:
        ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return tf.reduce_mean(_f32(ce))


def feature_matching(f_s, f_t, resize: str = "area") -> tf.Tensor:
    """FM (del Amor et al.): RMSE ``sqrt(mean((F_s - F_t)^2))`` over the whole batch.

    Different grids: the teacher is brought to the student's grid (``resize``: area averaging,
    bilinear, adaptive max-pooling). Different channel counts are
    an error, not a silent projection: use backbones with the same tap width (or add a 1x1 Conv2D on
    the student's tap inside the student model, so it is trained and exported with it).
    """
    f_s, f_t = _f32(f_s), _f32(f_t)
    if f_s.shape[-1] != f_t.shape[-1]:
        raise ConfigError(
            f"feature matching (loss.fm): student features have {f_s.shape[-1]} channels, teacher "
            f"features {f_t.shape[-1]}; use backbones with the same tap width or add a 1x1 Conv2D "
            "projection to the student's tap (or set loss.fm=0)"
        )
    f_t = _to_grid(f_t, f_s, resize)
    return _sqrt(tf.reduce_mean(tf.square(f_s - f_t)))


def attention_matching(m_s, m_t, distance: str = "l2") -> tf.Tensor:
    """Distance between normalised attention maps of the same shape [B, h, w, K].

    ``l2`` (authors): per-sample ``sqrt(mean((M_t - M_s)^2))``, averaged over the batch.
    ``bce``: binary cross-entropy with target ``M_t`` (maps in [0, 1], prediction clipped to
    [eps, 1 - eps]), mean over all elements. ``kl``: each flattened map (clipped to >= eps) divided by
    its sum, a distribution over the (h, w, K) positions (an identity for softmax maps), then
    ``KL(M_t || M_s)`` per sample, batch mean.
    """
    if distance not in AT_DISTANCES:
        raise ConfigError(
            f"loss.at_distance={distance!r} is not accepted; expected one of {list(AT_DISTANCES)}"
        )
    m_s, m_t = _f32(m_s), _f32(m_t)
    if m_s.shape[1:] != m_t.shape[1:]:
        raise ValueError(f"attention_matching: student maps {m_s.shape} and teacher maps {m_t.shape} differ")
    batch = tf.shape(m_s)[0]
    s, t = tf.reshape(m_s, [batch, -1]), tf.reshape(m_t, [batch, -1])
    if distance == "l2":
        return tf.reduce_mean(_sqrt(tf.reduce_mean(tf.square(t - s), axis=-1)))
    if distance == "bce":
        s = tf.clip_by_value(s, _EPS, 1.0 - _EPS)
        return -tf.reduce_mean(t * tf.math.log(s) + (1.0 - t) * tf.math.log(1.0 - s))
    s = tf.maximum(s, _EPS)
    t = tf.maximum(t, _EPS)
    s /= tf.reduce_sum(s, axis=-1, keepdims=True)
    t /= tf.reduce_sum(t, axis=-1, keepdims=True)
    return tf.reduce_mean(tf.reduce_sum(t * (tf.math.log(t) - tf.math.log(s)), axis=-1))


def _at_map(f: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(_f32(f)), axis=-1, keepdims=True)


def attention_transfer(f_s, f_t, resize: str = "area") -> tf.Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017), as their code: ``Q = normalize(mean_c A^2)``
    flattened and L2-normalised per sample; loss = ``(Q_s - Q_t)^2`` averaged over batch and positions
    (the original ``(at(x) - at(y)).pow(2).mean()``, not the paper's ``||Q_s - Q_t||_2``).

    The channel counts may differ. Different grids: the teacher's ``mean_c A^2`` is brought to the
    student's grid before the normalisation (``resize``; area = adaptive average pooling, their code).
    """
    q_s, q_t = _at_map(f_s), _to_grid(_at_map(f_t), f_s, resize)
    batch = tf.shape(q_s)[0]
    q_s = tf.math.l2_normalize(tf.reshape(q_s, [batch, -1]), axis=-1, epsilon=1e-12)
    q_t = tf.math.l2_normalize(tf.reshape(q_t, [batch, -1]), axis=-1, epsilon=1e-12)
    return tf.reduce_mean(tf.square(q_s - q_t))


def soft_label_kd(z_s, z_t, temperature: float) -> tf.Tensor:
    """Hinton et al.: ``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean."""
    z_s, z_t = _f32(z_s) / temperature, _f32(z_t) / temperature
    log_p_t = tf.nn.log_softmax(z_t, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - tf.nn.log_softmax(z_s, axis=-1)), axis=-1)
    return temperature**2 * tf.reduce_mean(kl)


def feature_map_loss(f_s, f_t, resize: str = "maxpool", p: int = 2) -> tf.Tensor:
    """DiPalma et al.'s feature-map loss: the teacher's last feature map brought to the student's grid,
    then mean squared error (``p=2``, their ``MSELoss``) or mean absolute error (``p=1``, ``L1Loss``).

    ``resize``: ``maxpool`` = PyTorch ``adaptive_max_pool2d`` semantics; ``bicubic`` =
    ``tf.image.resize(method="bicubic")`` (Keys a=-0.5, half-pixel centres; PyTorch's bicubic uses
    a=-0.75, so values differ slightly from theirs); ``mean`` = the mean of the two losses (their
    "maxpool+bicubic", whose code computes only the max-pool half and halves it; we do what it names).
    """
    if resize not in FMAP_RESIZES:
        raise ConfigError(
            f"loss.fmap_resize={resize!r} is not accepted; expected one of {list(FMAP_RESIZES)}"
        )
    if p not in (1, 2):
        raise ConfigError(f"loss.fmap_p={p!r} is not accepted; expected 1 (L1) or 2 (L2)")
    f_s, f_t = _f32(f_s), _f32(f_t)
    if f_s.shape[-1] != f_t.shape[-1]:
        raise ConfigError(
            f"feature-map loss (loss.fmap): student features have {f_s.shape[-1]} channels, teacher "
            f"features {f_t.shape[-1]}; use backbones with the same tap width"
        )

    def dist(target: tf.Tensor) -> tf.Tensor:
        diff = f_s - target
        return tf.reduce_mean(tf.square(diff) if p == 2 else tf.abs(diff))

    if f_s.shape[1:3] == f_t.shape[1:3]:
        return dist(f_t)
    size = tuple(f_s.shape[1:3])
    pooled = lambda: dist(resize_maps(f_t, size, "maxpool"))  # noqa: E731
    bicubic = lambda: dist(tf.image.resize(f_t, size, method="bicubic"))  # noqa: E731
    if resize == "maxpool":
        return pooled()
    if resize == "bicubic":
        return bicubic()
    return 0.5 * (pooled() + bicubic())


# ---- registry -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TermInputs:
    """What a term may read. ``student``/``teacher``: model outputs ``{"logits", "features"}``;
    maps: raw attention maps [B, h, w, K] (teacher maps are treated as constants)."""

    labels: tf.Tensor | None
    student: dict
    teacher: dict | None = None
    student_maps: tf.Tensor | None = None
    teacher_maps: tf.Tensor | None = None


@dataclass(frozen=True)
class Term:
    """One loss term: its row of :data:`ird_tf.terms.TERMS` and ``fn(inputs, cfg) -> float32 scalar``."""

    spec: TermSpec
    fn: Callable[[TermInputs, LossConfig], tf.Tensor]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def needs_labels(self) -> bool:
        return self.spec.needs_labels

    @property
    def needs_teacher(self) -> bool:
        return self.spec.needs_teacher

    @property
    def needs_maps(self) -> bool:
        return self.spec.needs_maps

    def __call__(self, inputs: TermInputs, cfg: LossConfig) -> tf.Tensor:
        """``fn`` after checking its inputs are present (a clear error instead of a None deep inside)."""
        missing = [
            what for what, need, value in (
                ("labels", self.needs_labels, inputs.labels),
                ("teacher outputs", self.needs_teacher, inputs.teacher),
                ("student attention maps", self.needs_maps, inputs.student_maps),
                ("teacher attention maps", self.needs_maps, inputs.teacher_maps),
            ) if need and value is None
        ]
        if missing:
            raise ValueError(f"loss term {self.name!r} (loss.{self.name}) needs {', '.join(missing)}")
        return self.fn(inputs, cfg)


def _teacher(inputs: TermInputs, key: str) -> tf.Tensor:
    return tf.stop_gradient(inputs.teacher[key])


def _ce(i: TermInputs, cfg: LossConfig) -> tf.Tensor:
    return cross_entropy(i.labels, i.student["logits"], cfg.label_smoothing)


def _fm(i: TermInputs, cfg: LossConfig) -> tf.Tensor:
    return feature_matching(i.student["features"], _teacher(i, "features"), cfg.map_resize)


def _at(i: TermInputs, cfg: LossConfig) -> tf.Tensor:
    """AT+: the raw teacher maps are brought to the student grid (``loss.map_resize``) *before* both
    are normalised, so every normalisation holds on the compared maps (a softmax map summed to 1
    before resizing would not after)."""
    m_s = _f32(i.student_maps)
    m_t = _to_grid(_f32(tf.stop_gradient(i.teacher_maps)), m_s, cfg.map_resize)
    m_s = normalize_maps(m_s, cfg.at_norm, cfg.at_temperature)
    m_t = normalize_maps(m_t, cfg.at_norm, cfg.at_temperature)
    return attention_matching(m_s, m_t, cfg.at_distance)


def _zk_at(i: TermInputs, cfg: LossConfig) -> tf.Tensor:
    return attention_transfer(i.student["features"], _teacher(i, "features"), cfg.map_resize)


def _kd(i: TermInputs, cfg: LossConfig) -> tf.Tensor:
    return soft_label_kd(i.student["logits"], _teacher(i, "logits"), cfg.kd_temperature)


def _fmap(i: TermInputs, cfg: LossConfig) -> tf.Tensor:
    return feature_map_loss(i.student["features"], _teacher(i, "features"), cfg.fmap_resize, cfg.fmap_p)


_FUNCTIONS = {"ce": _ce, "fm": _fm, "at": _at, "zk_at": _zk_at, "kd": _kd, "fmap": _fmap}
TERMS: dict[str, Term] = {spec.name: Term(spec, _FUNCTIONS[spec.name]) for spec in TERM_SPECS}


def get_term(name: str) -> Term:
    """The registered term ``name``; an unknown name is a ConfigError listing the known ones."""
    return TERMS[term_spec(name).name]


__all__ = [
    "cross_entropy", "feature_matching", "attention_matching", "attention_transfer", "soft_label_kd",
    "feature_map_loss", "TermInputs", "Term", "TERMS", "get_term",
]
