"""Atomic writes: the target holds the old or the new content, never a torn one; no temporary left."""


import pytest

from ird_tf.files import atomic_path, stray_temporaries, write_json, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text(tmp_path / "a" / "result.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed half-way")
    assert target.read_text() == "old" and stray_temporaries(tmp_path) == []
    write_json(target, {"x": 1})
    assert target.read_text() == '{\n  "x": 1\n}\n' and stray_temporaries(tmp_path) == []


def test_temporaries_are_unique_and_keep_the_target_suffix(tmp_path):
    target = tmp_path / "best.weights.h5"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.parent == b.parent == tmp_path
        assert a.name.endswith("-best.weights.h5") and b.name.endswith("-best.weights.h5")
        assert stray_temporaries(tmp_path) == sorted([a, b])
        a.write_text("first")
        b.write_text("second")
    assert target.read_text() == "first"  # the writer that finished last wins, whole
    assert stray_temporaries(tmp_path) == []


def test_write_figure_writes_a_png_and_leaves_no_temporary(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ird_tf.files import stray_temporaries, write_figure

    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    fig.add_subplot().plot([0, 1], [1, 0])
    out = write_figure(tmp_path / "sub" / "f.png", fig, dpi=50)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stray_temporaries(tmp_path) == []
