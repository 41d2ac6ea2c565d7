"""The tiny experiment the command-level tests run: a synthetic dataset of 8 patients with one slide each
and ``vgg_tiny``, so a run takes seconds. Importable by every test module (``pythonpath`` in
pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

from ird_tf.config import ExperimentConfig, SyntheticConfig


def tiny_experiment(tmp_path: Path, *, size: int = 32, per_slide: int = 4, epochs: int = 1,
                    teacher_epochs: int | None = None, board_images: int = 0,
                    verbose: int | None = None) -> ExperimentConfig:
    """``8 * per_slide`` patches of ``size`` px, batch 8, caches and runs under ``tmp_path``."""
    cfg = ExperimentConfig()
    cfg.data.synthetic = SyntheticConfig(patients=8, slides_per_patient=1, patches_per_slide=per_slide,
                                         patch_size=size)
    cfg.data.image_size, cfg.data.batch_size, cfg.data.cache_dir = size, 8, str(tmp_path / "cache")
    cfg.optim.epochs = epochs
    cfg.optim.teacher_epochs = epochs if teacher_epochs is None else teacher_epochs
    cfg.run.output_dir, cfg.run.tensorboard_images = str(tmp_path / "runs"), board_images
    cfg.run.checkpoint_seconds = 0.0  # a backup after every epoch: the fault tests kill between them
    if verbose is not None:
        cfg.run.verbose = verbose
    return cfg
