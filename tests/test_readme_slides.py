"""The README's whole-slide figures are copies of what the committed slide benchmark printed."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BENCH_FILE = ROOT / "experiments" / "results" / "benchmark_slide_cpu.json"
BENCH = json.loads(BENCH_FILE.read_text(encoding="utf-8"))

# README row (its first words) -> the JSON values its figure column shows, in order
ROWS = {
    "10x Teacher / 1.25x native Student, end to end": [
        ("end_to_end", "teacher_over_student_1.25x_native"), ("end_to_end", "teacher_10x_seconds"),
        ("end_to_end", "student_1.25x_native_seconds")],
    "the same, inference alone": [
        ("end_to_end", "inference_only_teacher_over_student_1.25x_native"),
        ("end_to_end", "inference_only_seconds", "teacher_10x"),
        ("end_to_end", "inference_only_seconds", "student_1.25x_native")],
    "10x Teacher / 2.5x upsampled Student": [
        ("end_to_end", "teacher_over_student_2.5x_upsampled"), ("end_to_end", "teacher_10x_seconds"),
        ("end_to_end", "student_2.5x_upsampled_seconds")],
    "1.25x tiles read from the 1.25x level": [
        ("reading_1.25x", "level_over_level0_tiles_per_s"), ("reading_1.25x", "level", "tiles_per_s"),
        ("reading_1.25x", "level0_resize", "tiles_per_s")],
    "decoded pixels per second": [
        ("reading_1.25x", "level", "decoded_px_per_s"),
        ("reading_1.25x", "level0_resize", "decoded_px_per_s")],
    "peak memory (max RSS) of the slide command": [
        ("peak_memory_1.25x_student", "large", "max_rss_mb"),
        ("peak_memory_1.25x_student", "small", "max_rss_mb")],
}


def test_slide_benchmark_figures_are_those_of_the_benchmark_file():
    start = README.index("### Whole slides: measured")
    section = README[start:README.index("\n#", start + 10)]
    assert f"`{BENCH['command']}`" in section and f"`{BENCH['commit']}`" in section
    rows = [r for r in section.splitlines() if r.startswith("|") and "---" not in r][1:]
    assert len(rows) == len(ROWS)
    for row in rows:
        label, figure = row.split("|")[1].strip(), row.split("|")[2]
        (key,) = [k for k in ROWS if label.startswith(k)]
        want = []
        for path in ROWS[key]:
            value = BENCH["slide"]
            for p in path:
                value = value[p]
            want.append(repr(value))
        assert re.findall(r"\d+(?:\.\d+)?", figure.replace("²", ""))[: len(want)] == want, (row, want)
