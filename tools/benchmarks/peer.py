"""The authors' distillation step in PyTorch, timed side by side with the Distiller's step.

The PyTorch step re-expresses del Amor et al.'s public training step: VGG16 split as theirs (the tap is
conv5_3 before its ReLU and the last max-pool; head = ReLU, max-pool, spatial mean, linear), the
student's input average-pooled by the factor and bilinearly upsampled back (inside the step), the
frozen teacher without gradients (its class maps from its head only, constants), the student's maps
for every class with ``create_graph=True`` (second order), loss = CE + 0.1 FM (RMSE) + 10 AT+
(min-max normalised stacks, per-sample RMSE), Adam (lr 1e-4). The ird_tf side is the Distiller with its
default loss (the same terms and weights), run through Keras's compiled train function; its low-
resolution view comes from the data pipeline in training, so here it is made once before timing. The
PyTorch model leaves out the Keras model's input scaling (one elementwise op); with that scaling applied
to its input and the same weights, its loss is the Distiller's (tests/tools).

Both steps get the same images and labels (batch 8, float32) and run in one process, in interleaved
rounds (each round: the same number of steps of each); the figure to read is the median over rounds of
the within-round ratio ird_tf img/s / PyTorch img/s (target: >= 1 at both sizes).

PyTorch is an optional extra used by this benchmark only: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import os
import statistics

import numpy as np

from benchmarks.common import interleaved_rounds, within_round_ratios

NUM_CLASSES = 4
BATCH = 8
FACTOR = 4  # 2.5x from 10x
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
INSTALL_HINT = 'pip install -e ".[bench]"  (PyTorch, CPU build)'


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build_torch_vgg16(num_classes: int = NUM_CLASSES):
    """(backbone, head) as the authors split VGG16: backbone = torchvision's ``vgg16().features[:29]``
    (up to conv5_3, before its ReLU), head = ReLU, max-pool, spatial mean, linear."""
    from torch import nn

    layers: list = []
    c_in = 3
    for s, (width, convs) in enumerate(VGG16_STAGES, start=1):
        if s > 1:
            layers.append(nn.MaxPool2d(2, 2))
        for c in range(convs):
            layers.append(nn.Conv2d(c_in, width, 3, padding=1))
            c_in = width
            if not (s == len(VGG16_STAGES) and c == convs - 1):
                layers.append(nn.ReLU(inplace=True))
    backbone = nn.Sequential(*layers)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2, 2)
            self.fc = nn.Linear(c_in, num_classes)

        def forward(self, a):
            return self.fc(self.pool(nn.functional.relu(a)).mean(dim=(2, 3)))

    return backbone, Head()


def torch_class_maps(head, features, *, create_graph: bool):
    """AT+ maps of every class, [B, C, h, w]: w_kc = spatial mean of d(sum_b logit_c)/dA_k,
    map_c = sum_k ReLU(w_kc A_k). Returns (logits, maps)."""
    import torch

    logits = head(features)
    maps = []
    for c in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, c].sum(), features, retain_graph=True, create_graph=create_graph)
        w = g.mean(dim=(2, 3), keepdim=True)
        maps.append(torch.relu(w * features).sum(dim=1))
    return logits, torch.stack(maps, dim=1)


def _minmax(maps):
    flat = maps.flatten(1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return (flat - lo) / (hi - lo + 1e-7)


class TorchStep:
    """The authors' step on fixed tensors; ``__call__`` runs one step and returns the loss (a float)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0):
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.torch = torch
        self.teacher, self.teacher_head = build_torch_vgg16()
        self.student, self.student_head = build_torch_vgg16()
        for p in [*self.teacher.parameters(), *self.teacher_head.parameters()]:
            p.requires_grad_(False)
        self.teacher.eval()
        self.teacher_head.eval()
        params = [*self.student.parameters(), *self.student_head.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-4)
        self.ce = nn.CrossEntropyLoss()
        self.x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.y = torch.from_numpy(labels.astype(np.int64))

    def __call__(self) -> float:
        torch, F = self.torch, self.torch.nn.functional
        x, size = self.x, self.x.shape[-2:]
        x_lr = F.interpolate(F.avg_pool2d(x, FACTOR), size=size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            f_t = self.teacher(x)
        f_t_leaf = f_t.detach().requires_grad_(True)
        _, m_t = torch_class_maps(self.teacher_head, f_t_leaf, create_graph=False)
        m_t = _minmax(m_t.detach())
        f_s = self.student(x_lr)
        logits, m_s = torch_class_maps(self.student_head, f_s, create_graph=True)
        ce = self.ce(logits, self.y)
        fm = torch.sqrt(torch.mean((f_s - f_t) ** 2))
        at = torch.sqrt(torch.mean((_minmax(m_s) - m_t) ** 2, dim=1)).mean()
        loss = ce + 0.1 * fm + 10.0 * at
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def ird_step(images: np.ndarray, labels: np.ndarray):
    """The Distiller's default step (CE + 0.1 FM + 10 AT+, all classes, second order) through Keras's
    compiled train function, on a fixed batch; returns a function running one step."""
    import keras
    import tensorflow as tf

    from ird_tf.config import LossConfig
    from ird_tf.models import build_classifier
    from ird_tf.training import Distiller

    keras.utils.set_random_seed(0)
    size = images.shape[1]
    shape = (size, size, 3)
    lr = tf.image.resize(tf.nn.avg_pool2d(images, FACTOR, FACTOR, "VALID"), (size, size), "bilinear").numpy()
    model = Distiller(build_classifier("vgg16", NUM_CLASSES, shape, name="teacher"),
                      build_classifier("vgg16", NUM_CLASSES, shape, name="student"), LossConfig())
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.make_train_function()
    train_function = model.train_function
    iterator = iter(tf.data.Dataset.from_tensors(({"hr": images, "lr": lr}, labels)).repeat())

    def step() -> float:
        return float(train_function(iterator)["loss"])

    return step


def compare(size: int, *, rounds: int, repeats: int, warmup: int = 1) -> dict:
    import tensorflow as tf
    import torch

    rng = np.random.default_rng(0)
    images = rng.random((BATCH, size, size, 3), dtype=np.float32)
    labels = (np.arange(BATCH) % NUM_CLASSES).astype(np.int32)
    steps = {"ird_tf": ird_step(images, labels), "pytorch": TorchStep(images, labels)}
    for fn in steps.values():
        for _ in range(warmup):
            fn()

    def show(i, medians):
        rates = {k: BATCH / v for k, v in medians.items()}
        print(f"    {size}px round {i + 1}: ird_tf {rates['ird_tf']:.3f} img/s, pytorch "
              f"{rates['pytorch']:.3f} img/s, ratio {rates['ird_tf'] / rates['pytorch']:.3f}", flush=True)

    per_round = interleaved_rounds(steps, rounds=rounds, repeats=repeats, on_round=show)
    # ird_tf img/s over pytorch img/s = pytorch seconds over ird_tf seconds
    ratios = within_round_ratios(per_round, "pytorch", "ird_tf")
    return {
        "image_size": size, "batch": BATCH, "factor": FACTOR, "rounds": rounds, "steps_per_round": repeats,
        "warmup_steps": warmup,
        "img_s_per_round": {k: [round(BATCH / r[k], 3) for r in per_round] for k in steps},
        "ratio_per_round": [round(r, 3) for r in ratios],
        "ird_tf_over_pytorch": round(statistics.median(ratios), 3),
        "threads": {"torch": torch.get_num_threads(),
                    "tensorflow_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "tensorflow_inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
    }


def run(args) -> dict:
    if not torch_available():
        message = f"PyTorch is not installed: section skipped. Install it with {INSTALL_HINT}"
        print(f"  {message}", flush=True)
        return {"skipped": message}
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # the cores TensorFlow's pools use by default
    quick = bool(getattr(args, "quick", False))
    plans = {128: dict(rounds=2 if quick else 5, repeats=1 if quick else 3),
             512: dict(rounds=1 if quick else 3, repeats=1)}
    if quick:
        plans.pop(512)
    results: dict = {"torch_version": torch.__version__}
    for size, plan in plans.items():
        print(f"  VGG16 {size}px batch {BATCH}: {plan}", flush=True)
        res = results[f"vgg16_{size}px_b{BATCH}"] = compare(size, **plan)
        print(f"  {size}px: ird_tf / pytorch (median of within-round ratios) = {res['ird_tf_over_pytorch']}",
              flush=True)
    results["summary"] = {
        f"ird_tf_over_pytorch_{s}px": results[f"vgg16_{s}px_b{BATCH}"]["ird_tf_over_pytorch"] for s in plans}
    results["summary"]["target"] = ">= 1.0"
    return results
