"""The command line every study shares: options, seeds, the resolved settings, the dry run, the main."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ird_tf.config import PRESETS, ExperimentConfig, preset
from ird_tf.errors import ConfigError
from ird_tf.runs import read_result

RESULTS_DIR = "experiments/results"


def select_seeds(seeds: Sequence[int], first: int | None, quick: bool, setting: str) -> tuple[int, ...]:
    """The seeds a run of a study uses: the first ``first`` (``--seeds N``), or only the first with
    ``--quick`` when ``--seeds`` is not given."""
    if first is not None:
        if not 1 <= first <= len(seeds):
            raise ConfigError(f"--seeds {first}: expected 1..{len(seeds)} ({setting} = {list(seeds)})")
        return tuple(seeds[:first])
    return tuple(seeds[:1]) if quick else tuple(seeds)


@dataclass(frozen=True)
class StudyCommand:
    """What tells one study command from another; everything else is shared."""

    module: str  # python -m ird_tf.experiments.<module>
    section: str  # the study file's section ("sweep", "label_free")
    load: Callable[[str], tuple[ExperimentConfig, Any]]  # study file -> (base, study settings)
    file_help: str
    quick_help: str
    outputs: str  # what --results-dir holds: "tables" or "outputs"
    dry_run_help: str
    print_config: bool = False
    dry_run_reads_data: bool = False  # the dry run loads the splits, so the data root is checked first

    def out_prefix(self) -> str:
        return f"{self.module}_"


def build_parser(cmd: StudyCommand, doc: str,
                 extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.ArgumentParser:
    """The options every study takes; ``extra`` adds the study's own (after ``--sicap``)."""
    p = argparse.ArgumentParser(prog=f"python -m ird_tf.experiments.{cmd.module}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.yaml", help=cmd.file_help)
    p.add_argument("--seeds", type=int, metavar="N", help=f"use the first N seeds of {cmd.section}.seeds")
    p.add_argument("--quick", action="store_true", help=cmd.quick_help)
    p.add_argument("--preset", choices=PRESETS,
                   help=f"take the experiment settings from this preset instead of the file (the "
                        f"{cmd.section}: section still comes from the file); {cmd.outputs} get the suffix "
                        "_<preset>")
    p.add_argument("--sicap", metavar="ROOT", help="SICAPv2 root (overrides data.source and data.root)")
    if extra is not None:
        extra(p)
    p.add_argument("--results-dir", default=RESULTS_DIR,
                   help=f"where the {cmd.outputs} go (default {RESULTS_DIR})")
    p.add_argument("--dry-run", action="store_true", help=cmd.dry_run_help)
    if cmd.print_config:
        p.add_argument("--print-config", action="store_true", help=f"print the resolved {cmd.section} file "
                                                                   "and exit")
    return p


Adjust = Callable[[Any, argparse.Namespace], Any]  # (study settings, args) -> study settings


def resolve(cmd: StudyCommand, args: argparse.Namespace, adjust: Adjust | None = None
            ) -> tuple[ExperimentConfig, Any, str]:
    """(base, study settings, output name) from the command line: the file, then ``--preset``,
    ``--sicap``, the study's own options (``adjust``), ``--seeds``/``--quick``; validated. A
    ConfigError names the bad setting."""
    base, study = cmd.load(args.config)
    out_name = f"{cmd.out_prefix()}{study.name}"
    if args.preset:
        base = preset(args.preset)
        out_name += f"_{args.preset}"  # never overwrite the file's own outputs
    if args.sicap:
        base.data = replace(base.data, source="sicap", root=args.sicap)
    if adjust is not None:
        study = adjust(study, args)
    study = replace(study, seeds=select_seeds(study.seeds, args.seeds, args.quick, f"{cmd.section}.seeds"))
    if args.quick:
        base.optim = replace(base.optim, epochs=1, teacher_epochs=1)
        out_name += "_quick"
    base.validate()
    study.validate(base)
    return base, study, out_name


def print_dry_run(planned: Sequence, extra: Callable[[Any], str] = lambda p: "") -> int:
    """One line per planned run (finished or pending, and where), then the count."""
    done = 0
    for i, p in enumerate(planned, 1):
        finished = read_result(p.run_dir) is not None
        done += finished
        state = "finished" if finished else "pending"
        print(f"{i}/{len(planned)} {p.label()}{extra(p)}: {state} ({p.run_dir})")
    print(f"{done}/{len(planned)} runs finished")
    return 0


def main(cmd: StudyCommand, doc: str, argv: Sequence[str] | None, *,
         dry_run: Callable[[ExperimentConfig, Any], int],
         run: Callable[[ExperimentConfig, Any, str, Path, str], int],
         extra_options: Callable[[argparse.ArgumentParser], None] | None = None,
         adjust: Adjust | None = None) -> int:
    """Parses, resolves and checks the settings (errors exit 2 naming the setting), then prints them
    (``--print-config``), lists the runs (``--dry-run``) or runs the study:
    ``run(base, study, command, results_dir, out_name)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(cmd, doc, extra_options)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        base, study, out_name = resolve(cmd, args, adjust)
    except ConfigError as e:
        parser.error(str(e))
    if getattr(args, "print_config", False):
        sys.stdout.write(yaml.safe_dump({**base.to_dict(), cmd.section: study.to_dict()}, sort_keys=False))
        return 0
    if args.dry_run and not cmd.dry_run_reads_data:
        return dry_run(base, study)
    root = base.data.root
    if base.data.source in ("sicap", "folders") and root and not Path(root).is_dir():
        parser.error(f"data.root={root!r} is not a folder; pass the dataset root with --sicap ROOT")
    if args.dry_run:
        return dry_run(base, study)
    command = f"python -m ird_tf.experiments.{cmd.module} " + shlex.join(argv)
    from ird_tf.experiments.cli import STUDY_FILE_NAMES, run_command  # a mistake found at work: one line

    return run_command(lambda _args, cfg: run(cfg, study, command, Path(args.results_dir), out_name),
                       args, base, names=STUDY_FILE_NAMES)


def csv_plot_command(prog: str, doc: str, plot: Callable[[str, str | None], Path],
                     argv: Sequence[str] | None) -> int:
    """The command of a figure drawn from a study's CSV: ``plot(csv, out)``; a DataError exits 2."""
    from ird_tf.errors import DataError

    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", metavar="SWEEP.csv", help="CSV written by python -m ird_tf.experiments.sweep")
    p.add_argument("--out", metavar="PNG", help="output image (default: the CSV's path with .png)")
    args = p.parse_args(argv)
    try:
        out = plot(args.csv, args.out)
    except DataError as e:
        p.error(str(e))
    print(f"wrote {out}")
    return 0


__all__ = ["RESULTS_DIR", "StudyCommand", "build_parser", "csv_plot_command", "main", "print_dry_run",
           "resolve",
           "select_seeds"]
