"""Run directories are claimed by one process at a time: others wait and then reuse its result."""

import subprocess
import sys
import threading
import time

from ird_tf.config import ExperimentConfig
from ird_tf.experiments.runs import RunResult, read_result, run_claim, write_result


def test_free_run_is_claimed_and_released(tmp_path):
    run_dir = tmp_path / "run"
    with run_claim(run_dir, ExperimentConfig()) as found:
        assert found is None
        assert (run_dir / "lock.pid").read_text().split()[1].isdigit()
    assert not (run_dir / "lock.pid").exists()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "lock.pid").write_text(f"{__import__('socket').gethostname()} {dead.pid}\n")
    with run_claim(run_dir, ExperimentConfig(), poll=0.05) as found:
        assert found is None
        assert (run_dir / "lock.pid").read_text().split()[1] != str(dead.pid)


def test_run_held_by_a_live_process_is_waited_for_then_reused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "lock.pid").write_text(f"{__import__('socket').gethostname()} {owner.pid}\n")

        def finish():  # the owner finishes the run: result first, then its lock goes
            time.sleep(0.5)
            write_result(RunResult(run_dir, {"test": {"kappa": 0.5}}, 1.0))
            (run_dir / "lock.pid").unlink()

        thread = threading.Thread(target=finish)
        start = time.time()
        thread.start()
        with run_claim(run_dir, ExperimentConfig(), poll=0.05) as found:
            waited = time.time() - start
        thread.join()
    finally:
        owner.kill()
        owner.wait()
    assert waited >= 0.4
    assert found is not None and found.metrics == {"test": {"kappa": 0.5}}
    assert read_result(run_dir).seconds == 1.0
    assert f"being trained by process {owner.pid}" in capsys.readouterr().out
    assert not (run_dir / "lock.pid").exists()


def test_multiworker_runs_are_not_locked(tmp_path):
    cfg = ExperimentConfig()
    cfg.run.strategy = "multiworker"
    with run_claim(tmp_path / "run", cfg) as found:
        assert found is None and not (tmp_path / "run" / "lock.pid").exists()


def test_a_non_chief_worker_writes_only_under_workers_and_never_marks_the_run_finished(tmp_path, monkeypatch):
    """The files of a multi-worker run come from the chief: another worker trains the same steps (here
    alone, on the default strategy) but keeps its config, checkpoints and metrics in its own folder,
    and neither writes result.json nor exports."""
    import json

    import tensorflow as tf

    from ird_tf.config import SyntheticConfig
    from ird_tf.experiments.runs import load_splits, run_student, student_dir, teacher_dir

    cfg = ExperimentConfig()
    cfg.data.synthetic = SyntheticConfig(patients=8, slides_per_patient=1, patches_per_slide=4, patch_size=32)
    cfg.data.image_size, cfg.data.batch_size, cfg.data.cache_dir = 32, 8, str(tmp_path / "cache")
    cfg.optim.epochs = cfg.optim.teacher_epochs = 1
    cfg.run.output_dir, cfg.run.tensorboard_images, cfg.run.verbose = str(tmp_path / "runs"), 0, 0
    cfg.validate()
    splits = load_splits(cfg)
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    student, teacher = run_student(cfg, splits, tf.distribute.get_strategy(),
                                   export_base=tmp_path / "saved_models")
    for run_dir, result in ((teacher_dir(cfg), teacher), (student_dir(cfg), student)):
        own = run_dir / "workers" / "worker-1"
        assert result.run_dir == own
        assert sorted(p.name for p in run_dir.iterdir()) == ["workers"]
        assert {"config.yaml", "best.weights.h5", "done.json", "metrics_test.json"} <= {
            p.name for p in own.iterdir()}
        assert read_result(run_dir) is None
    assert not (tmp_path / "saved_models").exists()


def test_teacher_is_shared_across_student_settings_but_not_teacher_settings():
    from dataclasses import replace

    from ird_tf.experiments.runs import student_dir, teacher_dir

    cfg = ExperimentConfig()
    same = [replace(cfg, loss=replace(cfg.loss, at=0.0, kd=1.0)),
            replace(cfg, optim=replace(cfg.optim, epochs=3)),
            replace(cfg, data=replace(cfg.data, student_mag=1.25, mode="native"))]
    other = [replace(cfg, loss=replace(cfg.loss, label_smoothing=0.1)),
             replace(cfg, optim=replace(cfg.optim, learning_rate=1e-4)),
             replace(cfg, optim=replace(cfg.optim, teacher_epochs=5)),
             replace(cfg, run=replace(cfg.run, seed=32)),
             replace(cfg, model=replace(cfg.model, backbone="vgg16"))]
    assert {teacher_dir(c) for c in same} == {teacher_dir(cfg)}
    assert len({teacher_dir(c) for c in [cfg, *other]}) == 1 + len(other)
    assert len({student_dir(c) for c in [cfg, *same]}) == 1 + len(same)
