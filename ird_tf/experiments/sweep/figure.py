"""Figure 3 of del Amor et al. (2023) from the runs of a sweep: what each model looks at.

    python -m ird_tf.experiments.figure_attention --config experiments/configs/sweep_cpu.yaml --res 2.5

For a few test patches per class (the first ones with a mask, in table order, so the figure is the
same every time), one row each: the patch at the teacher's and every sweep magnification (as the
student reads it: upsampled or native), then the attention of the student without distillation, of
the student with FM + AT+ and of the teacher, over each model's own input, with p(true class) in
green when the model's top class is right and red when wrong. Maps are those of the true class with
the sweep's ``localisation_weighting`` (the maps the localisation columns score). Writes
``<results-dir>/figure3_<sweep name>_<res>x.png`` (``figure3_<sweep name>_<preset>_<res>x.png`` with
``--preset``). The runs must have finished (run the sweep first, with the same ``--preset``/``--sicap``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ird_tf.config import PRESETS, ConfigError, ExperimentConfig, preset
from ird_tf.data.view import InputView
from ird_tf.experiments.study import RESULTS_DIR
from ird_tf.experiments.sweep.config import SweepConfig, load_sweep
from ird_tf.experiments.sweep.plan import Planned, plan
from ird_tf.runs import read_result

LABELS = {"alone": "no KD", "fm": "FM", "fm_at": "FM+AT+", "kd": "KD"}


def pick_rows(test, class_names: Sequence[str], per_class: int):
    """The first ``per_class`` test rows of each class, those with a mask first (table order)."""
    import pandas as pd

    has_mask = test["mask"].notna() if "mask" in test.columns else pd.Series(False, index=test.index)
    chosen = []
    for c in range(len(class_names)):
        rows = test[test["label"] == c]
        rows = pd.concat([rows[has_mask[rows.index]], rows[~has_mask[rows.index]]])
        chosen.append(rows.head(per_class))
    table = pd.concat(chosen).reset_index(drop=True)
    if table.empty:
        raise ConfigError("the test split is empty: nothing to draw")
    return table


def find_runs(base: ExperimentConfig, sweep: SweepConfig, res: float, seed: int, no_kd: str, kd: str
              ) -> dict[str, Planned]:
    """The finished teacher and the two students of the figure; ConfigError naming what is missing."""
    if res not in sweep.magnifications:
        raise ConfigError(f"--res {res:g} is not a magnification of sweep {sweep.name!r}: "
                          f"{[f'{m:g}' for m in sweep.magnifications]}")
    if seed not in sweep.seeds:
        raise ConfigError(f"--seed {seed} is not a seed of sweep {sweep.name!r}: {list(sweep.seeds)}")
    for option, method in (("--no-kd", no_kd), ("--kd", kd)):
        if method not in sweep.methods:
            raise ConfigError(f"{option} {method}: not a method of sweep {sweep.name!r}: "
                              f"{list(sweep.methods)}")
    planned = plan(base, sweep)
    if no_kd == kd:
        raise ConfigError(f"--no-kd and --kd are both {kd!r}; expected two different methods")
    wanted = {no_kd: (no_kd, res), kd: (kd, res), "teacher": ("teacher", float(base.data.teacher_mag))}
    found = {}
    for key, (method, mag) in wanted.items():
        p = next(p for p in planned if p.method == method and p.mag == mag and p.seed == seed)
        if read_result(p.run_dir) is None:
            raise ConfigError(f"the {p.label()} run has not finished ({p.run_dir}); run the sweep first: "
                              "python -m ird_tf.experiments.sweep --config <this file> (with the same "
                              "--preset / --sicap)")
        found[key] = p
    return found


def draw(base: ExperimentConfig, sweep: SweepConfig, *, res: float, seed: int, no_kd: str, kd: str,
         per_class: int, out: Path) -> Path:
    import tensorflow as tf

    from ird_tf.attention import attention_maps
    from ird_tf.data.pipeline import evaluation_dataset
    from ird_tf.evaluation.figures import attention_figure
    from ird_tf.runs import load_classifier, load_splits
    from ird_tf.training.runtime import set_precision

    runs = find_runs(base, sweep, res, seed, no_kd, kd)
    set_precision(base.run.precision)
    splits = load_splits(base)
    table = pick_rows(splits.test, splits.class_names, per_class)
    labels = table["label"].to_numpy(np.int32)
    d = base.data
    mags = [float(d.teacher_mag), *sorted(sweep.magnifications, reverse=True)]
    views = {}
    for mag in mags:
        view = InputView.student(replace(d, student_mag=mag, mode=sweep.mode))
        ds = evaluation_dataset(table, view, batch_size=len(table), cache=False)
        x, _ = next(iter(ds))
        views[f"{mag:g}x"] = x[view.key].numpy()
    teacher_view, student_view = f"{d.teacher_mag:g}x", f"{res:g}x"
    columns = list(views)
    inputs, maps, probs = {}, {}, {}
    for key, p in runs.items():
        name = "teacher" if key == "teacher" else LABELS.get(key, key)
        view = teacher_view if key == "teacher" else student_view
        model = load_classifier(p.cfg, InputView.of(p.cfg.data, p.kind), len(splits.class_names), p.run_dir)
        out_, m = attention_maps(model, tf.constant(views[view]), classes=tf.constant(labels),
                                 weighting=sweep.localisation_weighting, second_order=False)
        maps[name] = m[..., 0].numpy()
        probs[name] = tf.nn.softmax(out_["logits"], axis=-1).numpy()
        inputs[name] = view
        columns.append(name)
    rows = [{"label": int(labels[i]), "title": Path(table["path"][i]).stem,
             "images": {k: v[i] for k, v in views.items()},
             "maps": {k: v[i] for k, v in maps.items()}, "probs": {k: v[i] for k, v in probs.items()}}
            for i in range(len(table))]
    return attention_figure(out, rows, columns, splits.class_names, inputs=inputs)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ird_tf.experiments.figure_attention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="the sweep file whose runs to draw")
    p.add_argument("--res", type=float, required=True, help="student magnification (one of the sweep's)")
    p.add_argument("--seed", type=int, help="whose runs (default: the sweep's first seed)")
    p.add_argument("--per-class", type=int, default=2, help="test patches per class (default 2)")
    p.add_argument("--no-kd", default="alone", metavar="METHOD", help="student without KD (default alone)")
    p.add_argument("--kd", default="fm_at", metavar="METHOD", help="distilled student (default fm_at)")
    p.add_argument("--preset", choices=PRESETS,
                   help="the experiment settings of this preset instead of the file's (as the sweep run "
                        "with --preset); the figure gets the suffix _<preset>")
    p.add_argument("--sicap", metavar="ROOT", help="SICAPv2 root (overrides data.root)")
    p.add_argument("--results-dir", default=RESULTS_DIR)
    args = p.parse_args(argv)
    try:
        base, sweep = load_sweep(args.config)
        if args.preset:
            base = preset(args.preset)
        if args.sicap:
            base.data = replace(base.data, source="sicap", root=args.sicap)
        base.validate()
        sweep.validate(base)
        if args.per_class < 1:
            raise ConfigError(f"--per-class {args.per_class}: expected >= 1")
        seed = sweep.seeds[0] if args.seed is None else args.seed
        find_runs(base, sweep, args.res, seed, args.no_kd, args.kd)
    except ConfigError as e:
        p.error(str(e))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    suffix = f"_{args.preset}" if args.preset else ""
    out = Path(args.results_dir) / f"figure3_{sweep.name}{suffix}_{args.res:g}x.png"
    path = draw(base, sweep, res=args.res, seed=seed, no_kd=args.no_kd, kd=args.kd,
                per_class=args.per_class, out=out)
    print(f"figure: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
