"""Running the label-free study: the unlabeled sets written, every planned run trained or reused, the
tables rewritten after each run trained, tables and figures at the end."""

from __future__ import annotations

import time
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.experiments import study
from ird_tf.experiments.label_free.config import LabelFreeConfig
from ird_tf.experiments.label_free.plan import plan
from ird_tf.experiments.label_free.sets import budget_steps, prepare_sets
from ird_tf.experiments.label_free.tables import write_outputs
from ird_tf.progress import say as _say


def say(msg: str) -> None:
    _say(msg, "label_free")


def run_study(base: ExperimentConfig, settings: LabelFreeConfig, *, command: str, results_dir: Path,
              out_name: str) -> int:
    """Runs (or reuses) every planned run, rewriting the tables after each one trained and tables and
    figures at the end; 0 when all finished."""
    from ird_tf.runs import check_inputs, load_splits, setup_runtime

    start = time.time()
    strategy = setup_runtime(base)
    splits = load_splits(base)
    check_inputs(base, splits)  # every image and weights file, before the first run starts
    n_train = len(splits.train)
    sets = prepare_sets(base, settings, splits)
    planned = plan(base, settings, n_train)
    say(f"study {settings.name!r}: {len(planned)} runs; {n_train} labeled training images; unlabeled sets "
        + ", ".join(f"+{r:g}x: {u.size} images" for r, u in sets.items())
        + f"; step budget {budget_steps(base, n_train)}; outputs {results_dir / out_name}.md/.csv/.png")
    header = dict(command=command, commit=study.git_commit(), start=start)

    def after(_p, reused: bool, _tag: str) -> None:
        if not reused:
            write_outputs(base, settings, planned, n_train, results_dir, out_name, header, figures=False)

    study.run_all(planned, splits, strategy, say=say, start=start, header=header, after=after)
    md, _, _ = write_outputs(base, settings, planned, n_train, results_dir, out_name, header)
    say(f"finished in {study.fmt_time(time.time() - start)}: {header['trained']} trained, {header['reused']} "
        f"reused, {len(header['failed'])} failed; table {md}")
    print(md.read_text(), flush=True)
    return 1 if header["failed"] else 0


__all__ = ["run_study"]
