"""Readers that turn datasets on disk into tables of image paths and labels.

Three sources, one table schema, so the tf.data pipeline never cares where the images came from.

SICAPv2 layout (``read_sicap``)::

    <root>/images/<image_name>                         the patches (JPEG, 512x512 at 10x)
    <root>/masks/<stem>.png                            optional per-pixel Gleason masks
    <root>/partition/Validation/Val1..Val4/Train.xlsx  training rows of a patient-based fold
    <root>/partition/Validation/Val1..Val4/Test.xlsx   validation rows of that fold
    <root>/partition/Test/{Train,Test}.xlsx            held-out test set (Test.xlsx is read)

Each spreadsheet has a header row with ``image_name`` and the one-hot columns ``NC, G3, G4, G5``
(exactly one 1 per row); a ``G4C`` (cribriform) column may be present and is kept as a flag only.

Class folders (``read_class_folders``): ``<root>/<class>/*.{png,jpg,jpeg,tif,tiff}``, optionally under
``<root>/train``, ``<root>/val`` and ``<root>/test``; without those, a seeded stratified split.

Unlabeled images (``read_unlabeled``): every image file under a folder, recursively.

Table schema (a ``pandas.DataFrame`` with a fresh ``RangeIndex``):

- ``path``: absolute path of the image (str);
- ``label``: int index into ``Splits.class_names``;
- ``class_name``: the class name (str);
- ``slide``: slide id, the file stem's prefix before the first ``_`` (the whole stem if it has none).
  SICAPv2 names start with the slide id, so patches of one slide share it; name folder images the same
  way (``<slide>_<anything>.png``) for slide-level grouping to mean something;
- ``mask``: absolute path of ``<root>/masks/<stem>.png`` if that file exists, else None;
- ``cribriform`` (bool): SICAPv2 only, and only when the spreadsheet has a ``G4C`` column.

``read_unlabeled`` returns the ``path`` column only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from ird_tf.config import ConfigError
from ird_tf.errors import DataError

logger = logging.getLogger(__name__)

SICAP_CLASSES: tuple[str, ...] = ("NC", "G3", "G4", "G5")
SICAP_FOLDS: tuple[str, ...] = ("Val1", "Val2", "Val3", "Val4")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SPLIT_FOLDERS: tuple[str, ...] = ("train", "val", "test")
MASKS_FOLDER = "masks"
COLUMNS: tuple[str, ...] = ("path", "label", "class_name", "slide", "mask")
_SHOW = 5  # how many names/rows an error message lists before "..."


@dataclass(frozen=True)
class Splits:
    """Train / validation / test tables and the class order their ``label`` column indexes."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    class_names: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- helpers


def _first(items: Sequence, n: int = _SHOW) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _existing_dir(path: str | Path, what: str) -> Path:
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"{what} {root} does not exist or is not a folder")
    return root


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def slide_id(name: str) -> str:
    """Slide id of an image file name: the stem's prefix before the first ``_``."""
    return PurePosixPath(name).stem.split("_", 1)[0]


def _mask_for(masks_dir: Path, image: Path) -> str | None:
    mask = masks_dir / f"{image.stem}.png"
    return str(mask) if mask.is_file() else None


def _table(paths: Sequence[Path], labels: Sequence[int], class_names: Sequence[str], masks_dir: Path,
           **extra: Iterable) -> pd.DataFrame:
    table = pd.DataFrame({
        "path": [str(p) for p in paths],
        "label": np.asarray(labels, dtype=np.int64),
        "class_name": [class_names[i] for i in labels],
        "slide": [slide_id(p.name) for p in paths],
        "mask": pd.Series([_mask_for(masks_dir, p) for p in paths], dtype=object),
    })
    for name, values in extra.items():
        table[name] = list(values)
    return table.reset_index(drop=True)


def _check_not_empty(table: pd.DataFrame, split: str, source: Path, why: str = "") -> None:
    if table.empty:
        raise DataError(f"split {split!r} is empty: {source} {why or 'lists no images'}")


# ---------------------------------------------------------------------------------------------- SICAPv2


def _unsafe_name(name: str) -> bool:
    """True if ``name`` is absolute or climbs out of ``images/`` (checked with both path flavours)."""
    win = PureWindowsPath(name)
    return (
        name.strip() in ("", ".")
        or PurePosixPath(name).is_absolute()
        or win.is_absolute()
        or bool(win.drive or win.root)
        or ".." in win.parts
    )


def _excel_rows(index: Iterable[int]) -> list[int]:
    """Row numbers as a spreadsheet program shows them: the header is row 1."""
    return [int(i) + 2 for i in index]


def _read_partition(xlsx: Path, split: str, images_dir: Path, masks_dir: Path,
                    skip_missing: bool) -> pd.DataFrame:
    if not xlsx.is_file():
        raise DataError(f"partition file for split {split!r} not found: expected {xlsx}")
    try:
        sheet = pd.read_excel(xlsx, engine="openpyxl")
    except Exception as e:  # openpyxl raises several unrelated types for broken files
        raise DataError(f"cannot read spreadsheet {xlsx}: {e}") from e
    sheet.columns = [str(c).strip() for c in sheet.columns]
    expected = ["image_name", *SICAP_CLASSES]
    missing = [c for c in expected if c not in sheet.columns]
    if missing:
        raise DataError(
            f"{xlsx}: missing column(s) {missing}; expected columns {expected} (optionally G4C), "
            f"found {list(sheet.columns)}"
        )
    sheet = sheet.dropna(how="all")  # blank rows left by spreadsheet editors

    onehot = sheet[list(SICAP_CLASSES)].apply(pd.to_numeric, errors="coerce")
    valid = onehot.isin([0, 1]).all(axis=1) & (onehot.sum(axis=1) == 1)
    if not valid.all():
        bad = sheet.index[~valid]
        raise DataError(
            f"{xlsx}: row(s) {_first(_excel_rows(bad))} need exactly one 1 among {list(SICAP_CLASSES)} "
            "(the others 0); found zero, several or non-0/1 values"
        )

    names = sheet["image_name"]
    blank = names.isna()
    if blank.any():
        raise DataError(f"{xlsx}: row(s) {_first(_excel_rows(sheet.index[blank]))} have no image_name")
    names = names.astype(str).str.strip()
    unsafe = names.map(_unsafe_name)
    if unsafe.any():
        rows = [f"{r} ({n!r})" for r, n in zip(_excel_rows(names.index[unsafe]), names[unsafe], strict=True)]
        raise DataError(
            f"{xlsx}: image_name must be a relative path inside {images_dir} (not absolute, no '..'); "
            f"rejected row(s) {_first(rows)}"
        )

    paths = [images_dir / n for n in names]
    present = np.array([p.is_file() for p in paths], dtype=bool)
    absent = list(names[~present])
    if absent:
        if not skip_missing:
            raise DataError(
                f"{xlsx}: {len(absent)} listed image(s) not found in {images_dir}: {_first(absent)} "
                "(pass skip_missing=True to leave them out)"
            )
        logger.warning("%s: skipped %d listed image(s) not found in %s: %s",
                       xlsx, len(absent), images_dir, _first(absent))

    labels = onehot.to_numpy().argmax(axis=1)[present]
    extra = {}
    if "G4C" in sheet.columns:
        g4c = pd.to_numeric(sheet["G4C"], errors="coerce").fillna(0).to_numpy() != 0
        extra["cribriform"] = g4c[present]
    kept = [p for p, ok in zip(paths, present, strict=True) if ok]
    table = _table(kept, labels.tolist(), SICAP_CLASSES, masks_dir, **extra)
    why = f"has no images left after skipping {len(absent)} missing" if absent else "lists no images"
    _check_not_empty(table, split, xlsx, why)
    return table


def read_sicap(root: str | Path, fold: str = "Val1", *, skip_missing: bool = False) -> Splits:
    """Read one SICAPv2 fold: train = ``Val<k>/Train.xlsx``, val = ``Val<k>/Test.xlsx``,
    test = ``partition/Test/Test.xlsx``.

    ``skip_missing`` leaves out listed images that are not on disk (logged with a count) instead of
    raising; use it for partial copies of the dataset, never silently on the full one.
    """
    if fold not in SICAP_FOLDS:
        raise DataError(f"SICAPv2 fold={fold!r} is not accepted; expected one of {list(SICAP_FOLDS)}")
    root = _existing_dir(root, "SICAPv2 root")
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DataError(f"SICAPv2 images folder not found: expected {images_dir}")
    masks_dir = root / MASKS_FOLDER
    partition = root / "partition"
    files = {
        "train": partition / "Validation" / fold / "Train.xlsx",
        "val": partition / "Validation" / fold / "Test.xlsx",
        "test": partition / "Test" / "Test.xlsx",
    }
    tables = {s: _read_partition(f, s, images_dir, masks_dir, skip_missing) for s, f in files.items()}
    return Splits(**tables, class_names=SICAP_CLASSES)


# ---------------------------------------------------------------------------------------------- folders


def _class_dirs(folder: Path) -> dict[str, Path]:
    """Class sub-folders of ``folder`` (hidden folders and the reserved ``masks/`` excluded)."""
    return {
        d.name: d for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".") and d.name != MASKS_FOLDER
    }


def _check_classes(found: Iterable[str], class_names: Sequence[str], folder: Path) -> None:
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise DataError(
            f"{folder}: unknown class folder(s) {unknown}; expected classes {list(class_names)}"
        )


def _list_images(dirs: dict[str, Path], class_names: Sequence[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        if name in dirs:
            files = sorted(p for p in dirs[name].iterdir() if _is_image(p))
            paths += files
            labels += [label] * len(files)
    return paths, labels


def _stratified(labels: list[int], names: Sequence[str], val_fraction: float, test_fraction: float,
                seed: int, root: Path) -> dict[str, list[int]]:
    """Seeded stratified train/val/test split of row indices (test first, then val from the rest)."""
    from sklearn.model_selection import train_test_split  # seconds to import; only folder data needs it

    idx = np.arange(len(labels))
    try:
        rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                      stratify=np.asarray(labels))
        train, val = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction),
                                      random_state=seed, stratify=np.asarray(labels)[rest])
    except ValueError as e:
        counts = {name: labels.count(i) for i, name in enumerate(names)}
        raise DataError(
            f"{root}: cannot make a stratified split with val_fraction={val_fraction}, "
            f"test_fraction={test_fraction} from {len(labels)} images (per class: {counts}): {e} "
            "Add images, change the fractions, or provide train/ val/ test/ folders"
        ) from e
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def read_class_folders(root: str | Path, class_names: Sequence[str] | None = None, *,
                       val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0) -> Splits:
    """Read ``root/<class>/*.<image ext>``, or ``root/{train,val,test}/<class>/...`` when ``root/train``
    exists (then ``val/`` and ``test/`` are required and the fractions are unused).

    Class order is ``class_names`` if given (any other folder is an error) else the sorted names of the
    class folders (of ``train/`` when split folders are used). A top-level ``masks/`` folder is reserved
    for ``<stem>.png`` masks. Without split folders the split is stratified and deterministic in ``seed``.
    """
    root = _existing_dir(root, "class-folder root")
    masks_dir = root / MASKS_FOLDER
    split_mode = (root / "train").is_dir()
    if split_mode:
        for split in SPLIT_FOLDERS:
            if not (root / split).is_dir():
                raise DataError(f"{root} has a train/ folder, so {root / split} is required but missing")
        folders = {s: _class_dirs(root / s) for s in SPLIT_FOLDERS}
    else:
        partial = [s for s in SPLIT_FOLDERS[1:] if (root / s).is_dir()]
        if partial:
            raise DataError(
                f"{root} has {'/ and '.join(partial)}/ but no train/ folder: expected all of "
                f"{list(SPLIT_FOLDERS)} (or none, for a random split)"
            )
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ConfigError(
                f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}: expected each in (0, 1) "
                "and their sum < 1"
            )
        folders = {"all": _class_dirs(root)}

    if class_names is None:
        names = tuple(folders["train" if split_mode else "all"])
        if not names:
            raise DataError(f"{root}: no class folders found; expected <class>/ sub-folders with images")
    else:
        names = tuple(class_names)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"class_names={class_names!r}: expected distinct names, at least one")
    for split, dirs in folders.items():
        _check_classes(dirs, names, root / split if split_mode else root)

    if split_mode:
        tables = {}
        for split in SPLIT_FOLDERS:
            paths, labels = _list_images(folders[split], names)
            tables[split] = _table(paths, labels, names, masks_dir)
            _check_not_empty(tables[split], split, root / split,
                             f"has no {'/'.join(IMAGE_EXTENSIONS)} images in class folders {list(names)}")
        return Splits(**tables, class_names=names)

    paths, labels = _list_images(folders["all"], names)
    if not paths:
        raise DataError(
            f"{root}: no {'/'.join(IMAGE_EXTENSIONS)} images in class folders {list(names)}; "
            "every split would be empty"
        )
    parts = _stratified(labels, names, val_fraction, test_fraction, seed, root)
    tables = {
        split: _table([paths[i] for i in rows], [labels[i] for i in rows], names, masks_dir)
        for split, rows in parts.items()
    }
    for split, table in tables.items():
        _check_not_empty(table, split, root, "gives no images for it; add images or raise its fraction")
    return Splits(**tables, class_names=names)


# ---------------------------------------------------------------------------------------------- unlabeled


def read_unlabeled(root: str | Path) -> pd.DataFrame:
    """All image files under ``root`` (recursive, hidden files/folders skipped, sorted): column ``path``."""
    root = _existing_dir(root, "unlabeled image folder")
    paths = sorted(
        p for p in root.rglob("*")
        if _is_image(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not paths:
        raise DataError(f"{root}: no images found (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
    return pd.DataFrame({"path": [str(p) for p in paths]})


__all__ = [
    "IMAGE_EXTENSIONS", "SICAP_CLASSES", "SICAP_FOLDS", "Splits", "read_class_folders", "read_sicap",
    "read_unlabeled", "slide_id",
]
