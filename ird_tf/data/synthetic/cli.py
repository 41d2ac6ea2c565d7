"""The command line, ``python -m ird_tf.data.synthetic``: writes a dataset and/or a preview PNG
with the settings given as flags (defaults: benchmark v1). Apart from ``__main__`` so that ``main``
can be imported and tested."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ird_tf.config import ConfigError, SyntheticConfig
from ird_tf.data.synthetic.dataset import generate, patient_split, preview
from ird_tf.data.synthetic.render import check_config


def _parser() -> argparse.ArgumentParser:
    d = SyntheticConfig()
    p = argparse.ArgumentParser(
        prog="python -m ird_tf.data.synthetic",
        description="Write the synthetic H&E prostate benchmark (SICAPv2 layout) and/or a preview PNG. "
                    "Defaults are benchmark v1.")
    p.add_argument("--out", type=Path, metavar="DIR", help="dataset folder (images/, masks/, partition/...)")
    p.add_argument("--preview", type=Path, metavar="PNG", help="write a preview grid here (alone: only that)")
    for flag, name in (("--patients", "patients"), ("--slides-per-patient", "slides_per_patient"),
                       ("--patches-per-slide", "patches_per_slide"), ("--patch-size", "patch_size"),
                       ("--folds", "folds"), ("--seed", "seed")):
        default = getattr(d, name)
        p.add_argument(flag, type=int, metavar="N", default=default, help=f"(default {default})")
    p.add_argument("--magnification", type=float, metavar="X", default=d.magnification,
                   help=f"10 = 1 µm/px (default {d.magnification:g})")
    p.add_argument("--class-balance", type=float, nargs=4, metavar=("NC", "G3", "G4", "G5"),
                   default=d.class_balance, help="relative class weights (default balanced)")
    p.add_argument("--difficulty", type=float, metavar="D", default=d.difficulty,
                   help=f"0..1 (default {d.difficulty:g})")
    p.add_argument("--workers", type=int, metavar="N", default=None,
                   help="processes (default: all cores, inline for small jobs; 1 = inline)")
    p.add_argument("--per-class", type=int, metavar="N", default=2, help="preview rows per class (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.out is None and args.preview is None:
        parser.error("give --out DIR (dataset) and/or --preview PNG")
    cfg = replace(SyntheticConfig(), seed=args.seed, patients=args.patients,
                  slides_per_patient=args.slides_per_patient, patches_per_slide=args.patches_per_slide,
                  patch_size=args.patch_size, magnification=args.magnification,
                  class_balance=tuple(args.class_balance), difficulty=args.difficulty, folds=args.folds)
    try:
        check_config(cfg)
        if args.out is not None:
            patient_split(cfg)
            generate(args.out, cfg, workers=args.workers, progress=not args.quiet)
        if args.preview is not None:
            print(f"synthetic: preview {preview(args.preview, cfg, args.per_class)}")
    except ConfigError as e:
        parser.error(str(e))
    return 0
