"""Command-line options shared by every entry point, turned into one :class:`ExperimentConfig`.

Order of precedence: ``--preset`` (default ``cpu``) < ``--config FILE.yaml`` < explicit options.
Options left unset on the command line keep the value of the preset/config file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

from ird_tf.config import (
    AT_CLASSES,
    AT_DISTANCES,
    AT_NORMS,
    AT_WEIGHTINGS,
    BACKBONES,
    FMAP_RESIZES,
    MAP_RESIZES,
    MODES,
    PRECISIONS,
    PRESETS,
    SCHEDULES,
    STRATEGIES,
    ConfigError,
    ExperimentConfig,
    preset,
)
from ird_tf.errors import DataError, TrainingDiverged
from ird_tf.progress import say
from ird_tf.terms import TERMS

# option dest -> (config section, field)
_FIELDS: dict[str, tuple[str, str]] = {
    "fold": ("data", "fold"),
    "teacher_mag": ("data", "teacher_mag"),
    "res": ("data", "student_mag"),
    "mode": ("data", "mode"),
    "image_size": ("data", "image_size"),
    "batch_size": ("data", "batch_size"),
    "cache_dir": ("data", "cache_dir"),
    "skip_missing": ("data", "skip_missing"),
    "skip_corrupt": ("data", "skip_corrupt"),
    "backbone": ("model", "backbone"),
    "student_backbone": ("model", "student_backbone"),
    "weights": ("model", "weights"),
    "student_weights": ("model", "student_weights"),
    **{f"alpha_{t.name}": ("loss", t.name) for t in TERMS},
    "label_smoothing": ("loss", "label_smoothing"),
    "at_norm": ("loss", "at_norm"),
    "at_distance": ("loss", "at_distance"),
    "at_weighting": ("loss", "at_weighting"),
    "at_classes": ("loss", "at_classes"),
    "at_temperature": ("loss", "at_temperature"),
    "kd_temperature": ("loss", "kd_temperature"),
    "fmap_resize": ("loss", "fmap_resize"),
    "fmap_p": ("loss", "fmap_p"),
    "map_resize": ("loss", "map_resize"),
    "optimizer": ("optim", "name"),
    "lr": ("optim", "learning_rate"),
    "lr_schedule": ("optim", "schedule"),
    "warmup_epochs": ("optim", "warmup_epochs"),
    "recalibrate_bn": ("optim", "recalibrate_bn"),
    "weight_decay": ("optim", "weight_decay"),
    "epochs": ("optim", "epochs"),
    "teacher_epochs": ("optim", "teacher_epochs"),
    "seed": ("run", "seed"),
    "output_dir": ("run", "output_dir"),
    "name": ("run", "name"),
    "precision": ("run", "precision"),
    "strategy": ("run", "strategy"),
    "verbose": ("run", "verbose"),
    "checkpoint_seconds": ("run", "checkpoint_seconds"),
}


def build_parser(description: str, *, student: bool = True) -> argparse.ArgumentParser:
    """The shared options; ``student=False`` hides the distillation-only ones (teacher training)."""
    p = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options left out keep the value of the preset or config file; --print-config shows "
        "the resolved settings.",
    )
    g = p.add_argument_group("configuration")
    g.add_argument("--preset", choices=PRESETS, default="cpu",
                   help="base settings: cpu (vgg_tiny, 128 px, synthetic) or paper (VGG16, 512 px, SICAPv2)")
    g.add_argument("--config", metavar="FILE.yaml", help="settings file (see experiments/configs/)")
    g.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    g = p.add_argument_group("data (nothing = the embedded synthetic benchmark, generated on first use)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--sicap", metavar="ROOT", help="SICAPv2 root (images/, partition/)")
    src.add_argument("--folders", metavar="ROOT", help="class-folder root: ROOT/[train/]<class>/*.png")
    if student:
        g.add_argument("--unlabeled", metavar="DIR",
                       help="folder of unlabeled images: distil label-free (default loss: KD + feature-map "
                            "loss, weights 1 and 1, no CE)")
    g.add_argument("--fold", help="SICAPv2 / synthetic validation fold: Val1..Val4")
    g.add_argument("--classes", metavar="A,B,...",
                   help="class order of --folders (class index = position; default: sorted folder names)")
    g.add_argument("--teacher-mag", type=float, help="teacher magnification (x)")
    if student:
        g.add_argument("--res", type=float, help="student magnification (x): 5, 2.5, 1.25 or 0.625")
        g.add_argument("--mode", choices=MODES,
                       help="upsampled: student reads the low-res view resized back (paper); "
                            "native: student reads the small image (real compute savings)")
    g.add_argument("--image-size", type=int, help="side of the teacher's input in pixels")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--cache-dir", help="where the synthetic dataset is generated")
    g.add_argument("--skip-missing", action="store_true", default=None,
                   help="skip listed images that are absent (counted) instead of failing")
    g.add_argument("--skip-corrupt", action="store_true", default=None,
                   help="skip unreadable images (counted) instead of failing")
    g.add_argument("--allow-empty-classes", action="store_true",
                   help="train even when a class has no training images (an error otherwise)")

    g = p.add_argument_group("model")
    g.add_argument("--backbone", choices=BACKBONES)
    g.add_argument("--weights", help="initial weights: 'imagenet' or a .weights.h5/.keras file")
    if student:
        g.add_argument("--student-weights", help="initial student weights (default: --weights)")
        g.add_argument("--student-backbone", choices=BACKBONES,
                       help="the Student's backbone (default: --backbone). Native students that keep "
                            "the feature grid: <vgg>_keep<k> leaves out the first k max-pools; k = log2 "
                            "of the factor (vgg_tiny_keep3 at 1.25x from 10x) gives the Teacher's grid; "
                            "vgg_tiny_keep<k>_w50|_w75: every stage half or three quarters as wide "
                            "(about a quarter or a half of the FLOPs; feature terms need loss.fm=0, fmap=0); "
                            "vgg_tiny_keep<k>_sep: full width, depthwise-separable convolutions after the "
                            "first (the grid of keep<k> at a fraction of its FLOPs)")

    if student:
        g = p.add_argument_group("loss terms (weight 0 switches a term off)")
        for t in TERMS:
            g.add_argument(f"--alpha-{t.name.replace('_', '-')}", type=float, help=t.help)
        g.add_argument("--weights-from", metavar="TUNING_DIR",
                       help="take the distillation term weights chosen on validation by python -m "
                            "ird_tf.experiments.tune (its runs/tuning/<name> folder); it must have been "
                            "tuned for the same magnifications, mode and data")
        g.add_argument("--at-norm", choices=AT_NORMS)
        g.add_argument("--at-distance", choices=AT_DISTANCES)
        g.add_argument("--at-weighting", choices=AT_WEIGHTINGS,
                       help="positive = AT+ (sum_k ReLU(w_k A_k)); gradcam; gradcam_pp")
        g.add_argument("--at-classes", choices=AT_CLASSES, help="maps for every class or the target class")
        g.add_argument("--at-first-order", action="store_true", default=None,
                       help="stop gradients through the Grad-CAM channel weights (cheaper)")
        g.add_argument("--at-temperature", type=float, help="temperature of --at-norm softmax")
        g.add_argument("--kd-temperature", type=float)
        g.add_argument("--fmap-resize", choices=FMAP_RESIZES)
        g.add_argument("--fmap-p", type=int, choices=(1, 2))
        g.add_argument("--map-resize", choices=MAP_RESIZES,
                       help="FM, AT+ and attention transfer with a native student: how teacher maps and "
                            "features reach the student's grid (default area)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    g.add_argument("--lr", type=float, help="learning rate (the peak of a schedule)")
    g.add_argument("--lr-schedule", choices=SCHEDULES,
                   help="constant (the paper preset) or cosine (warm-up, then cosine decay to 0: the cpu "
                        "preset)")
    g.add_argument("--warmup-epochs", type=float, help="linear warm-up of the cosine schedule, in epochs")
    g.add_argument("--recalibrate-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute BatchNorm statistics on the un-augmented training images at each epoch "
                        "end (on in the cpu preset)")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--epochs", type=int, help="student epochs" if student else "(unused here)")
    g.add_argument("--teacher-epochs", type=int)

    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int)
    g.add_argument("--output-dir", help="parent folder of the run directories")
    g.add_argument("--name", help="run directory name (default: derived from the settings)")
    g.add_argument("--precision", choices=PRECISIONS)
    g.add_argument("--strategy", choices=STRATEGIES,
                   help="mirrored: all local devices (on CPU: 2 logical devices); "
                        "multiworker: from TF_CONFIG")
    g.add_argument("--jit", action="store_true", default=None, help="XLA-compile the train step")
    g.add_argument("--verbose", type=int, choices=(0, 1, 2))
    g.add_argument("--checkpoint-seconds", type=float, metavar="S",
                   help="save the training state (backup/, last.weights.h5) at the first epoch end S seconds "
                        "after the last save, and after the last epoch (default 30; 0: every epoch)")
    if student:
        g.add_argument("--no-export", action="store_true", help="do not export the student for TF Serving")
    return p


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """preset < --config file < explicit options; validated."""
    cfg = ExperimentConfig.load(args.config) if args.config else preset(args.preset)
    if args.config and args.preset != "cpu":
        # a config file is complete on its own; --preset with it would be ambiguous
        raise ConfigError("--preset and --config are exclusive: a config file holds every setting")
    values = vars(args)
    if values.get("unlabeled") and not args.config and not any(
            values.get(d) is not None for d in _FIELDS if d.startswith("alpha_")):
        # label-free with no loss weights given: DiPalma's loss (soft labels + feature maps), no CE
        cfg.loss = replace(cfg.loss, ce=0.0, fm=0.0, at=0.0, zk_at=0.0, kd=1.0, fmap=1.0)
    for dest, (section, field_name) in _FIELDS.items():
        value = values.get(dest)
        if value is not None:
            part = getattr(cfg, section)
            setattr(cfg, section, replace(part, **{field_name: value}))
    if values.get("classes"):
        names = tuple(n.strip() for n in values["classes"].split(",") if n.strip())
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(f"argument --classes: {values['classes']!r}: expected two or more distinct "
                              "class folder names separated by commas")
        cfg.data = replace(cfg.data, class_names=names)
    if values.get("sicap"):
        cfg.data = replace(cfg.data, source="sicap", root=values["sicap"])
    elif values.get("folders"):
        cfg.data = replace(cfg.data, source="folders", root=values["folders"])
    elif args.preset == "paper" and not args.config and cfg.data.root is None:
        raise ConfigError("--preset paper reads SICAPv2: pass --sicap ROOT")
    if values.get("fold") is not None and cfg.data.source == "folders":
        raise ConfigError(f"argument --fold: {values['fold']!r}: --folders data has no folds (its splits are "
                          "ROOT/train, val, test or a stratified draw); --fold applies to --sicap and the "
                          "synthetic data (Val1..Val4)")
    if values.get("classes") and cfg.data.source != "folders":
        raise ConfigError(f"argument --classes: class order applies to --folders data; data.source is "
                          f"{cfg.data.source!r} (SICAPv2's order is fixed: NC, G3, G4, G5)")
    if values.get("unlabeled"):
        cfg.data = replace(cfg.data, unlabeled=values["unlabeled"])
        if cfg.loss.ce > 0:
            raise ConfigError(f"--unlabeled trains without labels, so --alpha-ce must be 0 (got "
                              f"{cfg.loss.ce:g}); label-free terms: --alpha-kd, --alpha-fmap, --alpha-fm, "
                              "--alpha-at")
    if values.get("weights_from"):
        cfg = _tuned_weights(cfg, values)
    if values.get("at_first_order"):
        cfg.loss = replace(cfg.loss, at_second_order=False)
    if values.get("jit"):
        cfg.run = replace(cfg.run, jit=True)
    return cfg.validate()


def _tuned_weights(cfg: ExperimentConfig, values: dict) -> ExperimentConfig:
    """``cfg`` with the weights of a tuning record (``--weights-from``): the distillation terms' weights
    chosen on validation; an explicit ``--alpha-`` of one of them contradicts it."""
    from ird_tf.runs.tuning import GRID_TERMS, apply_record, read_record

    given = [f"--alpha-{t.replace('_', '-')}" for t in GRID_TERMS if values.get(f"alpha_{t}") is not None]
    if given:
        raise ConfigError(f"argument --weights-from: the tuned record sets the distillation weights; leave "
                          f"out {', '.join(given)}")
    if values.get("unlabeled"):
        raise ConfigError("argument --weights-from: weights are tuned with labels; --unlabeled trains "
                          "without them")
    cfg.validate()  # the settings the record is checked against
    source = values["weights_from"]
    return apply_record(cfg, read_record(source), source)


def with_option(message: str, values: dict) -> str:
    """Prefixes a config error with the command-line option that set the bad setting, if one did:
    ``argument --res: data.student_mag=3.0: ...``; else, when the setting came from ``--config``, with
    that file (the message names the setting by its YAML key)."""
    for dest, (section, field_name) in _FIELDS.items():
        if values.get(dest) is not None and message.startswith(f"{section}.{field_name}="):
            return f"argument --{dest.replace('_', '-')}: {message}"
    for dest, key in (("sicap", "data.root="), ("folders", "data.root="), ("unlabeled", "data.unlabeled=")):
        if values.get(dest) is not None and message.startswith(key):
            return f"argument --{dest}: {message}"
    if values.get("config") and not message.startswith(("config file", "argument ", "--")):
        return f"config file {values['config']}: {message}"
    return message


#: Python names in library messages -> the options a command-line user types
_OPTION_NAMES = {"skip_corrupt=True": "--skip-corrupt", "skip_missing=True": "--skip-missing"}


#: the same for the study commands, whose settings come from the study file
STUDY_FILE_NAMES = {"skip_corrupt=True": "data.skip_corrupt: true in the study file",
                    "skip_missing=True": "data.skip_missing: true in the study file"}


def for_command_line(message: str, names: dict[str, str] | None = None) -> str:
    """A library message in the words of the command line (``--skip-corrupt``, not ``skip_corrupt=True``;
    ``names``: another table, e.g. :data:`STUDY_FILE_NAMES`)."""
    for python, option in (names or _OPTION_NAMES).items():
        message = message.replace(python, option)
    return message


def run_command(main_body, args: argparse.Namespace, cfg: ExperimentConfig, *,
                names: dict[str, str] | None = None) -> int:
    """Runs a command's body; a user's mistake ends it with a one-line message instead of a traceback: a
    setting found wrong only at work time (initial weights that do not fit the model) with exit status 2,
    a data error, a diverged run or a file that cannot be written (a full disk) with exit status 1.
    Trained work stays in the run directory."""
    try:
        return main_body(args, cfg)
    except ConfigError as e:
        print(f"error: {for_command_line(with_option(str(e), vars(args)), names)}", file=sys.stderr,
              flush=True)
        return 2
    except (DataError, TrainingDiverged) as e:
        print(f"error: {for_command_line(str(e), names)}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:
        if e.errno is None:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write or read{where}: {e.strerror or e}; the run's earlier files are kept and "
              "the same command resumes it", file=sys.stderr, flush=True)
        return 1


def start(cfg: ExperimentConfig, args: argparse.Namespace | None = None, *, student: bool = True,
          scored: tuple[str, ...] = ("val", "test")):
    """(strategy, splits): the runtime set up and the labelled splits loaded, said in one line, and every
    input the command will read checked (:func:`ird_tf.runs.check_inputs`) before any work starts.
    ``scored``: the splits the command scores (tuning: the validation split only; the test split's
    images are then not checked either)."""
    from ird_tf.runs import check_inputs, load_splits, setup_runtime

    strategy = setup_runtime(cfg)
    splits = load_splits(cfg)
    fold = "" if cfg.data.source == "folders" else f", fold {cfg.data.fold}"
    say(f"data: {cfg.data.source}{fold}: {len(splits.train)} train / {len(splits.val)} val"
        f" / {len(splits.test)} test patches, classes {list(splits.class_names)}")
    check_inputs(cfg, splits, allow_empty_classes=bool(getattr(args, "allow_empty_classes", False)),
                 student=student, scored=scored)
    return strategy, splits


def parse(description: str, argv: Sequence[str] | None, *, student: bool = True,
          extra: Callable[[argparse.ArgumentParser], None] | None = None
          ) -> tuple[argparse.Namespace, ExperimentConfig]:
    """Parses argv into (namespace, config); a bad setting exits with status 2 and a clear message.
    ``extra`` adds a command's own options to the shared ones."""
    parser = build_parser(description, student=student)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as e:
        parser.error(with_option(str(e), vars(args)))
    if args.print_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        raise SystemExit(0)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return args, cfg
