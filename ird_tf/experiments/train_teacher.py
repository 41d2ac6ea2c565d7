"""Train the high-magnification Teacher alone (``distill`` does this by itself when none is found).

    python -m ird_tf.experiments.train_teacher [--sicap ROOT | --folders ROOT] [--fold Val1] [--seed 22]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ird_tf.experiments.cli import parse, run_command, start


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse(__doc__, argv, student=False)
    return run_command(_train_teacher, args, cfg)


def _train_teacher(_args, cfg) -> int:
    from ird_tf.runs import run_teacher, summary_table

    strategy, splits = start(cfg, _args, student=False)
    teacher = run_teacher(cfg, splits, strategy)
    print(summary_table(cfg, teacher, None), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
