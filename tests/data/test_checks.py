"""File checks before any dataset: verdicts per file, remembered until the file changes."""

import numpy as np
from PIL import Image

from ird_tf.data import checks
from ird_tf.data.checks import apply_verdicts, check_images


def _write(folder, name, array):
    path = folder / name
    Image.fromarray(array).save(path)
    return str(path)


def _noise(size, seed):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_file_verdicts_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    paths = [_write(tmp_path, f"{i}.png", _noise(8, i)) for i in range(3)]
    calls = []
    real = checks._check_one
    monkeypatch.setattr(checks, "_check_one", lambda p: calls.append(p) or real(p))
    cache_dir = tmp_path / "cache"
    assert all(c.error is None for c in check_images(paths, cache_dir=cache_dir))
    assert len(calls) == 3 and (cache_dir / "image_checks.json").is_file()
    check_images(paths, cache_dir=cache_dir)
    assert len(calls) == 3
    (tmp_path / "1.png").write_bytes(b"garbage")
    found = check_images(paths, cache_dir=cache_dir)
    assert calls[3:] == [paths[1]] and found[1].error and found[0].error is None


def test_verdicts_keep_the_good_files_in_order(tmp_path):
    paths = [_write(tmp_path, f"{i}.png", _noise(8, i)) for i in range(3)]
    (tmp_path / "1.png").write_bytes(b"not an image")
    found = check_images(paths)
    assert apply_verdicts(found, skip_corrupt=True) == [0, 2]
