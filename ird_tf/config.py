"""Every setting of a run, as dataclasses; presets; YAML round trip.

One source of truth: the command line builds an :class:`ExperimentConfig`, everything below takes
that config (or plain arguments taken from it). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from ird_tf.errors import ConfigError
from ird_tf.files import write_text
from ird_tf.terms import TERM_NAMES

MAGNIFICATIONS = (10.0, 5.0, 2.5, 1.25, 0.625)
SOURCES = ("synthetic", "sicap", "folders")
MODES = ("upsampled", "native")
# <vgg>_keep<k>: the VGG without its first k max-pools, for native students (grid 2**k larger);
# vgg_tiny_keep<k>_w<p>: the same with every stage p % as wide (FLOPs about (p/100)**2 of it);
# vgg_tiny_keep<k>_sep: full width with depthwise-separable convolutions after the first (the grid kept at
# a fraction of the FLOPs). Every vgg_tiny variant, name: (k, width %, separable), built from this table.
_KEEP = (1, 2, 3)
VGG_TINY_NATIVE = {**{f"vgg_tiny_keep{k}": (k, 100, False) for k in _KEEP},
                   **{f"vgg_tiny_keep{k}_w{p}": (k, p, False) for k in _KEEP for p in (50, 75)},
                   **{f"vgg_tiny_keep{k}_sep": (k, 100, True) for k in _KEEP}}
NATIVE_BACKBONES = (*VGG_TINY_NATIVE, *(f"vgg16_keep{k}" for k in (1, 2, 3, 4)))
BACKBONES = ("vgg_tiny", "vgg16", "resnet50", "mobilenet_v2", *NATIVE_BACKBONES)
# raised when a backbone's graph changes: part of a run's identity, so older graphs are not reused
BACKBONE_REVISIONS = {"vgg_tiny": 2, "vgg16": 1, "resnet50": 1, "mobilenet_v2": 1,
                      **{name: 1 for name in NATIVE_BACKBONES}}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker")
AT_NORMS = ("minmax", "softmax", "l2", "none")
AT_DISTANCES = ("l2", "bce", "kl")
AT_WEIGHTINGS = ("positive", "gradcam", "gradcam_pp")
AT_CLASSES = ("all", "target")
FMAP_RESIZES = ("maxpool", "bicubic", "mean")
MAP_RESIZES = ("area", "bilinear", "maxpool")  # teacher maps/features to a native student's grid


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not accepted; expected one of {list(choices)}")


def _check_number(name: str, value: Any, integer: bool = False) -> None:
    """A finite number (an integer when ``integer``); booleans and NaN/infinity are refused."""
    kind = "an integer" if integer else "a finite number"
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is not accepted; expected {kind}")


def _check_positive(name: str, value: float, allow_zero: bool = False, integer: bool = False) -> None:
    _check_number(name, value, integer)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} is not accepted; expected a number {bound}")


@dataclass
class SyntheticConfig:
    """The embedded synthetic H&E benchmark. The defaults are "benchmark v1": frozen, never tuned
    to make a method win (see ``ird_tf.data.synthetic``)."""

    version: str = "v1"
    seed: int = 2023
    patients: int = 24
    slides_per_patient: int = 2
    patches_per_slide: int = 24
    patch_size: int = 128
    magnification: float = 10.0
    class_balance: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    difficulty: float = 0.5
    folds: int = 4

    def validate(self) -> None:
        for name in ("patients", "slides_per_patient", "patches_per_slide", "patch_size", "folds"):
            _check_positive(f"synthetic.{name}", getattr(self, name), integer=True)
        _check_number("synthetic.seed", self.seed, integer=True)
        _check_number("synthetic.difficulty", self.difficulty)
        balance = self.class_balance
        if not isinstance(balance, tuple | list) or not all(
                isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) for w in balance
        ) or len(balance) != 4 or min(balance) < 0 or sum(balance) <= 0:
            raise ConfigError(
                f"synthetic.class_balance={self.class_balance!r}: expected 4 weights >= 0 (NC, G3, G4, G5)"
            )
        if not 0.0 <= self.difficulty <= 1.0:
            raise ConfigError(f"synthetic.difficulty={self.difficulty!r}: expected a number in [0, 1]")


@dataclass
class AugmentConfig:
    """Augmentation of the high-resolution image, applied once before the low-resolution view is
    derived from it."""

    enabled: bool = True
    flip: bool = True
    rot90: bool = True
    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.95, 1.2)
    translate: float = 0.05
    color_jitter: float = 0.1
    stain_jitter: float = 0.05

    def validate(self) -> None:
        _check_positive("augment.rotation_deg", self.rotation_deg, allow_zero=True)
        scale = self.scale
        if not isinstance(scale, tuple | list) or len(scale) != 2 or not all(
                isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in scale
        ) or not (0 < scale[0] <= scale[1]):
            raise ConfigError(f"augment.scale={self.scale!r}: expected (low, high) with 0 < low <= high")
        for name in ("translate", "color_jitter", "stain_jitter"):
            _check_positive(f"augment.{name}", getattr(self, name), allow_zero=True)


@dataclass
class DataConfig:
    source: str = "synthetic"
    root: str | None = None
    unlabeled: str | None = None
    fold: str = "Val1"
    class_names: tuple[str, ...] | None = None
    teacher_mag: float = 10.0
    student_mag: float = 2.5
    mode: str = "upsampled"
    image_size: int = 128
    batch_size: int = 32
    class_balanced: bool = True
    cache: bool = True
    skip_missing: bool = False
    skip_corrupt: bool = False
    cache_dir: str = ".cache"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    @property
    def factor(self) -> int:
        """Integer downsampling factor teacher_mag / student_mag (1, 2, 4, 8, 16)."""
        return int(round(self.teacher_mag / self.student_mag))

    def validate(self) -> None:
        _check_choice("data.source", self.source, SOURCES)
        _check_choice("data.mode", self.mode, MODES)
        if self.source in ("sicap", "folders") and not self.root:
            raise ConfigError(f"data.root is required when data.source={self.source!r}")
        _check_fold(self)
        _check_positive("data.teacher_mag", self.teacher_mag)
        _check_positive("data.student_mag", self.student_mag)
        _check_positive("data.image_size", self.image_size, integer=True)
        _check_positive("data.batch_size", self.batch_size, integer=True)
        ratio = self.teacher_mag / self.student_mag
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ConfigError(
                f"data.student_mag={self.student_mag!r}: teacher_mag / student_mag must be a whole "
                f"number >= 1 (got {ratio:g}); accepted with 10x: {list(MAGNIFICATIONS)}"
            )
        if self.image_size % self.factor:
            raise ConfigError(
                f"data.image_size={self.image_size} is not divisible by the factor {self.factor}"
            )
        self.augment.validate()
        self.synthetic.validate()


@dataclass
class ModelConfig:
    backbone: str = "vgg_tiny"
    weights: str | None = None
    student_weights: str | None = None
    # the Student's backbone when it differs from the Teacher's (None: the same as ``backbone``),
    # e.g. vgg_tiny_keep3 for a native 1.25x student of a vgg_tiny teacher
    student_backbone: str | None = None

    @property
    def student(self) -> str:
        return self.student_backbone or self.backbone

    def validate(self) -> None:
        _check_choice("model.backbone", self.backbone, BACKBONES)
        if self.student_backbone is not None:
            _check_choice("model.student_backbone", self.student_backbone, BACKBONES)
        for name, backbone in (("weights", self.backbone),
                               ("student_weights", self.student_backbone or self.backbone)):
            problem = weights_problem(getattr(self, name), backbone)
            if problem:
                raise ConfigError(f"model.{name}={getattr(self, name)!r}: {problem}")


@dataclass
class LossConfig:
    """Weights of the loss terms (0 switches a term off) and their options."""

    ce: float = 1.0
    fm: float = 0.1
    at: float = 10.0
    zk_at: float = 0.0
    kd: float = 0.0
    fmap: float = 0.0
    label_smoothing: float = 0.0
    at_norm: str = "minmax"
    at_distance: str = "l2"
    at_weighting: str = "positive"
    at_classes: str = "all"
    at_second_order: bool = True
    at_temperature: float = 0.01
    kd_temperature: float = 4.0
    fmap_resize: str = "maxpool"
    fmap_p: int = 2
    map_resize: str = "area"  # FM, AT+ and attention transfer: teacher grid -> student grid

    def weights(self) -> dict[str, float]:
        """The active terms and their weights, by name (:data:`ird_tf.terms.TERMS`)."""
        return {n: float(getattr(self, n)) for n in TERM_NAMES if getattr(self, n) != 0}

    def validate(self) -> None:
        for n in (*TERM_NAMES, "label_smoothing"):
            _check_positive(f"loss.{n}", getattr(self, n), allow_zero=True)
        _check_choice("loss.at_norm", self.at_norm, AT_NORMS)
        _check_choice("loss.at_distance", self.at_distance, AT_DISTANCES)
        _check_choice("loss.at_weighting", self.at_weighting, AT_WEIGHTINGS)
        _check_choice("loss.at_classes", self.at_classes, AT_CLASSES)
        _check_choice("loss.fmap_resize", self.fmap_resize, FMAP_RESIZES)
        _check_choice("loss.fmap_p", self.fmap_p, (1, 2))
        _check_choice("loss.map_resize", self.map_resize, MAP_RESIZES)
        _check_positive("loss.at_temperature", self.at_temperature)
        _check_positive("loss.label_smoothing", self.label_smoothing, allow_zero=True)
        if self.label_smoothing >= 1:
            raise ConfigError(f"loss.label_smoothing={self.label_smoothing!r}: expected a number in [0, 1)")
        _check_positive("loss.kd_temperature", self.kd_temperature)
        if not self.weights():
            raise ConfigError(f"loss: every term weight is 0; one of {'/'.join(TERM_NAMES)} must be > 0")


SCHEDULES = ("constant", "cosine")


@dataclass
class OptimConfig:
    """``schedule``: ``constant`` (``learning_rate`` throughout, the authors' recipe) or ``cosine``
    (linear warm-up from 0 to ``learning_rate`` over ``warmup_epochs``, then a cosine decay to
    ``final_lr_fraction * learning_rate`` at the run's last step; Keras's own ``CosineDecay``).
    ``recalibrate_bn``: at each epoch end, set the BatchNorm statistics to their average over the
    training images without augmentation (no effect on a network without BatchNorm)."""

    name: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 8
    teacher_epochs: int = 20
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    final_lr_fraction: float = 0.0
    recalibrate_bn: bool = False

    def validate(self) -> None:
        _check_choice("optim.name", self.name, ("adam", "adamw", "sgd"))
        _check_positive("optim.learning_rate", self.learning_rate)
        _check_positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _check_choice("optim.schedule", self.schedule, SCHEDULES)
        _check_positive("optim.warmup_epochs", self.warmup_epochs, allow_zero=True)
        _check_number("optim.final_lr_fraction", self.final_lr_fraction)
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ConfigError(
                f"optim.final_lr_fraction={self.final_lr_fraction!r}: expected a number in [0, 1]")
        _check_positive("optim.epochs", self.epochs, integer=True)
        _check_positive("optim.teacher_epochs", self.teacher_epochs, integer=True)


@dataclass
class RunConfig:
    seed: int = 22
    output_dir: str = "runs"
    name: str | None = None
    precision: str = "float32"
    strategy: str = "default"
    jit: bool = False
    tensorboard_images: int = 4
    verbose: int = 2
    #: the training state (``backup/``, ``last.weights.h5``) is saved at the end of an epoch once this many
    #: seconds have passed since it was last saved, and after the last epoch; 0 saves it after every
    #: epoch. A kill loses at most this much training and the epoch in progress (a resume replays them
    #: to the same numbers); short epochs do not pay for a save each.
    checkpoint_seconds: float = 30.0

    @property
    def augment_jit(self) -> bool:
        """Whether the training augmentation (warp and colour, ``ird_tf.data.pipeline``) is XLA-compiled:
        in float32 runs only, where it is several times faster on CPU; mixed-precision runs keep it out
        of XLA. Independent of ``jit``, which compiles the train step. The one place this rule lives."""
        return self.precision == "float32"

    def validate(self) -> None:
        _check_choice("run.precision", self.precision, PRECISIONS)
        _check_choice("run.strategy", self.strategy, STRATEGIES)
        _check_number("run.seed", self.seed, integer=True)
        _check_choice("run.verbose", self.verbose, (0, 1, 2))
        _check_positive("run.tensorboard_images", self.tensorboard_images, allow_zero=True, integer=True)
        _check_positive("run.checkpoint_seconds", self.checkpoint_seconds, allow_zero=True)
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ConfigError(f"run.output_dir={self.output_dir!r} is not accepted; expected a folder path")
        if self.name is not None and (not isinstance(self.name, str) or not self.name
                                      or os.sep in self.name or self.name in (".", "..")):
            raise ConfigError(f"run.name={self.name!r} is not accepted; expected a folder name (no '/')")


def _check_fold(d: DataConfig) -> None:
    """SICAPv2 has folds Val1..Val4, the synthetic benchmark Val1..Val<synthetic.folds>; class folders
    have no folds (their split comes from the folders or a stratified draw), so the field is ignored."""
    if d.source == "folders":
        return
    n = 4 if d.source == "sicap" else d.synthetic.folds  # the synthetic partition has SICAPv2's layout
    if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        n = min(n, 4)
        _check_choice("data.fold", d.fold, tuple(f"Val{k}" for k in range(1, n + 1)))


HDF5_SIGNATURE, ZIP_SIGNATURE = b"\x89HDF\r\n\x1a\n", b"PK\x03\x04"
#: backbones with published ImageNet weights (keras.applications counterparts)
IMAGENET_BACKBONES = ("vgg16", "resnet50", "mobilenet_v2",
                      *(b for b in NATIVE_BACKBONES if b.startswith("vgg16_")))


def weights_problem(weights: Any, backbone: str) -> str | None:
    """Why ``weights`` cannot be initial weights of ``backbone`` (checked before any work: the value,
    the file's existence and its format from its first bytes), or None. Whether a file's layers fit the
    model is only known once the model is built."""
    if weights is None:
        return None
    if not isinstance(weights, str) or not weights:
        return "expected 'imagenet' or the path of a .weights.h5, .h5 or .keras file"
    if weights == "imagenet":
        if backbone not in IMAGENET_BACKBONES:
            return (f"{backbone} has no published ImageNet weights (backbones that have: "
                    f"{list(IMAGENET_BACKBONES)}); use a .weights.h5 / .keras file of a trained classifier")
        return None
    path = Path(weights)
    name = path.name.lower()
    if not name.endswith((".h5", ".hdf5", ".keras")):
        return "expected 'imagenet' or the path of a .weights.h5, .h5 or .keras file"
    if not name.endswith((".weights.h5", ".keras")) and backbone not in IMAGENET_BACKBONES:
        return (f"a keras.applications .h5 file needs a backbone that has one ({list(IMAGENET_BACKBONES)}); "
                f"{backbone} takes a .weights.h5 / .keras file of a trained classifier")
    if not path.is_file():
        return f"file {path} does not exist"
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if name.endswith(".keras"):
                ok = head[:4] == ZIP_SIGNATURE
            else:  # HDF5: the signature is at 0 or after a user block of 512, 1024, 2048... bytes
                ok, offset, size = head == HDF5_SIGNATURE, 512, path.stat().st_size
                while not ok and offset + 8 <= size:
                    f.seek(offset)
                    ok, offset = f.read(8) == HDF5_SIGNATURE, offset * 2
    except OSError as e:
        return f"file {path} cannot be read: {e.strerror or e}"
    if not ok:
        kind = "a Keras zip archive" if name.endswith(".keras") else "an HDF5 file"
        return f"file {path} is not {kind} (truncated, or another format)"
    return None


def read_yaml_mapping(path: Path, what: str = "config file") -> dict:
    """The top-level mapping of a YAML settings file; errors name the file and what is wrong."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level")
    return d


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> ExperimentConfig:
        for part in (self.data, self.model, self.loss, self.optim, self.run):
            part.validate()
        widths = {width_percent(self.model.backbone), width_percent(self.model.student)}
        feature_terms = [t for t in ("fm", "fmap") if getattr(self.loss, t)]
        if len(widths) > 1 and feature_terms:
            off = " and ".join(f"loss.{t}=0" for t in feature_terms)
            raise ConfigError(
                f"loss {feature_terms} compare the Student's features with the Teacher's channel by channel; "
                f"model.student_backbone={self.model.student!r} is {width_percent(self.model.student)} % as "
                f"wide as model.backbone={self.model.backbone!r}: set {off} (AT+, KD and CE need no matching "
                "channels) or use a full-width student")
        return self

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        return _build(cls, d, "")

    def save(self, path: str | Path) -> Path:
        return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        d = read_yaml_mapping(path)
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"config file {path}: {e}") from e


def width_percent(backbone: str) -> int:
    """A backbone's width against its family's (``vgg_tiny_keep3_w50``: 50; the others 100)."""
    return VGG_TINY_NATIVE.get(backbone, (0, 100, False))[1]


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return [_plain(v) for v in x]
    return x


def _build(cls: type, d: dict[str, Any], prefix: str) -> Any:
    """Builds a dataclass from a nested mapping; unknown keys are errors that name them."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(str(k) for k in set(d) - set(known))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"unknown setting(s) {unknown} at {where}; known: {sorted(known)}")
    kwargs = {}
    defaults = cls()
    for name, value in d.items():
        current = getattr(defaults, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name}: expected a mapping")
            kwargs[name] = _build(type(current), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _typed(f"{prefix}{name}", value, current)
    return cls(**kwargs)


def _typed(key: str, value: Any, default: Any) -> Any:
    """``value`` of a settings file checked against the type of the field's default (numbers written
    as text, like YAML's ``1e-3``, are read as numbers); errors name the key."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{key}={value!r} is not accepted; expected {expected}")

    def number(v: Any, integer: bool = False) -> Any:
        if isinstance(v, str) and not integer:
            try:
                v = float(v)
            except ValueError:
                raise bad("a number") from None
        if isinstance(v, bool) or not isinstance(v, int if integer else int | float):
            raise bad("an integer" if integer else "a number")
        return v if integer else float(v)

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        return number(value, integer=True)
    if isinstance(default, float):
        return number(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a text value")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or len(value) != len(default):
            raise bad(f"a list of {len(default)} numbers")
        return tuple(number(v) for v in value)
    if value is None:
        return None
    if key.endswith("class_names"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise bad("a list of class names")
        return tuple(value)
    if not isinstance(value, str):
        raise bad("a text value or null")
    return value


def preset(name: str) -> ExperimentConfig:
    """``cpu``: small and fast, the default (vgg_tiny at 128 px on the synthetic benchmark; Adam with a
    one-epoch warm-up to 1e-3 and a cosine decay to 0, BatchNorm statistics recomputed on the training
    images without augmentation at each epoch end: with a constant 1e-3 and moving statistics of
    augmented batches the validation score swung by up to 0.3 from epoch to epoch, see
    ``tools/learning_curves.py``).
    ``paper``: the authors' settings exactly (VGG16 at 512 px, constant Adam 1e-4, batch 32, 20 epochs,
    SICAPv2)."""
    if name == "cpu":
        return ExperimentConfig(
            data=DataConfig(batch_size=32, image_size=128),
            optim=OptimConfig(learning_rate=1e-3, epochs=8, teacher_epochs=20, schedule="cosine",
                              warmup_epochs=1.0, recalibrate_bn=True),
        )
    if name == "paper":
        return ExperimentConfig(
            data=DataConfig(
                source="sicap",
                fold="Val1",
                image_size=512,
                batch_size=32,
                augment=AugmentConfig(
                    rot90=False, rotation_deg=45.0, scale=(0.95, 1.2), translate=0.05,
                    color_jitter=0.1, stain_jitter=0.0,
                ),
            ),
            model=ModelConfig(backbone="vgg16", weights="imagenet"),
            loss=LossConfig(ce=1.0, fm=0.1, at=10.0, at_norm="minmax", at_distance="l2"),
            optim=OptimConfig(learning_rate=1e-4, epochs=20, teacher_epochs=20),
        )
    raise ConfigError(f"preset={name!r} is not accepted; expected one of ['cpu', 'paper']")


PRESETS = ("cpu", "paper")
PAPER_SEEDS = (22, 32, 43)

__all__ = [
    "ConfigError", "SyntheticConfig", "AugmentConfig", "DataConfig", "ModelConfig", "LossConfig",
    "OptimConfig", "RunConfig", "SCHEDULES",
    "ExperimentConfig", "preset", "PRESETS", "PAPER_SEEDS", "read_yaml_mapping",
]
