"""Training: the Teacher and Distiller ``keras.Model`` subclasses with custom steps, the run loop
(checkpoints, resume, TensorBoard) and the process runtime (seeds, precision, strategy).

Typical use (the command line does this)::

    runtime.configure_cpu_devices(2)          # only for strategy "mirrored" on a CPU-only machine
    strategy = runtime.make_strategy(cfg.run.strategy)
    runtime.set_seed(cfg.run.seed); runtime.set_precision(cfg.run.precision)
    with strategy.scope():
        model = Distiller(teacher, build_classifier(...), cfg.loss)
        model.compile(optimizer=make_optimizer(cfg.optim), jit_compile=runtime.set_jit(cfg.run.jit))
    history = fit(model, train_ds, val_ds, run_dir=..., epochs=..., steps_per_epoch=..., num_classes=4)
"""

from ird_tf.errors import TrainingDiverged
from ird_tf.training.distiller import Distiller
from ird_tf.training.loop import fit, make_optimizer
from ird_tf.training.supervised import Supervised

__all__ = ["Supervised", "Distiller", "fit", "make_optimizer", "TrainingDiverged"]
