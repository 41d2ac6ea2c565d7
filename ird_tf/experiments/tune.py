"""Choose the loss weights on the validation split.

    python -m ird_tf.experiments.tune --res 2.5
    python -m ird_tf.experiments.distill --res 2.5 --weights-from runs/tuning/<name>

The paper's weights (0.1 FM, 10 AT+) were tuned for SICAPv2 at 2.5x; on other data they can do worse
than the student trained alone. This command trains (or finds) one student per point of a small grid
of distillation weights against the one teacher; each grid holds 0, so the student without
distillation (CE only) is always a candidate. Each candidate is an ordinary student run, named from
its weights: distill with the same weights finds it. Candidates are scored on the validation split
only; the test split is not checked, read or scored. The choice: the best validation quadratic kappa,
then the best validation balanced accuracy, then the simpler candidate (fewer, smaller distillation
terms). It writes <output-dir>/tuning/<name>/tuning.json (the grid, each candidate's run directory and
validation scores, the choice and the reason, what it was tuned for) and tuning.md (the same as a
table). --name names the tuning folder (the candidates keep their derived names). The other options
are distill's: CE and the terms' options as configured.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from ird_tf.errors import ConfigError
from ird_tf.experiments.cli import parse, run_command, start
from ird_tf.runs.tuning import DEFAULT_GRID, GRID_TERMS, SCORED, check_grid
from ird_tf.terms import term_spec


def _values(text: str) -> tuple[float, ...]:
    bad = argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas (0,0.1,1)")
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise bad from None
    if not values:
        raise bad
    return values


def _grid_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the grid of weights (each must hold 0; every combination is a candidate)")
    for name in GRID_TERMS:
        default = DEFAULT_GRID.get(name)
        where = f"default {','.join(f'{v:g}' for v in default)}" if default else "default: 0, not varied"
        g.add_argument(f"--grid-{name.replace('_', '-')}", type=_values, metavar="W,W,...",
                       help=f"weights of {term_spec(name).label}, {term_spec(name).help} ({where})")


def grid_from_args(args: argparse.Namespace) -> dict[str, tuple[float, ...]]:
    """The grid of the command line: the defaults (FM 0,0.1 x AT+ 0,1,10) and any --grid-<term>."""
    values = vars(args)
    grid = dict(DEFAULT_GRID)
    for name in GRID_TERMS:
        if values.get(f"grid_{name}") is not None:
            grid[name] = values[f"grid_{name}"]
    return check_grid(grid)


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse(__doc__, argv, extra=_grid_options)
    return run_command(_tune, args, cfg)


def _checked(args: argparse.Namespace, cfg):
    """(grid, config, tuning name) after the checks that tuning adds to distill's."""
    values = vars(args)
    for option in ("weights_from", "unlabeled"):
        if values.get(option):
            raise ConfigError(f"argument --{option.replace('_', '-')}: not an option of tune (it chooses the "
                              "weights, on labelled validation data)")
    grid = grid_from_args(args)
    given = [f"--alpha-{t.replace('_', '-')}" for t in GRID_TERMS if values.get(f"alpha_{t}") is not None]
    if given:
        raise ConfigError(f"argument {given[0]}: the grid sets the distillation weights; use "
                          f"{given[0].replace('--alpha-', '--grid-')} instead")
    return grid, replace(cfg, run=replace(cfg.run, name=None)), cfg.run.name


def _tune(args, cfg) -> int:
    from ird_tf.experiments.study import prepare_run
    from ird_tf.runs.tuning import tune

    grid, cfg, name = _checked(args, cfg)
    strategy, splits = start(cfg, args, scored=SCORED)
    path, _ = tune(cfg, splits, strategy, grid, name=name, before_each=prepare_run)
    print((path / "tuning.md").read_text(), flush=True)
    print(f"distill with these weights: python -m ird_tf.experiments.distill ... --weights-from {path}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
