"""The reliability figures: fault points tried and survived with nothing lost, bad-input classes tried and
handled with a clear message, property-test examples run — measured by running the reliability tests.

    python tools/fault_matrix.py [--out experiments/results/fault_matrix_cpu.md]

Runs ``tests/reliability`` once in this process (a few minutes on 2 cores: the fault chains start about
thirty real ``distill`` and ``slide`` processes) and prints a Markdown table per kind; with ``--out`` also
writes it, headed by the command and the commit. Each row's verdict is the outcome of the test that
exercised it: a fault chain passes only when every step of it fired and the final result equals the
uninterrupted run's, so a failing chain marks all its steps.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "reliability"


class Outcomes:
    """pytest plugin: each test's outcome and, for hypothesis tests, the examples it ran."""

    def __init__(self) -> None:
        self.passed: dict[str, bool] = {}
        self.examples: dict[str, int] = {}

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.passed[report.nodeid] = report.passed

    def pytest_runtest_teardown(self, item) -> None:
        stats = getattr(item, "hypothesis_statistics", "")
        if stats:
            self.examples[item.nodeid] = sum(int(n) for n in re.findall(r"(\d+) passing", stats))


def verdict(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "not run"}[ok]


def table(outcomes: Outcomes) -> str:
    sys.path.insert(0, str(TESTS))
    import test_bad_inputs as bad
    import test_faults as faults

    def chain_ok(name: str) -> bool | None:
        return outcomes.passed.get(
            f"tests/reliability/test_faults.py::test_killed_at_each_point_then_rerun_equals_an_uninterrupted_run"
            f"[{name}]")

    fault_rows = [(step, "teacher") for step in faults.TEACHER_CHAIN]
    fault_rows += [(step, "student") for step in faults.STUDENT_CHAIN] + [(faults.SLIDE_STEP, "student")]
    lines = ["### Fault points (SIGKILL, or a full disk, then the same command again)", "",
             "| interrupted | fault | then | chain | whole afterwards |", "|---|---|---|---|---|"]
    for step, chain in fault_rows:
        kind = "ENOSPC (exit 1, one line)" if step.error else "SIGKILL"
        then = f"{step.damage} left on disk" if step.damage else ""
        ok = verdict(chain_ok(chain))
        lines.append(f"| {step.what} | `{step.fault}` {kind} | {then} | {chain} | {ok} |")
    survived = sum(bool(chain_ok(chain)) for _, chain in fault_rows)
    lines += ["", f"Fault points tried: {len(fault_rows)}; survived with nothing lost: {survived}.", ""]

    lines += ["### Bad inputs (`distill`, nothing trained)", "", "| input | exit status | handled |",
              "|---|---|---|"]
    handled = 0
    for name, _argv, status, _words in bad.BAD_INPUTS:
        ok = outcomes.passed.get("tests/reliability/test_bad_inputs.py::"
                                 f"test_a_bad_input_ends_with_a_clear_message_and_no_run_directory[{name}]")
        handled += bool(ok)
        lines.append(f"| `{name}` | {status} | {verdict(ok)} |")
    lines += ["", f"Bad-input classes tried: {len(bad.BAD_INPUTS)}; handled with a clear message and no run "
              f"directory: {handled}.", ""]

    lines += ["### Property-based tests (hypothesis)", "", "| test | examples run | passed |",
              "|---|---|---|"]
    total = 0
    for nodeid, n in sorted(outcomes.examples.items()):
        total += n
        lines.append(f"| `{nodeid.split('::')[-1]}` | {n} | {verdict(outcomes.passed.get(nodeid))} |")
    lines += ["", f"Property-test examples run: {total}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the tables there (Markdown)")
    args = parser.parse_args(argv)
    import pytest

    outcomes = Outcomes()
    start = time.time()
    code = pytest.main([str(TESTS), "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts="],
                       plugins=[outcomes])
    text = table(outcomes)
    print(text)
    if args.out:
        from ird_tf.files import write_text

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        head = (f"# Reliability figures\n\n`python tools/fault_matrix.py --out {args.out}` at commit "
                f"`{commit}`, {time.time() - start:.0f} s.\n\n")
        write_text(args.out, head + text)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
