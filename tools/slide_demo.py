"""The whole-slide demo of the README: a synthetic slide, a trained 1.25x Student (and its 10x Teacher on
the same grid), the slide command, agreement with the slide's ground truth, and docs/slide_heatmap.png.

    python tools/slide_demo.py            # about 5 minutes on a 2-core CPU, most of it training

Steps (each a command a user would type; finished work is reused when run again):

1. ``python -m ird_tf.data.synthetic slide --out .cache/slide_demo/demo.tiff --width 6144 --height 4096
   --seed 7``
2. ``python -m ird_tf.experiments.distill --res 1.25 --mode native --name slide_demo_1.25x`` (the
   synthetic benchmark's teacher and a native 1.25x Student, exported to saved_models/slide_demo_1.25x)
3. ``python -m ird_tf.experiments.slide --model saved_models/slide_demo_1.25x --teacher <teacher run>
   .cache/slide_demo/demo.tiff --out .cache/slide_demo/out``

then compares each tile's class with the class of its cell in ``demo.truth.json`` (tiles are the cells:
the grid is the Teacher's 128 µm one), prints the figures, and writes docs/slide_heatmap.png: the
command's heatmap.png beside the ground truth drawn the same way.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "slide_demo"
NAME = "slide_demo_1.25x"
PY = sys.executable


def sh(*args: str) -> None:
    print("$", " ".join(args).replace(PY, "python").replace(f"{ROOT}/", ""), flush=True)
    subprocess.run(list(args), check=True, cwd=ROOT)


def main() -> int:
    slide = WORK / "demo.tiff"
    if not slide.is_file():
        sh(PY, "-m", "ird_tf.data.synthetic", "slide", "--out", str(slide), "--width", "6144", "--height",
           "4096", "--seed", "7")
    sh(PY, "-m", "ird_tf.experiments.distill", "--res", "1.25", "--mode", "native", "--name", NAME)
    versions = [p for p in (ROOT / "saved_models" / NAME).iterdir() if p.name.isdigit()]
    newest = max(versions, key=lambda p: int(p.name))
    run_dir = Path(json.loads((newest / "assets.extra" / "metadata.json").read_text())["run_dir"])
    # the teacher that distilled it: same backbone, fold and seed (the newest finished one)
    import yaml

    cfg = yaml.safe_load((ROOT / run_dir / "config.yaml").read_text())
    pattern = f"{cfg['model']['backbone']}_10x_{cfg['data']['fold']}_s{cfg['run']['seed']}_*"
    teachers = sorted((ROOT / "runs" / "teachers").glob(pattern), key=lambda p: p.stat().st_mtime)
    teacher = next((t for t in reversed(teachers) if (t / "best.weights.h5").is_file()), None)
    out = WORK / "out"
    cmd = [PY, "-m", "ird_tf.experiments.slide", "--model", str(ROOT / "saved_models" / NAME), str(slide),
           "--out", str(out)]
    if teacher is not None:
        cmd += ["--teacher", str(teacher)]
    sh(*cmd)
    truth = json.loads(slide.with_name("demo.truth.json").read_text())
    labels, cell, classes = truth["labels"], truth["cell"], truth["classes"]
    with open(out / "demo" / "tiles.csv") as f:
        rows = list(csv.DictReader(f))
    figures = {"student_run": str(run_dir), "tiles": len(rows),
               "teacher_run": str(teacher.relative_to(ROOT)) if teacher else None}
    for who, key in (("student", "class"), ("teacher", "teacher_class")):
        if key not in rows[0]:
            continue
        per = {c: [0, 0] for c in classes}
        for r in rows:
            want = classes[labels[int(r["y"]) // cell][int(r["x"]) // cell]]
            per[want][0] += r[key] == want
            per[want][1] += 1
        recall = {c: round(k / n, 3) for c, (k, n) in per.items() if n}
        figures[who] = {"tile_accuracy": round(sum(k for k, _ in per.values()) / len(rows), 3),
                        "balanced_accuracy": round(sum(recall.values()) / len(recall), 3), "recall": recall}
    summary = json.loads((out / "demo" / "summary.json").read_text())
    from ird_tf.evaluation.gleason import grade_slide

    c = truth["counts"]
    figures["grading_truth"] = grade_slide({3: c["G3"], 4: c["G4"], 5: c["G5"]}).label
    figures["grading_student"] = summary["grading"].get("label")
    figures["grading_teacher"] = summary.get("teacher", {}).get("grading", {}).get("label")
    figures["slide_seconds_student_and_teacher"] = summary["seconds"]
    # the figure: the command's heatmap beside the ground truth drawn the same way
    from PIL import Image

    from ird_tf.data.slides import detect_tissue, open_slide
    from ird_tf.evaluation.slide_report import heatmap_image

    with open_slide(slide) as s:
        tissue = detect_tissue(s, s.mpp)
    truth_rows = [{"x": x * cell, "y": y * cell, "width": cell, "height": cell, "class": classes[k],
                   f"prob_{classes[k]}": 1.0}
                  for y, line in enumerate(labels) for x, k in enumerate(line) if k >= 0]
    right = heatmap_image(tissue.thumbnail, tissue.downsample, truth_rows, classes,
                          f"ground truth ({figures['grading_truth']})")
    left = Image.open(out / "demo" / "heatmap.png").convert("RGB")
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    both.save(ROOT / "docs" / "slide_heatmap.png", optimize=True)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
