"""The benchmark's helpers: FLOPs counted from a model (checked against TensorFlow's own profiler count),
within-round ratios and their median, interleaved rounds, and the PyTorch peer's split of VGG16."""

import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from benchmarks import common


def _profiler_flops(model, shape) -> int:
    """TensorFlow's own FLOP count of one forward pass (tf.compat.v1 profiler on the frozen graph)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec(shape, tf.float32)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(fn).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def test_conv_and_dense_flops_by_hand():
    assert common.conv2d_flops(4, 5, 3, 3, 2, 7, bias=False) == 4 * 5 * 7 * (2 * 9 * 2)
    assert common.conv2d_flops(4, 5, 3, 3, 2, 7) == 4 * 5 * 7 * (2 * 9 * 2 + 1)
    assert common.dense_flops(10, 3) == 3 * 21
    assert common.matmul_flops(2, 3, 4) == 48


def test_model_flops_match_tensorflows_profiler_count():
    from ird_tf.models import build_classifier

    model = build_classifier("vgg16", 4, (32, 32, 3))
    ours = common.model_forward_flops(model)
    theirs = _profiler_flops(model, (1, 32, 32, 3))
    assert ours["dense"] == 4 * (2 * 512 + 1)
    # the profiler also counts the elementwise ops (input scaling, pooling) that ours leaves out
    assert ours["total"] <= theirs <= 1.01 * ours["total"], (ours, theirs)


def test_model_flops_need_static_shapes():
    from ird_tf.models import build_classifier

    with pytest.raises(ValueError, match="static spatial shape"):
        common.model_forward_flops(build_classifier("vgg_tiny", 4))


def test_attention_term_is_bounded_far_below_the_step():
    from benchmarks import machine

    flops = machine.step_flops("vgg_tiny", 64)
    assert flops["distill_ce_fm"] == 4 * flops["forward"] and flops["teacher"] == 3 * flops["forward"]
    assert 0 < flops["attention_term_bound"] < 0.05 * flops["distill_ce_fm"]


def test_within_round_ratios_and_their_median():
    rounds = [{"a": 2.0, "b": 1.0}, {"a": 3.0, "b": 2.0}, {"a": 1.0, "b": 4.0}]
    assert common.within_round_ratios(rounds, "a", "b") == [2.0, 1.5, 0.25]
    assert common.median_ratio(rounds, "a", "b") == 1.5
    # not the ratio of the medians over rounds (2.0 / 2.0)
    assert common.median_ratio(rounds, "a", "b") != 1.0


def test_interleaved_rounds_runs_every_step_in_turn_each_round():
    calls = []
    steps = {"x": lambda: calls.append("x"), "y": lambda: calls.append("y")}
    seen = []
    out = common.interleaved_rounds(steps, rounds=3, repeats=2, on_round=lambda i, m: seen.append(i))
    assert calls == ["x", "x", "y", "y"] * 3
    assert seen == [0, 1, 2] and len(out) == 3 and all(set(r) == {"x", "y"} for r in out)
    with pytest.raises(ValueError):
        common.interleaved_rounds(steps, rounds=0, repeats=1)


def test_peer_section_without_pytorch_says_how_to_install(monkeypatch, capsys):
    from benchmarks import peer

    monkeypatch.setattr(peer, "torch_available", lambda: False)
    out = peer.run(type("Args", (), {"quick": True})())
    assert set(out) == {"skipped"} and 'pip install -e ".[bench]"' in out["skipped"]
    assert "skipped" in capsys.readouterr().out


def test_pytorch_peer_taps_conv5_3_before_relu_and_pool():
    torch = pytest.importorskip("torch", reason="PyTorch is the optional `bench` extra")
    from benchmarks import peer

    backbone, head = peer.build_torch_vgg16()
    convs = [m for m in backbone if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and isinstance(backbone[-1], torch.nn.Conv2d)  # conv5_3, no ReLU after it
    x = torch.rand(2, 3, 128, 128)
    features = backbone(x)
    assert tuple(features.shape) == (2, 512, 8, 8)  # the Keras model's tap: 8x8x512 at 128 px
    assert (features < 0).any()  # pre-activation
    features.requires_grad_(True)
    logits, maps = peer.torch_class_maps(head, features, create_graph=False)
    assert tuple(logits.shape) == (2, 4) and tuple(maps.shape) == (2, 4, 8, 8) and (maps >= 0).all()
    from ird_tf.models import build_classifier  # the Keras side at the same input size

    model = build_classifier("vgg16", 4, (128, 128, 3))
    assert tuple(model.get_layer("features").output.shape[1:]) == (8, 8, 512)


def _copy_keras_to_torch(model, backbone, head):
    import torch

    convs = [m for m in backbone if isinstance(m, torch.nn.Conv2d)]
    names = [layer.name for layer in model.layers if layer.name.startswith("block") and "conv" in layer.name
             and not layer.name.endswith("relu")]
    assert len(names) == len(convs) == 13
    with torch.no_grad():
        for name, conv in zip(names, convs, strict=True):
            kernel, bias = model.get_layer(name).get_weights()
            conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(bias))
        kernel, bias = model.get_layer("logits").get_weights()
        head.fc.weight.copy_(torch.from_numpy(kernel.T.copy()))
        head.fc.bias.copy_(torch.from_numpy(bias))


def test_pytorch_peer_step_computes_the_distillers_loss():
    """Same weights, same images: the PyTorch step's first loss is the Distiller's (so the benchmark times
    the same computation on both sides). The Keras model scales its input inside (caffe style); that
    scaling is affine per channel, so it commutes with the pooling and upsampling of the low view."""
    pytest.importorskip("torch", reason="PyTorch is the optional `bench` extra")
    import numpy as np
    from benchmarks import peer

    from ird_tf.config import LossConfig
    from ird_tf.models import build_classifier
    from ird_tf.models.backbones import ImagePreprocess
    from ird_tf.training import Distiller

    keras.utils.set_random_seed(1)
    size = 32
    rng = np.random.default_rng(1)
    images = rng.random((4, size, size, 3), dtype=np.float32)
    labels = np.array([0, 1, 2, 3], np.int32)
    teacher = build_classifier("vgg16", 4, (size, size, 3), name="teacher")
    student = build_classifier("vgg16", 4, (size, size, 3), name="student")
    lr = tf.image.resize(tf.nn.avg_pool2d(images, peer.FACTOR, peer.FACTOR, "VALID"), (size, size),
                         "bilinear").numpy()
    distiller = Distiller(teacher, student, LossConfig())
    distiller.compile(optimizer=keras.optimizers.Adam(1e-4))
    expected = float(distiller.train_on_batch({"hr": images, "lr": lr}, labels, return_dict=True)["loss"])

    step = peer.TorchStep(ImagePreprocess("caffe")(images).numpy(), labels)
    _copy_keras_to_torch(teacher, step.teacher, step.teacher_head)
    # the student as it was before the Distiller's step: rebuild it with the same seed
    keras.utils.set_random_seed(1)
    build_classifier("vgg16", 4, (size, size, 3), name="teacher")
    fresh = build_classifier("vgg16", 4, (size, size, 3), name="student")
    _copy_keras_to_torch(fresh, step.student, step.student_head)
    logs = {k: float(v) for k, v in distiller.get_metrics_result().items()}
    assert logs["fm"] > 0.01 and logs["at"] > 0.01, logs  # every term takes part
    assert step() == pytest.approx(expected, rel=1e-3)
