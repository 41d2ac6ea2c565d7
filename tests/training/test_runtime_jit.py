"""``set_jit`` tells a user on a machine without a GPU that XLA is slower there, and only then."""

import tensorflow as tf

from ird_tf.training import runtime


def test_jit_note_only_when_asked_for_without_a_gpu():
    fake_gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    assert runtime.jit_note(True, gpus=[]) == runtime.JIT_CPU_NOTE
    assert runtime.jit_note(True, gpus=[fake_gpu]) is None
    assert runtime.jit_note(False, gpus=[]) is None
    assert "slower" in runtime.JIT_CPU_NOTE and "GPU" in runtime.JIT_CPU_NOTE


def test_set_jit_prints_the_note_on_a_cpu_only_machine_and_goes_on(monkeypatch, capsys):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    try:
        assert runtime.set_jit(True) is True
        assert runtime.JIT_CPU_NOTE in capsys.readouterr().err
        assert runtime.set_jit(False) is False
        assert capsys.readouterr().err == ""
    finally:
        tf.config.optimizer.set_jit(False)
