"""Every loss against a NumPy formula worked on fixed arrays; the registry of terms."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from ird_tf.config import ConfigError, LossConfig
from ird_tf.losses import (
    TERMS,
    TermInputs,
    attention_matching,
    attention_transfer,
    cross_entropy,
    feature_map_loss,
    feature_matching,
    get_term,
    soft_label_kd,
)

RNG = np.random.default_rng(0)
F_S = RNG.normal(size=(3, 4, 4, 5)).astype(np.float32)
F_T = RNG.normal(size=(3, 8, 8, 5)).astype(np.float32)
F_T_SAME = RNG.normal(size=(3, 4, 4, 5)).astype(np.float32)
Z_S = RNG.normal(size=(3, 4)).astype(np.float32) * 3
Z_T = RNG.normal(size=(3, 4)).astype(np.float32) * 3
LABELS = np.array([0, 3, 1])


def scalar(x) -> float:
    assert x.dtype == tf.float32 and x.shape == ()
    return float(x)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def block_mean(x, f):
    b, h, w, c = x.shape
    return x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))


def numpy_adaptive_max_pool(x, size):
    """PyTorch adaptive_max_pool2d bins on NHWC: [floor(i H / h), ceil((i + 1) H / h))."""
    big_h, big_w = x.shape[1:3]
    out = np.empty((x.shape[0], *size, x.shape[3]), x.dtype)
    for i in range(size[0]):
        for j in range(size[1]):
            r0, r1 = (i * big_h) // size[0], -(-(i + 1) * big_h // size[0])
            c0, c1 = (j * big_w) // size[1], -(-(j + 1) * big_w // size[1])
            out[:, i, j] = x[:, r0:r1, c0:c1].max(axis=(1, 2))
    return out


def numpy_bicubic_matrix(n_in, n_out, a=-0.5, table=1024):
    """TF's resize_bicubic with half-pixel centres as a [n_out, n_in] matrix: Keys kernel (a=-0.5)
    sampled from a 1024-entry table, taps outside the image dropped and the weights renormalised."""
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        x = (o + 0.5) * n_in / n_out - 0.5
        base = int(np.floor(x))
        t = np.rint((x - base) * table) / table
        for k, d in zip(range(base - 1, base + 3), (1 + t, t, 1 - t, 2 - t), strict=True):
            d = abs(d)
            w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
            if 0 <= k < n_in:
                m[o, k] = w
        m[o] /= m[o].sum()
    return m


def numpy_bicubic(x, size):
    rows, cols = numpy_bicubic_matrix(x.shape[1], size[0]), numpy_bicubic_matrix(x.shape[2], size[1])
    return np.einsum("ih,bhwc,jw->bijc", rows, x.astype(np.float64), cols)


def test_cross_entropy():
    nll = -log_softmax(Z_S)[np.arange(3), LABELS]
    assert scalar(cross_entropy(LABELS, Z_S)) == pytest.approx(nll.mean(), rel=1e-5)
    target = np.eye(4)[LABELS] * 0.9 + 0.1 / 4
    smoothed = -(target * log_softmax(Z_S)).sum(-1).mean()
    assert scalar(cross_entropy(LABELS, Z_S, label_smoothing=0.1)) == pytest.approx(smoothed, rel=1e-5)


def test_feature_matching():
    same = np.sqrt(np.mean((F_S - F_T_SAME) ** 2))
    assert scalar(feature_matching(F_S, F_T_SAME)) == pytest.approx(same, rel=1e-5)
    resized = np.sqrt(np.mean((F_S - block_mean(F_T, 2)) ** 2))  # teacher area-averaged to 4x4
    assert scalar(feature_matching(F_S, F_T)) == pytest.approx(resized, rel=1e-5)
    assert scalar(feature_matching(F_S, F_S)) == pytest.approx(0, abs=1e-5)
    with pytest.raises(ConfigError, match=r"5 channels, teacher features 7.*projection"):
        feature_matching(F_S, np.zeros((3, 8, 8, 7), np.float32))


def test_feature_matching_gradient_is_finite_at_zero():
    f = tf.Variable(F_S)
    with tf.GradientTape() as tape:
        loss = feature_matching(f, tf.constant(F_S))
    assert np.isfinite(tape.gradient(loss, f)).all()


def test_attention_matching():
    m_s = RNG.uniform(0.02, 0.98, size=(3, 4, 4, 2)).astype(np.float32)
    m_t = RNG.uniform(0.0, 1.0, size=(3, 4, 4, 2)).astype(np.float32)
    l2 = np.sqrt(((m_t - m_s) ** 2).reshape(3, -1).mean(1)).mean()
    assert scalar(attention_matching(m_s, m_t, "l2")) == pytest.approx(l2, rel=1e-5)
    bce = -(m_t * np.log(m_s) + (1 - m_t) * np.log(1 - m_s)).mean()
    assert scalar(attention_matching(m_s, m_t, "bce")) == pytest.approx(bce, rel=1e-5)
    p = m_t.reshape(3, -1) / m_t.reshape(3, -1).sum(1, keepdims=True)
    q = m_s.reshape(3, -1) / m_s.reshape(3, -1).sum(1, keepdims=True)
    kl = (p * np.log(p / q)).sum(1).mean()
    assert scalar(attention_matching(m_s, m_t, "kl")) == pytest.approx(kl, rel=1e-4)
    for distance in ("l2", "bce", "kl"):
        assert np.isfinite(scalar(attention_matching(np.zeros_like(m_s), np.ones_like(m_t), distance)))
    assert scalar(attention_matching(m_t, m_t, "kl")) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ConfigError, match="at_distance"):
        attention_matching(m_s, m_t, "cosine")
    with pytest.raises(ValueError, match="differ"):
        attention_matching(m_s, m_t[:, :2], "l2")


def test_attention_transfer():
    def q(f):
        a = (f.astype(np.float64) ** 2).mean(-1)
        return a.reshape(len(f), -1)

    def at(q_s, q_t):
        q_s = q_s / np.linalg.norm(q_s, axis=1, keepdims=True)
        q_t = q_t / np.linalg.norm(q_t, axis=1, keepdims=True)
        return ((q_s - q_t) ** 2).mean()

    assert scalar(attention_transfer(F_S, F_T_SAME)) == pytest.approx(at(q(F_S), q(F_T_SAME)), rel=1e-5)
    # Teacher on a 2x finer grid and with other channel counts: mean_c A^2 area-averaged to 4x4.
    f_t = np.concatenate([F_T, F_T[..., :3] * 2], axis=-1)
    q_t = block_mean((f_t.astype(np.float64) ** 2).mean(-1, keepdims=True), 2).reshape(3, -1)
    assert scalar(attention_transfer(F_S, f_t)) == pytest.approx(at(q(F_S), q_t), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_soft_label_kd(temperature):
    log_p_t, log_p_s = log_softmax(Z_T / temperature), log_softmax(Z_S / temperature)
    kl = (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(-1).mean() * temperature**2
    assert scalar(soft_label_kd(Z_S, Z_T, temperature)) == pytest.approx(kl, rel=1e-5)
    assert scalar(soft_label_kd(Z_T, Z_T, temperature)) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("teacher_side", [8, 7, 4])
@pytest.mark.parametrize("resize", ["maxpool", "bicubic", "mean"])
@pytest.mark.parametrize("p", [1, 2])
def test_feature_map_loss(teacher_side, resize, p):
    f_t = RNG.normal(size=(3, teacher_side, teacher_side, 5)).astype(np.float32)
    if teacher_side == 4:
        targets = [f_t]  # same grid: no resizing
    else:
        pooled, bicubic = numpy_adaptive_max_pool(f_t, (4, 4)), numpy_bicubic(f_t, (4, 4))
        targets = {"maxpool": [pooled], "bicubic": [bicubic], "mean": [pooled, bicubic]}[resize]
    dist = [np.mean(np.abs(F_S - t) ** p) for t in targets]
    expected = np.mean(dist)
    assert scalar(feature_map_loss(F_S, f_t, resize, p)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="fmap_p"):
        feature_map_loss(F_S, f_t, resize, 3)


def test_bicubic_oracle_matches_tf():
    """The NumPy bicubic above is TF's kernel, not an approximation of it (checked on a random map)."""
    x = RNG.normal(size=(2, 9, 7, 3)).astype(np.float32)
    for size in ((4, 3), (5, 5), (12, 10)):
        np.testing.assert_allclose(tf.image.resize(x, size, "bicubic"), numpy_bicubic(x, size), atol=1e-5)


def test_registry_covers_every_config_term():
    every = LossConfig(ce=1, fm=1, at=1, zk_at=1, kd=1, fmap=1)
    assert set(every.weights()) == set(TERMS)
    for name, term in TERMS.items():
        assert get_term(name) is term and term.name == name
    assert [n for n, t in TERMS.items() if t.needs_labels] == ["ce"]
    assert [n for n, t in TERMS.items() if t.needs_maps] == ["at"]
    assert [n for n, t in TERMS.items() if not t.needs_teacher] == ["ce"]
    with pytest.raises(ConfigError, match=r"'focal'.*\['at', 'ce', 'fm', 'fmap', 'kd', 'zk_at'\]"):
        get_term("focal")


def _inputs(**overrides):
    student = {"logits": tf.constant(Z_S), "features": tf.constant(F_S)}
    teacher = {"logits": tf.constant(Z_T), "features": tf.constant(F_T)}
    maps_s = RNG.random((3, 4, 4, 4)).astype(np.float32)
    maps_t = RNG.random((3, 8, 8, 4)).astype(np.float32)
    values = dict(labels=tf.constant(LABELS), student=student, teacher=teacher,
                  student_maps=tf.constant(maps_s), teacher_maps=tf.constant(maps_t))
    return TermInputs(**{**values, **overrides})


def test_terms_compute_their_losses():
    cfg = LossConfig(label_smoothing=0.1, kd_temperature=2.0, fmap_resize="bicubic", fmap_p=1)
    i = _inputs()
    assert scalar(TERMS["ce"](i, cfg)) == pytest.approx(float(cross_entropy(LABELS, Z_S, 0.1)))
    assert scalar(TERMS["fm"](i, cfg)) == pytest.approx(float(feature_matching(F_S, F_T)))
    assert scalar(TERMS["zk_at"](i, cfg)) == pytest.approx(float(attention_transfer(F_S, F_T)))
    assert scalar(TERMS["kd"](i, cfg)) == pytest.approx(float(soft_label_kd(Z_S, Z_T, 2.0)))
    assert scalar(TERMS["fmap"](i, cfg)) == pytest.approx(float(feature_map_loss(F_S, F_T, "bicubic", 1)))


@pytest.mark.parametrize(
    "norm,distance", [("minmax", "l2"), ("softmax", "kl"), ("minmax", "bce"), ("l2", "l2")]
)
def test_at_term_resizes_then_normalises(norm, distance):
    i = _inputs()
    cfg = dataclasses.replace(LossConfig(), at_norm=norm, at_distance=distance, at_temperature=0.1)
    m_s = i.student_maps.numpy().reshape(3, -1)
    m_t = block_mean(i.teacher_maps.numpy(), 2).reshape(3, -1)  # area-averaged to the student grid first

    def normalise(m):
        if norm == "minmax":
            return (m - m.min(1, keepdims=True)) / np.ptp(m, axis=1, keepdims=True)
        if norm == "softmax":
            e = np.exp(m / 0.1 - (m / 0.1).max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    s, t = normalise(m_s), normalise(m_t)
    if distance == "l2":
        expected = np.sqrt(((t - s) ** 2).mean(1)).mean()
    elif distance == "kl":
        expected = (t * np.log(t / s)).sum(1).mean()
    else:
        s = np.clip(s.astype(np.float32), np.float32(1e-7), np.float32(1) - np.float32(1e-7))
        expected = -(t * np.log(s) + (1 - t) * np.log(1 - s)).mean()
    assert scalar(TERMS["at"](i, cfg)) == pytest.approx(expected, rel=1e-4)


def test_map_resize_setting_brings_teacher_maps_and_features_to_the_student_grid():
    def block_max(x, f):
        b, h, w, c = x.shape
        return x.reshape(b, h // f, f, w // f, f, c).max(axis=(2, 4))

    i = _inputs()
    cfg = dataclasses.replace(LossConfig(), at_norm="none", at_distance="l2", map_resize="maxpool")
    m_s = i.student_maps.numpy().reshape(3, -1)
    m_t = block_max(i.teacher_maps.numpy(), 2).reshape(3, -1)
    expected = np.sqrt(((m_t - m_s) ** 2).mean(1)).mean()
    assert scalar(TERMS["at"](i, cfg)) == pytest.approx(expected, rel=1e-5)
    fm = np.sqrt(((F_S - block_max(F_T, 2)) ** 2).mean())
    assert scalar(feature_matching(F_S, F_T, resize="maxpool")) == pytest.approx(fm, rel=1e-5)
    assert scalar(TERMS["fm"](i, cfg)) == pytest.approx(fm, rel=1e-5)  # F_S, F_T
    with pytest.raises(ConfigError, match=r"loss\.map_resize='nearest'"):
        dataclasses.replace(LossConfig(), map_resize="nearest").validate()


def test_terms_stop_teacher_gradients_and_report_missing_inputs():
    teacher_features, maps_t = tf.Variable(F_T), tf.Variable(RNG.random((3, 8, 8, 4)).astype(np.float32))
    i = _inputs(teacher={"logits": tf.constant(Z_T), "features": teacher_features}, teacher_maps=maps_t)
    with tf.GradientTape(persistent=True) as tape:
        losses = {n: TERMS[n](i, LossConfig()) for n in ("fm", "at", "zk_at", "fmap")}
    for name, loss in losses.items():
        assert tape.gradient(loss, [teacher_features, maps_t]) == [None, None], name
    with pytest.raises(ValueError, match=r"'ce' \(loss.ce\) needs labels"):
        TERMS["ce"](_inputs(labels=None), LossConfig())
    with pytest.raises(ValueError, match=r"'at'.*teacher attention maps"):
        TERMS["at"](_inputs(teacher_maps=None), LossConfig())


@pytest.mark.parametrize(("norm", "distance"), [("minmax", "l2"), ("softmax", "kl"), ("l2", "bce")])
def test_at_term_gradient_matches_finite_differences(float64, central_difference, norm, distance):
    """The registered AT+ term as the Distiller computes it (student maps second order, teacher maps
    constant, normalisation, distance) on a smooth float64 model: the analytic gradient of every kernel
    equals central finite differences."""
    import keras
    from keras import layers

    from ird_tf.attention import attention_maps

    keras.utils.set_random_seed(7)
    x = keras.Input((8, 8, 3), name="image")
    h = layers.Conv2D(4, 3, strides=2, padding="same", activation="tanh")(x)
    f = layers.Conv2D(5, 3, padding="same", name="features")(h)
    z = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(layers.Activation("tanh")(f)))
    model = keras.Model(x, {"logits": z, "features": f})
    rng = np.random.default_rng(2)
    images = tf.constant(rng.random((2, 8, 8, 3)))
    teacher_maps = tf.constant(rng.random((2, 4, 4, 3)))
    teacher_out = {"logits": tf.zeros((2, 3), tf.float64),  # unused by AT+, but a teacher term
                   "features": tf.zeros((2, 4, 4, 5), tf.float64)}
    cfg = LossConfig(at_norm=norm, at_distance=distance, at_temperature=0.5)
    term = get_term("at")

    def loss_fn():
        out, maps = attention_maps(model, images, weighting="positive", second_order=True)
        return term(TermInputs(None, out, teacher_out, maps, teacher_maps), cfg)

    with tf.GradientTape() as tape:
        loss = loss_fn()
    assert loss.dtype == tf.float64
    grads = tape.gradient(loss, model.trainable_variables)
    checked = 0
    for v, g in zip(model.trainable_variables, grads, strict=True):
        if len(v.shape) < 2:
            continue  # the three kernels
        for flat in rng.choice(int(np.prod(v.shape)), size=3, replace=False):
            idx = np.unravel_index(flat, v.shape)
            numeric = central_difference(v, idx, loss_fn)
            np.testing.assert_allclose(g.numpy()[idx], numeric, rtol=1e-4, atol=1e-9, err_msg=v.path)
            checked += 1
    assert checked == 9
