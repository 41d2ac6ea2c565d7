"""Where a trained classifier's attention lands on a split: Grad-CAM-style maps of the *true* class on
the model's own input view (:func:`localisation_on_split`), scored against the lesion masks with
:mod:`ird_tf.evaluation.localisation`; :func:`cached_localisation` keeps the scores in the run
directory (``localisation.json``) so a finished run is scored once. (Costs: :mod:`ird_tf.evaluation.cost`.)
"""


from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from ird_tf.attention import attention_maps
from ird_tf.data.pipeline import evaluation_dataset
from ird_tf.data.view import InputView
from ird_tf.errors import DataError
from ird_tf.evaluation.localisation import load_masks, localisation_scores
from ird_tf.files import write_json

LOCALISATION_FILE = "localisation.json"


def _with_masks(table: pd.DataFrame) -> pd.DataFrame:
    if "mask" not in table.columns:
        raise DataError("localisation: the table has no 'mask' column (SICAPv2 layout: masks/<stem>.png)")
    rows = table[table["mask"].notna()].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"localisation: none of the {len(table)} rows has a mask file")
    return rows


def localisation_on_split(
    classifier: keras.Model,
    table: pd.DataFrame,
    view: InputView,
    *,
    weighting: str = "gradcam",
    batch_size: int = 32,
) -> dict[str, float | int]:
    """Energy share inside the lesion and pointing-game accuracy of ``classifier`` on ``table``.

    The rows with a mask are fed through the evaluation pipeline; the model reads ``view``. Maps are
    those of each patch's true class (``attention_maps(..., classes=labels)``), compared with the
    masks at the teacher's patch size (the maps are upsampled to them). Rows without a lesion
    (NC) are skipped by the scores; see :func:`ird_tf.evaluation.localisation.localisation_scores`.
    """
    rows = _with_masks(table)
    ds = evaluation_dataset(rows, view, batch_size=batch_size, cache=False)
    maps = []
    for x, y in ds:
        _, m = attention_maps(classifier, x[view.key], classes=y, weighting=weighting, second_order=False)
        maps.append(m[..., 0].numpy())
    masks = load_masks(rows["mask"].tolist(), view.image_size)
    return localisation_scores(np.concatenate(maps), masks)


def _nan_to_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}


def _none_to_nan(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: float("nan") if v is None else v for k, v in d.items()}


def read_localisation(run_dir: str | Path, key: Mapping[str, Any] | None = None) -> dict | None:
    """The cached scores of ``run_dir`` (NaN restored), or None if absent or computed under another key."""
    path = Path(run_dir) / LOCALISATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if key is not None and data.get("key") != json.loads(json.dumps(dict(key))):
            return None
        return _none_to_nan(data["scores"])
    except (ValueError, KeyError, TypeError):
        return None


def cached_localisation(
    run_dir: str | Path, compute: Callable[[], Mapping[str, Any]], *, key: Mapping[str, Any]
) -> tuple[dict, bool]:
    """``(scores, cached)``: the scores in ``run_dir/localisation.json`` if they were computed under the
    same ``key`` (settings of the measurement, e.g. split and weighting), else ``compute()`` written
    there. Returns whether they came from the cache."""
    found = read_localisation(run_dir, key)
    if found is not None:
        return found, True
    scores = dict(compute())
    write_json(Path(run_dir) / LOCALISATION_FILE, {"key": dict(key), "scores": _nan_to_none(scores)})
    return scores, False


__all__ = ["LOCALISATION_FILE", "cached_localisation", "localisation_on_split", "read_localisation"]
