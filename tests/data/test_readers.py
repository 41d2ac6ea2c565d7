"""Readers on small SICAPv2-layout and class-folder trees written to tmp_path (no TensorFlow)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ird_tf.config import ConfigError
from ird_tf.data.readers import (
    SICAP_CLASSES,
    Splits,
    read_class_folders,
    read_sicap,
    read_unlabeled,
)
from ird_tf.errors import DataError

COLUMNS = ["path", "label", "class_name", "slide", "mask"]


# ---------------------------------------------------------------------------------------------- builders


def write_image(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG")
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, format=fmt)
    return path


def write_sheet(path: Path, rows: list[tuple[str, int]], *, g4c: list[int] | None = None,
                drop: tuple[str, ...] = ()) -> Path:
    """One-hot spreadsheet like SICAPv2's: image_name, NC, G3, G4, G5 (+ G4C)."""
    data = {"image_name": [n for n, _ in rows]}
    for k, c in enumerate(SICAP_CLASSES):
        data[c] = [int(label == k) for _, label in rows]
    if g4c is not None:
        data["G4C"] = g4c
    frame = pd.DataFrame(data).drop(columns=list(drop))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_excel(path, index=False)
    return path


def sicap_rows(prefix: str, n: int = 4) -> list[tuple[str, int]]:
    """n rows cycling through the 4 classes; two slides per file (`<prefix>a`, `<prefix>b`)."""
    return [(f"{prefix}{'ab'[i % 2]}_Block_Region_{i}.jpg", i % 4) for i in range(n)]


def build_sicap(root: Path) -> dict[str, list[tuple[str, int]]]:
    """SICAPv2 tree with distinct images per fold file; returns the rows of every partition file."""
    files = {f"Validation/Val{k}/{s}": sicap_rows(f"V{k}{s[:2]}")
             for k in range(1, 5) for s in ("Train", "Test")}
    files["Test/Train"] = sicap_rows("TeTr")
    files["Test/Test"] = sicap_rows("TeTe", 5)
    for rel, rows in files.items():
        write_sheet(root / "partition" / f"{rel}.xlsx", rows)
        for name, _ in rows:
            write_image(root / "images" / name)
    return files


@pytest.fixture(scope="module")
def sicap_template(tmp_path_factory) -> tuple[Path, dict[str, list[tuple[str, int]]]]:
    root = tmp_path_factory.mktemp("template") / "SICAPv2"
    return root, build_sicap(root)


@pytest.fixture()
def sicap(sicap_template, tmp_path: Path) -> tuple[Path, dict[str, list[tuple[str, int]]]]:
    """A private copy of the SICAPv2 tree (tests edit it); copying is faster than writing xlsx again."""
    template, files = sicap_template
    root = tmp_path / "SICAPv2"
    shutil.copytree(template, root)
    return root, files


def build_folders(root: Path, counts: dict[str, int], ext: str = ".png") -> None:
    for cls, n in counts.items():
        for i in range(n):
            write_image(root / cls / f"slide{i % 3}_{cls}_{i}{ext}")


# ---------------------------------------------------------------------------------------------- SICAPv2


def test_sicap_happy_path_labels_slides_paths(sicap):
    root, files = sicap
    splits = read_sicap(root)
    assert isinstance(splits, Splits)
    assert splits.class_names == SICAP_CLASSES
    expected = {"train": files["Validation/Val1/Train"], "val": files["Validation/Val1/Test"],
                "test": files["Test/Test"]}
    for split, rows in expected.items():
        table = getattr(splits, split)
        assert list(table.columns) == COLUMNS
        assert isinstance(table.index, pd.RangeIndex) and table.index[0] == 0
        assert [Path(p).name for p in table["path"]] == [n for n, _ in rows]
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in table["path"])
        assert table["label"].tolist() == [lab for _, lab in rows]
        assert table["label"].dtype == np.int64
        assert table["class_name"].tolist() == [SICAP_CLASSES[lab] for _, lab in rows]
        assert table["slide"].tolist() == [n.split("_")[0] for n, _ in rows]
        assert table["mask"].isna().all()
    assert splits.train["slide"].tolist() == ["V1Tra", "V1Trb", "V1Tra", "V1Trb"]


def test_sicap_real_style_name_gives_slide_prefix(tmp_path):
    root = tmp_path / "s"
    name = "16B0001851_Block_Region_1_0_0_xini_6803_yini_59786.jpg"
    for rel in ("Validation/Val1/Train", "Validation/Val1/Test", "Test/Test"):
        write_sheet(root / "partition" / f"{rel}.xlsx", [(name, 2)])
    write_image(root / "images" / name)
    splits = read_sicap(root)
    assert splits.train["slide"].tolist() == ["16B0001851"]
    assert splits.test["class_name"].tolist() == ["G4"]


def test_sicap_mask_column_set_when_mask_exists(sicap):
    root, files = sicap
    name = files["Validation/Val1/Train"][2][0]
    mask = write_image(root / "masks" / (Path(name).stem + ".png"), 3)
    train = read_sicap(root).train
    assert train.loc[2, "mask"] == str(mask.absolute())
    assert train["mask"].drop(index=2).isna().all()
    assert train.loc[0, "mask"] is None


@pytest.mark.parametrize("fold", ["Val1", "Val2", "Val3", "Val4"])
def test_sicap_fold_selection_picks_the_right_files(sicap, fold):
    root, files = sicap
    splits = read_sicap(root, fold)
    names = {s: [Path(p).name for p in getattr(splits, s)["path"]] for s in ("train", "val", "test")}
    assert names["train"] == [n for n, _ in files[f"Validation/{fold}/Train"]]
    assert names["val"] == [n for n, _ in files[f"Validation/{fold}/Test"]]
    assert names["test"] == [n for n, _ in files["Test/Test"]]  # same held-out test for every fold


@pytest.mark.parametrize("fold", ["Val5", "val1", "Test", ""])
def test_sicap_bad_fold_names_accepted_values(sicap, fold):
    root, _ = sicap
    with pytest.raises(DataError, match=r"Val1', 'Val2', 'Val3', 'Val4"):
        read_sicap(root, fold)


def test_sicap_g4c_column_tolerated_and_kept_as_cribriform(sicap):
    root, _ = sicap
    rows = [("V1Tra_0.jpg", 2), ("V1Tra_1.jpg", 2), ("V1Tra_2.jpg", 0)]
    for n, _ in rows:
        write_image(root / "images" / n)
    write_sheet(root / "partition/Validation/Val1/Train.xlsx", rows, g4c=[1, 0, 0])
    splits = read_sicap(root)
    assert splits.train["label"].tolist() == [2, 2, 0]
    assert splits.train["cribriform"].dtype == bool
    assert splits.train["cribriform"].tolist() == [True, False, False]
    assert "cribriform" not in splits.val.columns


def test_sicap_missing_root_names_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere") as e:
        read_sicap(missing)
    assert str(missing) in str(e.value)


def test_sicap_missing_images_folder_names_path(tmp_path):
    (tmp_path / "partition").mkdir()
    with pytest.raises(DataError) as e:
        read_sicap(tmp_path)
    assert str(tmp_path / "images") in str(e.value)


@pytest.mark.parametrize(("fold", "rel"), [
    ("Val2", "Validation/Val2/Train.xlsx"),
    ("Val3", "Validation/Val3/Test.xlsx"),
    ("Val1", "Test/Test.xlsx"),
])
def test_sicap_missing_partition_file_names_expected_path(sicap, fold, rel):
    root, _ = sicap
    target = root / "partition" / rel
    target.unlink()
    with pytest.raises(DataError) as e:
        read_sicap(root, fold)
    assert str(target) in str(e.value)
    assert "expected" in str(e.value)


def test_sicap_absent_images_error_with_count_and_first_names(sicap):
    root, _ = sicap
    rows = sicap_rows("Miss", 12)
    write_sheet(root / "partition/Validation/Val1/Train.xlsx", rows)
    for n, _ in rows[:3]:
        write_image(root / "images" / n)
    with pytest.raises(DataError) as e:
        read_sicap(root)
    msg = str(e.value)
    assert "9 listed image(s) not found" in msg
    assert "Train.xlsx" in msg
    assert rows[3][0] in msg and rows[4][0] in msg  # the first absent names
    assert rows[11][0] not in msg  # only the first few are listed


def test_sicap_skip_missing_skips_and_logs_count(sicap, caplog):
    root, _ = sicap
    rows = sicap_rows("Miss", 6)
    write_sheet(root / "partition/Validation/Val1/Train.xlsx", rows)
    for n, _ in rows[::2]:
        write_image(root / "images" / n)
    with caplog.at_level(logging.WARNING, logger="ird_tf.data.readers"):
        splits = read_sicap(root, skip_missing=True)
    assert [Path(p).name for p in splits.train["path"]] == [n for n, _ in rows[::2]]
    assert splits.train["label"].tolist() == [lab for _, lab in rows[::2]]
    assert list(splits.train.index) == [0, 1, 2]
    logged = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(logged) == 1 and "skipped 3 listed image(s)" in logged[0] and "Train.xlsx" in logged[0]


def test_sicap_skip_missing_everything_is_empty_split(sicap):
    root, _ = sicap
    write_sheet(root / "partition/Validation/Val1/Test.xlsx", sicap_rows("Gone", 3))
    with pytest.raises(DataError, match=r"split 'val' is empty.*Test\.xlsx.*skipping 3 missing"):
        read_sicap(root, skip_missing=True)


@pytest.mark.parametrize(("onehot", "bad_rows"), [
    ([[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], "3, 5"),  # zero labels
    ([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], "2, 4"),  # several labels
    ([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "3"),  # not 0/1
])
def test_sicap_bad_onehot_rows_report_excel_row_numbers(sicap, onehot, bad_rows):
    root, _ = sicap
    names = [f"X_{i}.jpg" for i in range(4)]
    for n in names:
        write_image(root / "images" / n)
    frame = pd.DataFrame(onehot, columns=list(SICAP_CLASSES))
    frame.insert(0, "image_name", names)
    frame.to_excel(root / "partition/Validation/Val1/Train.xlsx", index=False)
    with pytest.raises(DataError) as e:
        read_sicap(root)
    msg = str(e.value)
    assert f"row(s) {bad_rows} need exactly one" in msg
    assert str(root / "partition/Validation/Val1/Train.xlsx") in msg


def test_sicap_blank_rows_ignored_but_row_numbers_kept(sicap):
    root, _ = sicap
    frame = pd.DataFrame({"image_name": ["V1Tra_Block_Region_0.jpg", None, "Y_1.jpg"],
                          "NC": [1, None, 0], "G3": [0, None, 0], "G4": [0, None, 0], "G5": [0, None, 0]})
    frame.to_excel(root / "partition/Validation/Val1/Train.xlsx", index=False)
    with pytest.raises(DataError, match=r"row\(s\) 4 need exactly one"):
        read_sicap(root)


@pytest.mark.parametrize("name", ["/etc/x.jpg", "../x.jpg", "sub/../../x.jpg", "..\\x.jpg", "C:\\img\\x.jpg",
                                  "\\\\server\\share\\x.jpg"])
def test_sicap_rejects_absolute_or_climbing_names(sicap, name):
    root, _ = sicap
    write_image(root / "x.jpg")  # the file a climbing name would reach
    write_sheet(root / "partition/Validation/Val1/Train.xlsx", [("V1Tra_Block_Region_0.jpg", 0), (name, 1)])
    with pytest.raises(DataError, match=r"not absolute, no '\.\.'") as e:
        read_sicap(root)
    assert "row(s) 3" in str(e.value) and "Train.xlsx" in str(e.value)


def test_sicap_accepts_names_in_subfolders_of_images(sicap):
    root, _ = sicap
    write_image(root / "images/sub/V1x_0.jpg")
    write_sheet(root / "partition/Validation/Val1/Train.xlsx", [("sub/V1x_0.jpg", 3)])
    train = read_sicap(root).train
    assert train["path"].tolist() == [str((root / "images/sub/V1x_0.jpg").absolute())]
    assert train["slide"].tolist() == ["V1x"]


@pytest.mark.parametrize("drop", [("G5",), ("image_name",), ("NC", "G4")])
def test_sicap_missing_columns_named_with_file(sicap, drop):
    root, _ = sicap
    path = write_sheet(root / "partition/Validation/Val1/Test.xlsx", sicap_rows("V1Te"), drop=drop)
    with pytest.raises(DataError) as e:
        read_sicap(root)
    msg = str(e.value)
    assert str(path) in msg
    assert f"missing column(s) {list(drop)}" in msg
    assert "['image_name', 'NC', 'G3', 'G4', 'G5']" in msg


def test_sicap_empty_partition_is_empty_split_error(sicap):
    root, _ = sicap
    path = write_sheet(root / "partition/Test/Test.xlsx", [])
    with pytest.raises(DataError, match="split 'test' is empty") as e:
        read_sicap(root)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------------------- class folders


def test_folders_random_split_stratified_complete_and_deterministic(tmp_path):
    build_folders(tmp_path, {"b": 20, "a": 20, "c": 20})
    splits = read_class_folders(tmp_path, seed=3)
    assert splits.class_names == ("a", "b", "c")
    tables = [splits.train, splits.val, splits.test]
    assert [len(t) for t in tables] == [42, 9, 9]
    every = [p for t in tables for p in t["path"]]
    assert len(set(every)) == 60 == len(every)  # disjoint and complete
    for t in tables:
        assert list(t.columns) == COLUMNS
        assert isinstance(t.index, pd.RangeIndex)
        assert t["path"].tolist() == sorted(t["path"])
        assert [Path(p).parent.name for p in t["path"]] == t["class_name"].tolist()
        assert t["label"].tolist() == [splits.class_names.index(c) for c in t["class_name"]]
        assert t["slide"].tolist() == [Path(p).name.split("_")[0] for p in t["path"]]
        assert t["mask"].isna().all()
    for t in (splits.val, splits.test):
        assert t["class_name"].value_counts().to_dict() == {"a": 3, "b": 3, "c": 3}
    again = read_class_folders(tmp_path, seed=3)
    for s in ("train", "val", "test"):
        pd.testing.assert_frame_equal(getattr(again, s), getattr(splits, s))
    other = read_class_folders(tmp_path, seed=4)
    assert other.test["path"].tolist() != splits.test["path"].tolist()


def test_folders_explicit_class_order(tmp_path):
    build_folders(tmp_path, {"a": 10, "b": 10, "c": 10})
    splits = read_class_folders(tmp_path, ("c", "a", "b"))
    assert splits.class_names == ("c", "a", "b")
    for t in (splits.train, splits.val, splits.test):
        assert t["label"].tolist() == [("c", "a", "b").index(Path(p).parent.name) for p in t["path"]]


def test_folders_unknown_class_folder_with_explicit_names(tmp_path):
    build_folders(tmp_path, {"a": 5, "b": 5, "zz": 5, "yy": 1})
    with pytest.raises(DataError) as e:
        read_class_folders(tmp_path, ("a", "b"))
    msg = str(e.value)
    assert "unknown class folder(s) ['yy', 'zz']" in msg and "expected classes ['a', 'b']" in msg
    assert str(tmp_path) in msg


def test_folders_extensions_case_insensitive_and_masks_folder(tmp_path):
    for i, ext in enumerate([".PNG", ".JpG", ".jpeg", ".tif", ".TIFF", ".png"]):
        write_image(tmp_path / "train" / "x" / f"s{i}_x{ext}")
    (tmp_path / "train/x/notes.txt").write_text("not an image")
    (tmp_path / "train/x/s9_x.bmp").write_bytes(b"BM")
    write_image(tmp_path / "val/x/v_0.png")
    write_image(tmp_path / "test/x/t_0.png")
    mask = write_image(tmp_path / "masks/s0_x.png")
    splits = read_class_folders(tmp_path)
    assert splits.class_names == ("x",)
    names = [Path(p).name for p in splits.train["path"]]
    assert names == ["s0_x.PNG", "s1_x.JpG", "s2_x.jpeg", "s3_x.tif", "s4_x.TIFF", "s5_x.png"]
    assert splits.train.loc[0, "mask"] == str(mask.absolute())
    assert splits.train["mask"].iloc[1:].isna().all()


def test_folders_split_folders_used_as_given(tmp_path):
    build_folders(tmp_path / "train", {"g3": 2, "nc": 3})
    build_folders(tmp_path / "val", {"nc": 1})  # a class may be absent from val
    build_folders(tmp_path / "test", {"g3": 1, "nc": 1})
    splits = read_class_folders(tmp_path, val_fraction=0.9)  # fractions unused with split folders
    assert splits.class_names == ("g3", "nc")
    assert splits.train["label"].tolist() == [0, 0, 1, 1, 1]
    assert splits.val["class_name"].tolist() == ["nc"]
    assert splits.test["label"].tolist() == [0, 1]
    assert all(str(tmp_path / "test") in p for p in splits.test["path"])


@pytest.mark.parametrize("missing", ["val", "test"])
def test_folders_split_folder_missing_names_path(tmp_path, missing):
    for s in ("train", "val", "test"):
        if s != missing:
            build_folders(tmp_path / s, {"a": 2})
    with pytest.raises(DataError, match="required but missing") as e:
        read_class_folders(tmp_path)
    assert str(tmp_path / missing) in str(e.value)


def test_folders_val_test_without_train_rejected(tmp_path):
    build_folders(tmp_path / "val", {"a": 2})
    build_folders(tmp_path / "test", {"a": 2})
    with pytest.raises(DataError, match="no train/ folder"):
        read_class_folders(tmp_path)


def test_folders_split_mode_unknown_class_in_val(tmp_path):
    build_folders(tmp_path / "train", {"a": 2, "b": 2})
    build_folders(tmp_path / "val", {"a": 1, "c": 1})
    build_folders(tmp_path / "test", {"b": 1})
    with pytest.raises(DataError, match=r"unknown class folder\(s\) \['c'\]") as e:
        read_class_folders(tmp_path)
    assert str(tmp_path / "val") in str(e.value) and "expected classes ['a', 'b']" in str(e.value)


def test_folders_empty_split_folder_named(tmp_path):
    build_folders(tmp_path / "train", {"a": 2})
    build_folders(tmp_path / "val", {"a": 1})
    (tmp_path / "test/a").mkdir(parents=True)
    (tmp_path / "test/a/readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="split 'test' is empty") as e:
        read_class_folders(tmp_path)
    assert str(tmp_path / "test") in str(e.value)


def test_folders_no_images_at_all(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="every split would be empty") as e:
        read_class_folders(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_folders_no_class_folders(tmp_path):
    write_image(tmp_path / "loose.png")
    with pytest.raises(DataError, match="no class folders"):
        read_class_folders(tmp_path)


def test_folders_too_few_for_stratified_split(tmp_path):
    build_folders(tmp_path, {"a": 10, "b": 1})
    with pytest.raises(DataError, match="cannot make a stratified split") as e:
        read_class_folders(tmp_path)
    assert "{'a': 10, 'b': 1}" in str(e.value)


@pytest.mark.parametrize(("val", "test"), [(0.0, 0.2), (0.2, 0.0), (0.5, 0.5), (-0.1, 0.2), (0.2, 1.0)])
def test_folders_bad_fractions_are_config_errors(tmp_path, val, test):
    build_folders(tmp_path, {"a": 10, "b": 10})
    with pytest.raises(ConfigError, match="val_fraction"):
        read_class_folders(tmp_path, val_fraction=val, test_fraction=test)


def test_folders_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        read_class_folders(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(e.value)


# ---------------------------------------------------------------------------------------------- unlabeled


def test_unlabeled_recursive_sorted_images_only(tmp_path):
    files = ["b/deep/z.TIF", "a.png", "b/y.JPEG", "c/x.jpg"]
    for f in files:
        write_image(tmp_path / f)
    (tmp_path / "c/notes.txt").write_text("x")
    (tmp_path / "c/x.gif").write_bytes(b"GIF89a")
    write_image(tmp_path / ".hidden/h.png")
    table = read_unlabeled(tmp_path)
    assert list(table.columns) == ["path"]
    assert table["path"].tolist() == sorted(str((tmp_path / f).absolute()) for f in files)


def test_unlabeled_none_found_names_folder_and_extensions(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/a.txt").write_text("x")
    with pytest.raises(DataError) as e:
        read_unlabeled(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and ".png" in msg and ".tiff" in msg


def test_unlabeled_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_unlabeled(tmp_path / "absent")
