"""The training tasks: which process writes what in a multi-worker run."""

from ird_tf.config import ExperimentConfig
from ird_tf.runs import read_result


def test_a_non_chief_worker_writes_only_under_workers_and_never_marks_the_run_finished(tmp_path, monkeypatch):
    """The files of a multi-worker run come from the chief: another worker trains the same steps (here
    alone, on the default strategy) but keeps its config, checkpoints and metrics in its own folder,
    and neither writes result.json nor exports."""
    import json

    import tensorflow as tf

    from ird_tf.config import SyntheticConfig
    from ird_tf.runs import load_splits, run_student, student_dir, teacher_dir

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
