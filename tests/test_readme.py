"""The README's figures are copies of what committed commands printed: these tests fail when a copy drifts."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = ROOT / "experiments" / "results"


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end if end >= 0 else None]


def _table_rows(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("|") and "---" not in line]


def _numbers(value) -> set[str]:
    """Every numeric leaf of a JSON document, as the benchmark printed it."""
    if isinstance(value, dict):
        return set().union(*(_numbers(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_numbers(v) for v in value)) if value else set()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return set()
    return {repr(value)}


def test_results_table_rows_are_those_of_the_sweep_file():
    rows = _table_rows(_section("### What the synthetic benchmark gives"))
    sweep_rows = set(_table_rows((RESULTS / "sweep_cpu.md").read_text(encoding="utf-8")))
    assert len(rows) >= 10, "the README lost its results table"
    missing = [r for r in rows if r not in sweep_rows]
    assert not missing, f"README rows not in experiments/results/sweep_cpu.md: {missing}"


def test_benchmark_figures_are_those_of_the_benchmark_file():
    bench = json.loads((RESULTS / "benchmark_cpu.json").read_text(encoding="utf-8"))
    printed = _numbers(bench)
    rows = _table_rows(_section("## Benchmarks"))[1:]  # without the header row
    assert len(rows) >= 6, "the README lost its benchmark table"
    for row in rows:
        figure = row.split("|")[2]
        numbers = re.findall(r"\d+(?:\.\d+)?", figure)
        assert numbers, row
        unknown = [n for n in numbers if n not in printed]
        assert not unknown, f"{unknown} in README row {row!r} are not in benchmark_cpu.json"


def test_quick_start_commands_exist_and_ci_calls_the_test_command():
    quick = _section("## Quick start")
    commands = re.findall(r"^(make \w+)", quick, flags=re.M)
    assert commands[:2] == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "python -m ird_tf.experiments.distill --res $(RES)" in makefile.replace("$(PY)", "python")
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), flags=re.M)
