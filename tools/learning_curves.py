"""Teacher learning curves under the old and the new ``cpu`` training recipe, over several seeds.

    python tools/learning_curves.py [--seeds 22 32 43 52 62] [--output-dir runs/learning_curves]
                                    [--out experiments/results/learning_curves_cpu]

Trains (or finds, or resumes) the 10x ``vgg_tiny`` teacher of the ``cpu`` preset for every seed with these
recipes:

- ``constant``: Adam at a constant 1e-3, BatchNorm moving averages of the augmented training batches
  (the ``cpu`` preset before this change);
- ``cosine``: one epoch of linear warm-up to 1e-3, then a cosine decay to 0 (the schedule alone);
- ``cosine_bn``: the ``cpu`` preset now: the schedule, and the BatchNorm statistics recomputed on the
  training images without augmentation at each epoch end.

Writes ``OUT.png`` (validation balanced accuracy per epoch, one panel per recipe, one line per seed,
the last third of training shaded), ``OUT.json`` (every curve, the test balanced accuracy of the kept
checkpoint and the largest epoch-to-epoch swing of validation balanced accuracy in the last third,
per seed, with their summaries) and ``OUT.md`` (the same as a table), each naming this command.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ird_tf.config import ExperimentConfig, preset
from ird_tf.evaluation.curves import late_epochs, max_late_swing
from ird_tf.files import write_json, write_text
from ird_tf.progress import say

SEEDS = (22, 32, 43, 52, 62)


def recipes() -> dict[str, ExperimentConfig]:
    """The recipes, by name, in the order they are reported: old, schedule alone, new (the preset)."""
    new = preset("cpu")
    schedule = preset("cpu")
    schedule.optim = replace(schedule.optim, recalibrate_bn=False)
    old = preset("cpu")
    old.optim = replace(old.optim, schedule="constant", warmup_epochs=0.0, final_lr_fraction=0.0,
                        recalibrate_bn=False)
    return {"constant": old, "cosine": schedule, "cosine_bn": new}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train(cfg: ExperimentConfig, splits) -> dict:
    """One teacher run (found, resumed or trained): its validation curve and test scores."""
    import keras

    from ird_tf.runs import run_teacher, setup_runtime
    from ird_tf.training.callbacks import read_history

    keras.backend.clear_session()
    strategy = setup_runtime(cfg)
    result = run_teacher(cfg, splits, strategy)
    history = read_history(result.run_dir / "history.csv")
    curve = [float(v) for v in history["val_balanced_accuracy"]]
    return {
        "run_dir": result.run_dir.name,
        "val_balanced_accuracy": curve,
        "learning_rate": [float(v) for v in history.get("learning_rate", [])],
        "test_balanced_accuracy": float(result.metrics["test"]["balanced_accuracy"]),
        "test_kappa": float(result.metrics["test"]["kappa"]),
        "max_late_swing": max_late_swing(curve),
    }


def summary(runs: dict[int, dict]) -> dict:
    test = np.array([r["test_balanced_accuracy"] for r in runs.values()])
    swing = np.array([r["max_late_swing"] for r in runs.values()])
    return {"test_balanced_accuracy_mean": float(test.mean()),
            "test_balanced_accuracy_std": float(test.std(ddof=1)) if test.size > 1 else 0.0,
            "max_late_swing_max": float(swing.max()), "max_late_swing_mean": float(swing.mean())}


def plot(path: Path, results: dict[str, dict[int, dict]], epochs: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ird_tf.files import write_figure

    fig = Figure(figsize=(4.2 * len(results), 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(results), sharey=True)
    late = late_epochs(epochs)
    for ax, (name, runs) in zip(np.atleast_1d(axes), results.items(), strict=False):
        for seed, r in runs.items():
            curve = r["val_balanced_accuracy"]
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=f"seed {seed}")
        ax.axvspan(epochs - late + 1, epochs, color="grey", alpha=0.15, lw=0)
        s = summary(runs)
        ax.set(title=f"{name}: test bal. acc. {s['test_balanced_accuracy_mean']:.3f} ± "
                     f"{s['test_balanced_accuracy_std']:.3f}\nlargest late swing "
                     f"{s['max_late_swing_max']:.3f}",
               xlabel="epoch", ylim=(0.2, 1.0))
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("validation balanced accuracy")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    write_figure(path, fig)


def markdown(results: dict[str, dict[int, dict]], command: str, commit: str) -> str:
    lines = [f"<!-- {command} (commit {commit}) -->", "",
             "Teacher (10x, vgg_tiny, 128 px, synthetic benchmark), 20 epochs; late swing = largest "
             "epoch-to-epoch change of validation balanced accuracy in the last third of training.", "",
             "| recipe | seed | test bal. acc. | test kappa | late swing |", "|---|---|---|---|---|"]
    for name, runs in results.items():
        for seed, r in runs.items():
            lines.append(f"| {name} | {seed} | {r['test_balanced_accuracy']:.3f} | {r['test_kappa']:.3f} | "
                         f"{r['max_late_swing']:.3f} |")
        s = summary(runs)
        lines.append(f"| {name} | mean ± std (max swing) | {s['test_balanced_accuracy_mean']:.3f} ± "
                     f"{s['test_balanced_accuracy_std']:.3f} | | {s['max_late_swing_max']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--recipes", nargs="+", choices=sorted(recipes()), default=["cosine_bn", "constant"],
                   help="which recipes to train (found runs are reused) and report, in this order")
    p.add_argument("--output-dir", default="runs/learning_curves",
                   help="parent of the teacher run directories")
    p.add_argument("--out", default="experiments/results/learning_curves_cpu",
                   help="path prefix of the .png, .json and .md written")
    args = p.parse_args(argv)
    command = "python tools/learning_curves.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    from ird_tf.runs import load_splits

    all_recipes = recipes()
    splits = load_splits(all_recipes["cosine_bn"])
    results: dict[str, dict[int, dict]] = {}
    for name in args.recipes:
        for seed in args.seeds:
            cfg = all_recipes[name]
            cfg = replace(cfg, run=replace(cfg.run, seed=seed, output_dir=args.output_dir, verbose=0))
            say(f"{name}, seed {seed}", source="learning_curves")
            r = train(cfg, splits)
            results.setdefault(name, {})[seed] = r
            say(f"{name}, seed {seed}: test bal. acc. {r['test_balanced_accuracy']:.3f}, late swing "
                f"{r['max_late_swing']:.3f}", source="learning_curves")
    results = {n: results[n] for n in all_recipes if n in results}  # fixed order: old to new
    epochs = all_recipes["cosine_bn"].optim.teacher_epochs
    out = Path(args.out)
    commit = _commit()
    plot(out.with_suffix(".png"), results, epochs)
    write_json(out.with_suffix(".json"), {
        "command": command, "commit": commit, "late_epochs": late_epochs(epochs),
        "recipes": {n: all_recipes[n].optim.__dict__ for n in results},
        "summary": {n: summary(r) for n, r in results.items()},
        "runs": {n: {str(s): r for s, r in runs.items()} for n, runs in results.items()}})
    table = markdown(results, command, commit)
    write_text(out.with_suffix(".md"), table)
    print(table, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
