"""The dataset on disk: file names, per-slide labels, the patient-disjoint split, writing the
SICAPv2 layout (images, masks, partition tables, ``dataset.json`` last), reusing a complete dataset
from the cache, the unlabeled pool for label-free distillation, and a preview PNG of the patches."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from ird_tf import faults
from ird_tf.config import ConfigError, SyntheticConfig
from ird_tf.data.synthetic.parallel import run_jobs
from ird_tf.data.synthetic.render import (
    CLASSES,
    GENERATOR_REVISION,
    MASK_VALUES,
    block_mean,
    check_config,
    render_patch,
)
from ird_tf.data.synthetic.seeds import (
    TAG_LABELS,
    TAG_PREVIEW,
    TAG_SPLIT,
    TAG_UNLABELED,
    TAG_UNLABELED_SLIDE,
    patch_rng,
    seq,
    slide_style,
)
from ird_tf.data.synthetic.stain import random_style
from ird_tf.files import process_alive, write_figure, write_text

TEST_FRACTION = 0.25
JPEG_QUALITY = 90
_NAME = re.compile(r"^P\d{3,}-S\d{2,}_\d{4,}\.(jpg|png)$")


def _plain(cfg: SyntheticConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def config_hash(cfg: SyntheticConfig) -> str:
    """Short hash of the settings and the drawing revision: the cache key of a dataset."""
    text = json.dumps({"config": _plain(cfg), "revision": GENERATOR_REVISION}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def dataset_root(cache_dir: str | Path, cfg: SyntheticConfig) -> Path:
    """Where the dataset of ``cfg`` lives: its name carries the version, the settings and the drawing
    revision, so it also identifies the data (run identities are keyed on it)."""
    return Path(cache_dir) / f"synthetic_{cfg.version}_{config_hash(cfg)}"


def image_name(patient: int, slide: int, index: int) -> str:
    """``P003-S01_0007``: the slide id (``P003-S01``) is the prefix before the first "_", as in SICAPv2."""
    return f"P{patient:03d}-S{slide:02d}_{index:04d}"


def slide_labels(cfg: SyntheticConfig, patient: int, slide: int) -> np.ndarray:
    """Labels of a slide's patches: exact quotas from ``class_balance`` (largest remainder, ties
    rotated from slide to slide so that the whole set stays balanced), in a seeded random order."""
    w = np.asarray(cfg.class_balance, np.float64)
    raw = w / w.sum() * cfg.patches_per_slide
    counts = np.floor(raw + 1e-9).astype(int)
    turn = (patient * cfg.slides_per_patient + slide) % len(CLASSES)
    order = sorted(range(len(CLASSES)), key=lambda c: (-(raw[c] - counts[c]), (c - turn) % len(CLASSES)))
    counts[order[: cfg.patches_per_slide - counts.sum()]] += 1
    labels = np.repeat(np.arange(len(CLASSES)), counts)
    np.random.default_rng(seq([cfg.seed, patient, slide], TAG_LABELS)).shuffle(labels)
    return labels


def patient_split(cfg: SyntheticConfig) -> tuple[list[int], list[list[int]]]:
    """Patient ids (1-based) of the held-out test set (~25 %) and of the ``folds`` validation groups."""
    n_test = max(1, int(np.floor(TEST_FRACTION * cfg.patients + 0.5)))
    if cfg.patients - n_test < cfg.folds:
        raise ConfigError(
            f"synthetic.patients={cfg.patients} is too few: {n_test} go to the test set and each of the "
            f"{cfg.folds} folds needs at least one; expected patients >= {cfg.folds + n_test}"
        )
    perm = np.random.default_rng(seq([cfg.seed], TAG_SPLIT)).permutation(np.arange(1, cfg.patients + 1))
    test = sorted(int(p) for p in perm[:n_test])
    return test, [sorted(int(p) for p in g) for g in np.array_split(perm[n_test:], cfg.folds)]


def _save(root: Path, name: str, image: np.ndarray, mask: np.ndarray | None) -> None:
    Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=JPEG_QUALITY)
    if mask is not None:
        Image.fromarray(mask).save(root / "masks" / f"{name}.png", compress_level=1)


def _write_slide(cfg: SyntheticConfig, root: Path, patient: int, slide: int) -> list[tuple[str, int]]:
    style = slide_style(cfg, patient, slide)
    rows = []
    for index, label in enumerate(slide_labels(cfg, patient, slide)):
        name = image_name(patient, slide, index)
        _save(root, name, *render_patch(patch_rng(cfg, patient, slide, index), int(label), cfg, style=style))
        rows.append((f"{name}.jpg", int(label)))
    return rows


def _write_unlabeled(cfg: SyntheticConfig, root: Path, seed: int, slide: int, first: int, last: int) -> list:
    style = random_style(np.random.default_rng(seq([seed, slide], TAG_UNLABELED_SLIDE)))
    p = np.asarray(cfg.class_balance, np.float64)
    for k in range(first, last):
        rng = np.random.default_rng(seq([seed, k], TAG_UNLABELED))
        image, _ = render_patch(rng, int(rng.choice(len(CLASSES), p=p / p.sum())), cfg, style=style)
        _save(root, f"U{slide:04d}_{k:06d}", image, None)
    return [None] * (last - first)


def _write_table(path: Path, rows: list[tuple[str, int]]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"image_name": [r[0] for r in rows]})
    for c, name in enumerate(CLASSES):
        table[name] = [int(r[1] == c) for r in rows]
    table.to_excel(path, index=False)


def generate(out_dir: str | Path, cfg: SyntheticConfig, *, workers: int | None = None,
             progress: bool = True) -> Path:
    """Writes the dataset in the SICAPv2 layout under ``out_dir`` and returns it. ``dataset.json`` is
    removed first and written last, so an interrupted run never looks complete."""
    check_config(cfg)
    test, groups = patient_split(cfg)
    root = Path(out_dir)
    (root / "dataset.json").unlink(missing_ok=True)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    slides = range(1, cfg.slides_per_patient + 1)
    jobs = [(cfg, root, p, s) for p in range(1, cfg.patients + 1) for s in slides]
    total = len(jobs) * cfg.patches_per_slide
    if progress:
        print(f"synthetic: writing {total} patches to {root}", flush=True)
    per_slide = run_jobs(jobs, _write_slide, workers, progress, total)
    rows = {job[2]: [] for job in jobs}
    for job, slide_rows in zip(jobs, per_slide, strict=True):
        rows[job[2]].extend(slide_rows)
    names = {r[0][:-4] for p in rows.values() for r in p}
    for sub, ext in (("images", ".jpg"), ("masks", ".png")):  # leftovers of an earlier, larger run
        for f in (root / sub).iterdir():
            if _NAME.match(f.name) and f.suffix == ext and f.stem not in names:
                f.unlink()

    def of(patients: list[int]) -> list[tuple[str, int]]:
        return [r for p in patients for r in rows[p]]

    rest = [p for g in groups for p in g]
    _write_table(root / "partition" / "Test" / "Test.xlsx", of(test))
    _write_table(root / "partition" / "Test" / "Train.xlsx", of(rest))
    for k, group in enumerate(groups, start=1):
        _write_table(root / "partition" / "Validation" / f"Val{k}" / "Test.xlsx", of(group))
        _write_table(root / "partition" / "Validation" / f"Val{k}" / "Train.xlsx",
                     of([p for p in rest if p not in group]))
    labels = np.array([r[1] for p in rows.values() for r in p])
    meta = {
        "name": "ird_tf synthetic H&E prostate benchmark",
        "version": cfg.version,
        "generator_revision": GENERATOR_REVISION,
        "hash": config_hash(cfg),
        "config": _plain(cfg),
        "classes": list(CLASSES),
        "mask_values": dict(zip(CLASSES, MASK_VALUES, strict=True)),
        "um_per_px": 10.0 / cfg.magnification,
        "counts": {"images": int(labels.size), "patients": cfg.patients, "slides": len(jobs),
                   "per_class": {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}},
        "partition": {"test_patients": test, **{f"Val{k}": g for k, g in enumerate(groups, start=1)}},
    }
    write_text(root / "dataset.json", json.dumps(meta, indent=2))
    if progress:
        print(f"synthetic: done, {labels.size} patches in {root}", flush=True)
    return root


def is_complete(root: str | Path, cfg: SyntheticConfig) -> bool:
    """True when ``root`` holds a finished dataset made from exactly ``cfg`` by this revision."""
    root = Path(root)
    try:
        meta = json.loads((root / "dataset.json").read_text())
        same = meta["config"] == _plain(cfg) and meta["generator_revision"] == GENERATOR_REVISION
        images = int(meta["counts"]["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (same and (root / "partition" / "Test" / "Test.xlsx").is_file()
            and sum(1 for _ in (root / "images").glob("*.jpg")) == images)


def ensure_dataset(cache_dir: str | Path, cfg: SyntheticConfig, *, workers: int | None = None,
                   progress: bool = True) -> Path:
    """The dataset for ``cfg`` under ``<cache_dir>/synthetic_<version>_<hash>``: reused when complete
    and made from the same settings, else generated (in a temporary folder, then renamed into place)."""
    check_config(cfg)
    root = dataset_root(cache_dir, cfg)
    if is_complete(root, cfg):
        print(f"synthetic: reusing {root}", flush=True)
        return root
    print(f"synthetic: generating {root}", flush=True)
    _remove_abandoned(root)
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, cfg, workers=workers, progress=progress)
    faults.point("dataset")
    if root.exists() and not is_complete(root, cfg):
        shutil.rmtree(root)  # an unfinished or stale dataset under our own cache key
    try:
        tmp.rename(root)
    except OSError:  # another process finished the same dataset first
        if not is_complete(root, cfg):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _remove_abandoned(root: Path) -> None:
    """Removes the temporary folders of generations whose process is gone (killed before the rename)."""
    if not root.parent.is_dir():
        return
    for tmp in root.parent.glob(f"{root.name}.tmp*"):
        pid = tmp.name[len(root.name) + 4:]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def generate_unlabeled(out_dir: str | Path, cfg: SyntheticConfig, count: int, seed: int, *,
                       workers: int | None = None, progress: bool = True) -> Path:
    """``count`` images (no labels, no masks) in ``out_dir/images/`` for label-free distillation,
    drawn from seed streams apart from the labeled set's (even with the same seed)."""
    check_config(cfg)
    if count < 1:
        raise ConfigError(f"count={count!r}: expected a number of unlabeled images >= 1")
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    size = cfg.patches_per_slide
    jobs = [(cfg, root, seed, k // size, k, min(k + size, count)) for k in range(0, count, size)]
    run_jobs(jobs, _write_unlabeled, workers, progress, count)
    return root


def preview(path_png: str | Path, cfg: SyntheticConfig, per_class: int = 2) -> Path:
    """A PNG grid: ``per_class`` patches of each class (rows) at the configured magnification, at 1/4
    and 1/8 of it (block mean, shown with nearest upsampling), and the mask."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    check_config(cfg)
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    factors = (1, 4, 8)
    titles = [f"{cfg.magnification / f:g}x ({10 * f / cfg.magnification:g} µm/px)" for f in factors]
    titles.append("mask")
    rows = len(CLASSES) * per_class
    fig = Figure(figsize=(2.0 * len(titles), 2.0 * rows + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(rows, len(titles), squeeze=False))
    cmap = ListedColormap(["#f4f4f4", "#f4f4f4", "#f4f4f4", "#2c7fb8", "#fdae61", "#d7191c"])
    for c, name in enumerate(CLASSES):
        for j in range(per_class):
            rng = np.random.default_rng(seq([cfg.seed, c, j], TAG_PREVIEW))
            image, mask = render_patch(rng, c, cfg)
            row = c * per_class + j
            for col, f in enumerate(factors):
                low = block_mean(image, f)
                axes[row, col].imshow(np.repeat(np.repeat(low, f, 0), f, 1).astype(np.uint8),
                                      interpolation="nearest")
            axes[row, 3].imshow(mask, cmap=cmap, vmin=0, vmax=5, interpolation="nearest")
            axes[row, 0].set_ylabel(f"{name} ({mask.astype(bool).mean():.0%})" if c else name, fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for col, t in enumerate(titles):
        axes[0, col].set_title(t, fontsize=9)
    fig.suptitle(f"Synthetic H&E benchmark {cfg.version}: {cfg.patch_size} px at {cfg.magnification:g}x, "
                 f"difficulty {cfg.difficulty:g} (mask: 0 benign, G3 blue, G4 orange, G5 red)", fontsize=9)
    write_figure(path, fig, dpi=110)
    return path
