"""Classify whole slides with a trained Student (and optionally the 10x Teacher on the same grid).

    python -m ird_tf.experiments.slide --model saved_models/<name> SLIDE_OR_DIR... --out DIR

For each slide (OpenSlide or TiffSlide formats: .tiff/.svs/.ndpi/...), under DIR/<slide name>/:
tiles.csv (level-0 x, y, width, height, µm/px read at, tissue fraction, prob_<class>, class),
tiles.geojson (the tiles as QuPath detections), heatmap.png, tissue.png, summary.json (slide-level
Gleason score and ISUP grade group by the biopsy rule) and done.json; DIR/slides.csv over all slides.
A rerun skips finished slides and redoes half-done ones; a slide that fails is named and the others go
on (exit status 1 at the end if any failed). Bad options: one line naming the option, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ird_tf.errors import ConfigError, DataError


def build_parser() -> argparse.ArgumentParser:
    from ird_tf.data.slides.backends import BACKENDS

    p = argparse.ArgumentParser(prog="python -m ird_tf.experiments.slide", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("slides", nargs="+", metavar="SLIDE_OR_DIR",
                   help="slide files, or folders whose slide files (not recursive) are all read")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="the Student: a SavedModel export (saved_models/<name>, its newest version; or one "
                        "version folder) or a run directory (runs/students/<run>: config.yaml + "
                        "best.weights.h5)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--teacher", metavar="DIR",
                   help="also run this 10x model on the same grid (a run directory runs/teachers/<run>, or "
                        "an export); its probabilities go to teacher_prob_<class> columns")
    p.add_argument("--backend", choices=BACKENDS,
                   help="slide reader (default: the first installed of openslide, tiffslide)")
    p.add_argument("--mpp", type=float, metavar="UM",
                   help="level-0 µm/px to use instead of the slide's metadata (needed when it has none); "
                        "refused when more than 2x off the metadata unless --force-mpp")
    p.add_argument("--force-mpp", action="store_true", help="use --mpp even when far from the metadata")
    p.add_argument("--tissue-threshold", type=float, metavar="S",
                   help="saturation above which a thumbnail pixel is tissue, in [0, 1) (default: Otsu's "
                        "threshold of the slide, at least 0.05)")
    p.add_argument("--min-tissue", type=float, default=0.5, metavar="F",
                   help="a tile is classified when at least this fraction of it is tissue (default 0.5)")
    p.add_argument("--overlap", type=float, default=0.0, metavar="F",
                   help="overlap of neighbouring tiles as a fraction of a tile, in [0, 1) (default 0)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="tiles per model call (default: the pixels of 64 network inputs of 128 px, 64 to "
                        "1024 tiles: 1024 for a 1.25x Student's 16 px inputs, 64 for 128 px ones)")
    p.add_argument("--shard", metavar="i/n",
                   help="process only every n-th slide starting with the i-th (1 <= i <= n) of the sorted "
                        "list, to split the work between n processes writing the same --out")
    p.add_argument("--min-pattern-tiles", type=int, default=0, metavar="N",
                   help="slide grading ignores a Gleason pattern with fewer tiles than N (a guard against "
                        "classifier noise; default 0: the biopsy rule as written)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ird_tf.runs.slide import SlideSettings, find_slides, load_model, parse_shard, run_slides

    settings = SlideSettings(backend=args.backend, mpp=args.mpp, force_mpp=args.force_mpp,
                             tissue_threshold=args.tissue_threshold, min_tissue=args.min_tissue,
                             overlap=args.overlap, batch_size=args.batch_size,
                             min_pattern_tiles=args.min_pattern_tiles)
    try:
        settings.check()
        if args.backend:
            from ird_tf.data.slides.backends import installed_backends

            if args.backend not in installed_backends():
                raise ConfigError(f"argument --backend: {args.backend} is not installed "
                                  "(pip install 'ird_tf[slide]')")
        shard = parse_shard(args.shard)
        slides = find_slides(args.slides)
        if not slides:
            raise ConfigError(f"argument SLIDE_OR_DIR: no slide files in {args.slides}")
        student = load_model(args.model, "student", "--model")
        teacher = load_model(args.teacher, "teacher", "--teacher") if args.teacher else None
        result = run_slides(slides, args.out, student, teacher, settings, shard)
    except ConfigError as e:
        parser.error(str(e))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    for name, msg in result.failed.items():
        print(f"error: slide {name}: {msg}", file=sys.stderr, flush=True)
    return 1 if result.failed else 0


__all__ = ["build_parser", "main"]
