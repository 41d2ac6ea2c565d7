"""The command line, ``python -m ird_tf.data.synthetic``: writes a dataset and/or a preview PNG
with the settings given as flags (defaults: benchmark v1); ``python -m ird_tf.data.synthetic slide
--out X.tiff`` writes a synthetic whole slide (:mod:`ird_tf.data.synthetic.slide`). Apart from
``__main__`` so that ``main`` can be imported and tested."""

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
                    "Defaults are benchmark v1.",
        epilog="A synthetic whole slide: python -m ird_tf.data.synthetic slide --out X.tiff (slide -h).")
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
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["slide"]:
        return slide_main(argv[1:])
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


def _slide_parser() -> argparse.ArgumentParser:
    from ird_tf.data.synthetic.slide import COMPRESSIONS, SlideSpec

    d = SlideSpec()
    p = argparse.ArgumentParser(
        prog="python -m ird_tf.data.synthetic slide",
        description="Write a synthetic whole slide: a pyramidal tiled TIFF (downsamples 1..32) of "
                    "benchmark-v1 tissue with regions of known Gleason pattern on glass, with its "
                    "ground truth X.mask.png (one pixel per cell: 0 NC, 3/4/5, 255 glass) and "
                    "X.truth.json. OpenSlide and TiffSlide both read it.")
    p.add_argument("--out", type=Path, required=True, metavar="X.tiff", help="the slide file to write")
    p.add_argument("--width", type=int, default=d.width, metavar="PX",
                   help=f"level-0 width (default {d.width})")
    p.add_argument("--height", type=int, default=d.height, metavar="PX",
                   help=f"level-0 height (default {d.height})")
    p.add_argument("--mpp", type=float, default=d.mpp, metavar="UM",
                   help=f"µm/px at level 0 (default {d.mpp:g}: 10x)")
    p.add_argument("--cell", type=int, default=d.cell, metavar="PX",
                   help=f"side of one tissue cell, a benchmark patch, at level 0 (default {d.cell})")
    p.add_argument("--tissue", type=float, default=d.tissue, metavar="F",
                   help=f"share of the cells holding tissue (default {d.tissue:g})")
    p.add_argument("--grades", type=float, nargs=4, default=d.grades, metavar=("NC", "G3", "G4", "G5"),
                   help="shares of the tissue cells per class (default %(default)s)")
    p.add_argument("--variants", type=int, default=d.variants, metavar="N",
                   help=f"rendered patches per class (default {d.variants})")
    p.add_argument("--compression", choices=COMPRESSIONS, default=d.compression,
                   help="tile compression: jpeg (as scanners write) or deflate (lossless)")
    p.add_argument("--seed", type=int, default=d.seed, metavar="N", help=f"(default {d.seed})")
    return p


def slide_main(argv: Sequence[str]) -> int:
    import time

    from ird_tf.data.synthetic.slide import SlideSpec, write_slide

    parser = _slide_parser()
    a = parser.parse_args(argv)
    spec = SlideSpec(width=a.width, height=a.height, mpp=a.mpp, cell=a.cell, tissue=a.tissue,
                     grades=tuple(a.grades), variants=a.variants, seed=a.seed, compression=a.compression)
    start = time.perf_counter()
    try:
        truth = write_slide(a.out, spec)
    except ConfigError as e:
        parser.error(str(e))
    print(f"synthetic: slide {a.out} ({a.width}x{a.height} px at {a.mpp:g} µm/px, "
          f"{truth['tissue_cells']} tissue cells {truth['counts']}) in {time.perf_counter() - start:.2f} s",
          flush=True)
    return 0
