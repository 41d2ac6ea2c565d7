"""Screenshots of TensorBoard's HParams view (and the scalars) over a small study, for the README.

    python tools/tensorboard_screenshot.py                      # -> docs/tensorboard_hparams.png
    python tools/tensorboard_screenshot.py --keep runs/tb_demo  # keep the runs to look at them yourself

What it does, all on this machine:
1. trains a tiny study with the committed ``distill`` command on a small synthetic benchmark
   (128 patches of 64 px, vgg_tiny, 8 epochs): the 10x teacher and students at 2.5x and 1.25x, with
   CE + FM + AT+ and with CE + FM (``--alpha-at 0``), seed 22;
2. serves the runs with TensorBoard on 127.0.0.1 only (a free port);
3. opens the HParams dashboard in headless Chromium (``chromium`` on PATH, or ``--chromium``) and
   saves the screenshot; ``--scalars PNG`` also saves the scalars dashboard.

Finished runs are reused when ``--keep DIR`` points at the same folder again. Needs the package's
environment (TensorFlow, TensorBoard) and Chromium; nothing goes to the network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = [  # (student magnification, extra options): two magnifications x two methods
    ("2.5", []),
    ("2.5", ["--alpha-at", "0"]),
    ("1.25", []),
    ("1.25", ["--alpha-at", "0"]),
]


def tiny_config(folder: Path, epochs: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from ird_tf.config import ExperimentConfig, SyntheticConfig

    cfg = ExperimentConfig()
    cfg.data.synthetic = SyntheticConfig(patients=8, slides_per_patient=1, patches_per_slide=16,
                                         patch_size=64)
    cfg.data.image_size, cfg.data.batch_size = 64, 8
    cfg.data.cache_dir = str(folder / "cache")
    cfg.optim.epochs, cfg.optim.teacher_epochs = epochs, epochs
    cfg.run.output_dir, cfg.run.verbose, cfg.run.tensorboard_images = str(folder / "runs"), 0, 2
    return cfg.save(folder / "tiny.yaml")


def train_study(folder: Path, epochs: int) -> Path:
    config = tiny_config(folder, epochs)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}  # this checkout's code
    for res, extra in STUDY:
        cmd = [sys.executable, "-m", "ird_tf.experiments.distill", "--config", str(config), "--res", res,
               "--no-export", *extra]
        print("+", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=folder, env=env, stdout=subprocess.DEVNULL)
    return folder / "runs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"TensorBoard did not answer at {url}")


def screenshot(chromium: str, url: str, png: Path, size: str, wait_ms: int) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
               f"--screenshot={png}", url]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
    print(f"wrote {png}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "tensorboard_hparams.png")
    ap.add_argument("--scalars", type=Path, default=None, help="also save the scalars dashboard here")
    ap.add_argument("--keep", type=Path, default=None, help="train the study here and keep it")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--size", default="1920,1000", help="browser window, WIDTH,HEIGHT")
    ap.add_argument("--wait-ms", type=int, default=20000, help="page time before the screenshot")
    args = ap.parse_args(argv)
    if not args.chromium:
        ap.error("no chromium on PATH (Debian: apt-get install chromium); or pass --chromium PATH")

    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        logdir = train_study(folder, args.epochs)
        port = free_port()
        board = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
             "--port", str(port), "--load_fast", "false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}/"
            wait_for(base)
            time.sleep(5)  # first load of the event files
            screenshot(args.chromium, base + "#hparams", args.out, args.size, args.wait_ms)
            if args.scalars:
                screenshot(args.chromium, base + "#timeseries", args.scalars, args.size, args.wait_ms)
        finally:
            board.terminate()
            board.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
