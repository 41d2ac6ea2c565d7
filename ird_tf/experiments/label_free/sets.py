"""The unlabeled training sets of the label-free study: per extra ratio, the fold's training images
plus a nested prefix of an extra pool (synthetic patients of another seed, or ``pool_dir``), written
once as a folder of hard links; and the fixed step budget that gives each set its number of epochs.
Kept apart because it is the only part of the study that writes image data, and is tested on its own.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ird_tf.config import ConfigError, ExperimentConfig
from ird_tf.errors import DataError
from ird_tf.experiments.label_free.config import SECTION, LabelFreeConfig
from ird_tf.runs import data_identity, digest


@dataclass(frozen=True)
class UnlabeledSet:
    """The fold's ``n_train`` training images plus the first ``n_extra`` pool images, in ``folder``."""

    ratio: float
    n_train: int
    n_extra: int
    folder: Path

    @property
    def size(self) -> int:
        return self.n_train + self.n_extra


def budget_steps(base: ExperimentConfig, n_train: int) -> int:
    """Training steps of a labeled student: ``optim.epochs`` x ceil(n_train / batch)."""
    return base.optim.epochs * math.ceil(n_train / base.data.batch_size)


def epochs_for(n_images: int, batch_size: int, budget: int) -> int:
    """Whole epochs (>= 1) over ``n_images`` whose steps come closest to ``budget`` (halves round up)."""
    return max(1, math.floor(budget / math.ceil(n_images / batch_size) + 0.5))


def _set_identity(base: ExperimentConfig, study: LabelFreeConfig) -> dict:
    """The labelled data (the runs' own identity of it) and the extra pool."""
    return {**data_identity(base.data), "pool_seed": study.pool_seed,
            **({"pool_dir": str(Path(study.pool_dir).resolve())} if study.pool_dir else {})}


def unlabeled_sets(base: ExperimentConfig, study: LabelFreeConfig, n_train: int) -> dict[float, UnlabeledSet]:
    """Where each ratio's set lives (a name from the data, fold, pool seed and size; nothing written)."""
    out = {}
    for r in study.extra_ratios:
        n_extra = int(round(r * n_train))
        ident = {**_set_identity(base, study), "n_extra": n_extra}
        folder = Path(base.data.cache_dir) / "label_free" / f"{base.data.fold}_x{r:g}_{digest(ident)}"
        out[r] = UnlabeledSet(r, n_train, n_extra, folder)
    return out


def pool_config(base: ExperimentConfig, study: LabelFreeConfig, n_images: int):
    """The benchmark's settings with the pool seed and enough patients for ``n_images`` (the generator
    also needs a test patient and one per fold)."""
    from ird_tf.data.synthetic import patient_split

    syn = base.data.synthetic
    patients = max(1, math.ceil(n_images / (syn.slides_per_patient * syn.patches_per_slide)))
    while True:
        cfg = replace(syn, seed=study.pool_seed, patients=patients)
        try:
            patient_split(cfg)
            return cfg
        except ConfigError:
            patients += 1


def pool_images(base: ExperimentConfig, study: LabelFreeConfig, n_images: int) -> list[Path]:
    """The extra pool's images in file order: ``pool_dir``'s (sorted), or the synthetic pool's
    (patient, slide, patch), generated on first use."""
    from ird_tf.data.readers import read_unlabeled
    from ird_tf.data.synthetic import ensure_dataset

    if study.pool_dir is not None:
        images = [Path(p) for p in read_unlabeled(study.pool_dir)["path"]]
        if len(images) < n_images:
            raise DataError(f"{SECTION}.pool_dir {study.pool_dir} holds {len(images)} images; the largest "
                            f"extra ratio needs {n_images}")
        return images
    root = ensure_dataset(Path(base.data.cache_dir), pool_config(base, study, n_images))
    images = sorted((root / "images").glob("*.jpg"))
    if len(images) < n_images:
        raise DataError(f"extra pool {root} holds {len(images)} images; {n_images} needed")
    return images


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def materialise(uset: UnlabeledSet, train_paths: Sequence[str], pool: Sequence[Path], pool_seed: int) -> Path:
    """Writes ``uset.folder``: ``train/`` (the training images, same relative names) and ``extra/``
    (the first ``n_extra`` pool images, renamed ``X<pool_seed>-<name>``). A folder whose
    ``manifest.json`` lists the same files is reused; otherwise it is built aside and renamed in place."""
    if len(train_paths) != uset.n_train or len(pool) < uset.n_extra:
        raise ValueError(f"{uset.folder}: {len(train_paths)} training / {len(pool)} pool images for a set of "
                         f"{uset.n_train} + {uset.n_extra}")
    common = Path(os.path.commonpath([str(Path(p).parent) for p in train_paths]))
    entries = [(Path("train") / Path(p).relative_to(common), Path(p)) for p in train_paths]
    entries += [(Path("extra") / f"X{pool_seed}-{p.name}", p) for p in pool[: uset.n_extra]]
    files = sorted(str(dst) for dst, _ in entries)
    if len(set(files)) != len(files):
        raise ValueError(f"{uset.folder}: two images would get the same name")
    manifest = uset.folder / "manifest.json"
    try:
        same = json.loads(manifest.read_text())["files"] == files
        if same and all((uset.folder / f).is_file() for f in files):
            return uset.folder
    except (OSError, ValueError, KeyError):
        pass
    tmp = uset.folder.with_name(f"{uset.folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for dst, src in entries:
        (tmp / dst).parent.mkdir(parents=True, exist_ok=True)
        _link(src, tmp / dst)
    (tmp / "manifest.json").write_text(json.dumps(
        {"ratio": uset.ratio, "n_train": uset.n_train, "n_extra": uset.n_extra, "files": files}, indent=1))
    if uset.folder.exists():
        shutil.rmtree(uset.folder)  # an unfinished or stale set under our own name
    tmp.rename(uset.folder)
    return uset.folder


def prepare_sets(base: ExperimentConfig, study: LabelFreeConfig, splits) -> dict[float, UnlabeledSet]:
    """Every ratio's folder, written if missing (the pool is generated once, for the largest ratio)."""
    sets = unlabeled_sets(base, study, len(splits.train))
    n_pool = max(s.n_extra for s in sets.values())
    pool = pool_images(base, study, n_pool) if n_pool else []
    for s in sets.values():
        materialise(s, list(splits.train["path"]), pool, study.pool_seed)
    return sets
