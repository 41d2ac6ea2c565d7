"""Speed and memory figures, reported as ratios measured in one run (machines are noisy).

    python tools/benchmark.py data        # tf.data pipeline images/s, cached vs uncached, 512 and 128 px
    python tools/benchmark.py attention   # cost of the attention term (target/all, first/second order)
    python tools/benchmark.py train       # train-step images/s, AT+/FM ratio, peak memory of `distill`
    python tools/benchmark.py peer        # the authors' PyTorch step side by side (needs the `bench` extra)
    python tools/benchmark.py machine     # conv/matmul GFLOP/s of this CPU and each step's share of it
    python tools/benchmark.py xla         # jit_compile against none: steps, single ops, the augmentation
    python tools/benchmark.py slide       # whole slides: Student vs Teacher end to end, reading, memory
    python tools/benchmark.py native      # native Students vs the Teacher: images/s ratio against FLOPs ratio
    python tools/benchmark.py all         # every section, in this order
    python tools/benchmark.py peer machine xla   # several sections in one run

Each section lives in ``tools/benchmarks/<name>.py`` with a ``run(args) -> dict`` function; results are
printed and, with ``--out FILE.json``, written next to the exact command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SECTIONS = ("data", "attention", "train", "slide", "peer", "machine", "xla", "native")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("section", nargs="+", choices=(*SECTIONS, "all"))
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, noisy figures)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    results = {
        "command": "python tools/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": {},
    }
    start = time.time()
    names = SECTIONS if "all" in args.section else tuple(dict.fromkeys(args.section))
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name} ==", flush=True)
        t0 = time.time()
        results[name] = module.run(args)
        results["seconds"][name] = round(time.time() - t0, 1)
    results["seconds"]["total"] = round(time.time() - start, 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
