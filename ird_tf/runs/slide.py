"""The slide task: classify every tissue tile of whole slides with a trained Student (and optionally the
10x Teacher on the same grid), and write the outputs of each slide.

For each slide: open it (OpenSlide or TiffSlide), take level 0's µm/px from the metadata (or ``--mpp``),
find the tissue on a low level, lay the Teacher's tile grid (``image_size`` px at the Teacher's µm/px),
choose the level at the Student's µm/px (:func:`~ird_tf.data.slides.choose_level`), read the tiles in
large regions, prepare them with the one input contract (``InputView.prepare(..., "native")``), run the
model in batches, and write (atomically) under ``<out>/<slide name>/``:

    tiles.csv  tiles.geojson  heatmap.png  tissue.png  summary.json  done.json

``done.json`` is written last and holds a digest of the model(s) and of every setting that changes the
result: a rerun skips a slide whose marker matches and redoes one without it (killed half-way) or with
another digest. A slide that fails is reported by name and the others go on; ``<out>/slides.csv`` lists
every finished slide and this run's failures. Memory holds one region and one batch, whatever the slide.

Models: a SavedModel export (``saved_models/<name>``: its newest version, or one version directory),
read through its ``serving_default`` signature; or a run directory (``runs/students/<run>``,
``runs/teachers/<run>``: ``config.yaml`` + ``best.weights.h5``), rebuilt with ``build_classifier``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ird_tf.data.slides import (
    choose_level,
    detect_tissue,
    iter_regions,
    open_slide,
    reduce,
    tile_grid,
)
from ird_tf import faults
from ird_tf.data.view import InputView
from ird_tf.errors import ConfigError, DataError
from ird_tf.progress import say

SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".scn", ".mrxs", ".vms", ".vmu", ".bif", ".svslide")
DEFAULT_CLASSES = ("NC", "G3", "G4", "G5")
PATTERN_OF = {"G3": 3, "G4": 4, "G5": 5}
MPP_FACTOR_LIMIT = 2.0
BATCH_PIXELS = 64 * 128 * 128
MAX_BATCH = 1024


def _log(msg: str) -> None:
    say(msg, source="slide")


# ---------------------------------------------------------------------------------------------- models
@dataclass
class SlideModel:
    """A model ready for slides: it takes float32 ``[B, side, side, 3]`` images at ``mpp`` µm/px."""

    name: str
    class_names: tuple[str, ...]
    view: InputView
    teacher_mpp: float
    predict: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    identity: dict = field(default_factory=dict)

    @property
    def mpp(self) -> float:
        """µm/px of the images the model takes (the Teacher's times the view's factor)."""
        return self.teacher_mpp * self.view.factor

    @property
    def side(self) -> int:
        return self.view.native_size

    @property
    def tile_um(self) -> float:
        """Side of a grid tile in µm (the Teacher's patch)."""
        return self.view.image_size * self.teacher_mpp


def _sha(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _export_version(path: Path) -> Path | None:
    if (path / "saved_model.pb").is_file():
        return path
    versions = [p for p in path.iterdir()
                if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def _load_export(version: Path, option: str) -> SlideModel:
    import tensorflow as tf

    try:
        meta = json.loads((version / "assets.extra" / "metadata.json").read_text())
        names = tuple(meta["class_names"])
        factor, mode, input_size = int(meta["factor"]), meta["mode"], int(meta["input_size"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"argument {option}: {version} has no readable assets.extra/metadata.json with "
                          f"class_names, factor, mode and input_size ({e})") from e
    image_size = int(meta.get("image_size") or (input_size if mode == "upsampled" else input_size * factor))
    view = InputView("lr" if factor > 1 else "hr", image_size, factor, mode)
    if "teacher_mpp" in meta:
        teacher_mpp = float(meta["teacher_mpp"])
    elif "teacher_mag" in meta:
        teacher_mpp = 10.0 / float(meta["teacher_mag"])
    else:
        raise ConfigError(f"argument {option}: {version}/assets.extra/metadata.json gives neither "
                          "teacher_mpp nor teacher_mag: the µm/px the model expects is unknown")
    fn = tf.saved_model.load(str(version)).signatures["serving_default"]
    older = "image_size" not in meta  # exported before the slide contract: serving_default took S x S

    def predict(x: np.ndarray) -> np.ndarray:
        images = view.prepare(tf.constant(x), "native") if older else tf.constant(x)
        return fn(images=images)["probabilities"].numpy()

    ident = {"export": str(version.resolve()),
             "files": _sha(version / "saved_model.pb", version / "variables" / "variables.index",
                           version / "assets.extra" / "metadata.json")}
    return SlideModel(version.parent.name if version.name.isdigit() else version.name, names, view,
                      teacher_mpp, predict, ident)


def _load_run(run: Path, role: str, option: str) -> SlideModel:
    import tensorflow as tf

    from ird_tf.config import ExperimentConfig
    from ird_tf.models import build_classifier

    cfg = ExperimentConfig.load(run / "config.yaml")
    names = tuple(cfg.data.class_names or DEFAULT_CLASSES)
    view = InputView.teacher(cfg.data) if role == "teacher" else InputView.student(cfg.data)
    backbone = cfg.model.backbone if role == "teacher" else cfg.model.student
    model = build_classifier(backbone, len(names), (view.size, view.size, 3), None, name=role)
    try:
        model.load_weights(str(run / "best.weights.h5"))
    except (ValueError, OSError) as e:
        raise ConfigError(f"argument {option}: {run}/best.weights.h5 does not fit a {backbone} "
                          f"{role} with {len(names)} classes ({e})") from e

    @tf.function(input_signature=[tf.TensorSpec([None, view.native_size, view.native_size, 3], tf.float32)])
    def forward(x):
        return tf.nn.softmax(model(view.prepare(x, "native"), training=False)["logits"], axis=-1)

    def predict(x: np.ndarray) -> np.ndarray:
        return forward(tf.constant(x)).numpy()

    ident = {"run": str(run.resolve()), "weights": _sha(run / "best.weights.h5"), "role": role}
    return SlideModel(run.name, names, view, 10.0 / cfg.data.teacher_mag, predict, ident)


def load_model(path: str | Path, role: str = "student", option: str = "--model") -> SlideModel:
    """A SavedModel export (base directory: its newest version) or a run directory (``role`` says which
    view its config gives: the Student's or the Teacher's)."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"argument {option}: {path} is not a directory (expected saved_models/<name> or "
                          "runs/students/<run>)")
    if (path / "config.yaml").is_file() and (path / "best.weights.h5").is_file():
        return _load_run(path, role, option)
    version = _export_version(path)
    if version is None:
        raise ConfigError(f"argument {option}: {path} holds neither a SavedModel (saved_model.pb, or version "
                          "folders 1/, 2/ ...) nor a finished run (config.yaml + best.weights.h5)")
    return _load_export(version, option)


# ---------------------------------------------------------------------------------------------- slides
@dataclass(frozen=True)
class SlideSettings:
    backend: str | None = None
    mpp: float | None = None
    force_mpp: bool = False
    tissue_threshold: float | None = None
    min_tissue: float = 0.5
    overlap: float = 0.0
    batch_size: int | None = None  # None: :func:`batch_for` the model's input size
    min_pattern_tiles: int = 0

    def check(self) -> None:
        if self.mpp is not None and self.mpp <= 0:
            raise ConfigError(f"argument --mpp: {self.mpp!r}: expected µm/px > 0")
        if self.tissue_threshold is not None and not 0 <= self.tissue_threshold < 1:
            raise ConfigError(f"argument --tissue-threshold: {self.tissue_threshold!r}: expected a "
                              "saturation in [0, 1)")
        if not 0 <= self.min_tissue <= 1:
            raise ConfigError(f"argument --min-tissue: {self.min_tissue!r}: expected a fraction in [0, 1]")
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"argument --overlap: {self.overlap!r}: expected a fraction in [0, 1)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"argument --batch-size: {self.batch_size!r}: expected >= 1")
        if self.min_pattern_tiles < 0:
            raise ConfigError(f"argument --min-pattern-tiles: {self.min_pattern_tiles!r}: expected >= 0")


def find_slides(inputs: Sequence[str | Path]) -> list[Path]:
    """Slide files given directly or found (not recursively) in the given folders, sorted, unique."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SLIDE_SUFFIXES))
        elif p.exists():
            found.append(p)
        else:
            raise ConfigError(f"argument SLIDE: {p} does not exist")
    seen, out = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    stems: dict[str, Path] = {}
    for f in out:
        if f.stem in stems:
            raise ConfigError(f"argument SLIDE: {stems[f.stem]} and {f} would share the output folder "
                              f"{f.stem}/: give them different names")
        stems[f.stem] = f
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (1 <= i <= n) -> (i, n); None -> (1, 1)."""
    if text is None:
        return 1, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i = n = 0
    if not (n >= 1 and 1 <= i <= n):
        raise ConfigError(f"argument --shard: {text!r}: expected i/n with 1 <= i <= n, e.g. 1/4")
    return i, n


def settings_digest(settings: SlideSettings, student: SlideModel, teacher: SlideModel | None) -> str:
    """What decides a slide's outputs (the batch size does not)."""
    s = asdict(settings)
    s.pop("batch_size")
    ident = {"settings": s, "student": student.identity, "teacher": teacher.identity if teacher else None,
             "revision": 1}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def batch_for(side: int) -> int:
    """The default batch for a network taking ``side`` px images: :data:`BATCH_PIXELS` pixels (64
    images of 128 px), at least 64 and at most
    :data:`MAX_BATCH` tiles. A 1.25x Student's 16 px tiles are tiny: 64 of them per call left the
    model's fixed cost per call dominant (measured: 2048 tiles took about 3x longer in batches of 64
    than of 1024)."""
    return int(max(64, min(MAX_BATCH, BATCH_PIXELS // max(side * side, 1))))


def infer(slide, tiles, model: SlideModel, mpp0: float, batch_size: int | None = None
          ) -> tuple[np.ndarray, dict]:
    """Probabilities ``[len(tiles), C]`` of ``model`` on ``tiles`` (``batch_size`` None:
    :func:`batch_for`); and how the level was read."""
    plan = choose_level([lv.downsample for lv in slide.levels], mpp0, model.mpp, name=str(slide.path))
    out = np.zeros((len(tiles), len(model.class_names)), np.float32)
    side = model.side
    batch = batch_size or batch_for(model.view.size)  # the network's input (an upsampled view: 128 px)
    held_idx: list[np.ndarray] = []
    held: list[np.ndarray] = []

    def flush(final: bool) -> None:
        if not held:
            return
        idx = np.concatenate(held_idx) if len(held_idx) > 1 else held_idx[0]
        images = np.concatenate(held) if len(held) > 1 else held[0]
        n = len(idx) if final else len(idx) // batch * batch
        for s in range(0, n, batch):
            out[idx[s:s + batch]] = model.predict(images[s:s + batch])
            faults.point(f"slide-batch:{slide.path.stem}")
        held_idx[:], held[:] = ([idx[n:]], [images[n:]]) if n < len(idx) else ([], [])

    for idx, pixels in iter_regions(slide, tiles, plan, side):
        held_idx.append(np.asarray(idx, np.int64))
        held.append(reduce(pixels, plan, side))
        if sum(len(i) for i in held_idx) >= batch:
            flush(False)
    flush(True)
    info = {"level": plan.level, "level_mpp": round(plan.level_mpp, 6), "mpp_read": round(model.mpp, 6),
            "scale": round(plan.scale, 6), "side": side}
    return out, info


def _grading(counts: dict[str, int], min_tiles: int) -> dict | None:
    from ird_tf.evaluation.gleason import grade_slide

    if not any(c in counts for c in PATTERN_OF):
        return None
    extents = {PATTERN_OF[c]: n for c, n in counts.items() if c in PATTERN_OF}
    return grade_slide(extents, min_extent=min_tiles).to_dict()


def _slide_mpp(slide, settings: SlideSettings) -> tuple[float, str]:
    meta = slide.mpp
    if settings.mpp is None:
        if meta is None:
            raise DataError(f"slide {slide.path} has no µm/px in its metadata: pass --mpp (level-0 µm/px)")
        return meta, "metadata"
    if meta is not None and not settings.force_mpp:
        ratio = max(settings.mpp / meta, meta / settings.mpp)
        if ratio > MPP_FACTOR_LIMIT:
            raise DataError(f"slide {slide.path}: --mpp {settings.mpp:g} is {ratio:.3g}x off the metadata's "
                            f"{meta:g} µm/px (more than {MPP_FACTOR_LIMIT:g}x): pass --force-mpp to use it")
    return settings.mpp, "--mpp"


def process_slide(path: Path, out_dir: Path, student: SlideModel, teacher: SlideModel | None,
                  settings: SlideSettings, digest: str) -> dict:
    """All outputs of one slide (``done.json`` last); returns its summary."""
    from ird_tf.evaluation.slide_report import TileTable, write_heatmap, write_summary, write_tissue_png
    from ird_tf.files import write_json

    start = time.perf_counter()
    for stale in ("done.json", "summary.json"):
        (out_dir / stale).unlink(missing_ok=True)
    with open_slide(path, settings.backend) as slide:
        mpp0, mpp_source = _slide_mpp(slide, settings)
        tissue = detect_tissue(slide, mpp0, settings.tissue_threshold)
        width, height = slide.dimensions
        tile0 = student.tile_um / mpp0
        tiles = tile_grid(width, height, tile0, settings.overlap, tissue, settings.min_tissue)
        probs, info = infer(slide, tiles, student, mpp0, settings.batch_size)
        _log(f"{path.name}: {len(tiles)} tissue tiles of {tile0:.4g} level-0 px, read at level "
             f"{info['level']} ({info['level_mpp']:g} µm/px) for {info['mpp_read']:g} µm/px")
        t_probs, t_info = (None, None)
        if teacher is not None:
            t_probs, t_info = infer(slide, tiles, teacher, mpp0, settings.batch_size)
        backend = slide.backend
    names = student.class_names
    table = TileTable(tiles, probs, names, mpp=info["mpp_read"], level=info["level"], teacher=t_probs)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.write_csv(out_dir / "tiles.csv")
    table.write_geojson(out_dir / "tiles.geojson")
    write_tissue_png(out_dir / "tissue.png", tissue.mask)
    counts = table.counts()
    grading = _grading(counts, settings.min_pattern_tiles)
    title = f"{path.name}: {student.name} at {info['mpp_read']:g} um/px, {len(tiles)} tiles"  # ASCII font
    if grading:
        title += f", Gleason {grading['label']} (grade group {grading['grade_group'] or '-'})"
    write_heatmap(out_dir / "heatmap.png", tissue.thumbnail, tissue.downsample, table, names, title)
    summary = {
        "slide": path.name, "path": str(path), "backend": backend, "model": student.name,
        "classes": list(names), "mpp0": mpp0, "mpp_source": mpp_source, **info,
        "tile_level0_px": round(tile0, 4), "overlap": settings.overlap, "tiles": len(tiles),
        "tissue_threshold": round(tissue.threshold, 4),
        "tissue_fraction": round(float(tissue.mask.mean()), 4),
        "counts": counts, "grading": grading or {}, "digest": digest,
    }
    if teacher is not None:
        t_counts = table.counts(teacher=True)
        agree = float(np.mean(probs.argmax(1) == t_probs.argmax(1))) if len(tiles) else None
        summary["teacher"] = {"model": teacher.name, **t_info, "counts": t_counts,
                              "grading": _grading(t_counts, settings.min_pattern_tiles) or {},
                              "agreement": agree}
    summary["seconds"] = round(time.perf_counter() - start, 3)
    write_summary(out_dir / "summary.json", summary)
    write_json(out_dir / "done.json", {"digest": digest, "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return summary


def is_done(out_dir: Path, digest: str) -> bool:
    try:
        done = json.loads((out_dir / "done.json").read_text())
    except (OSError, ValueError):
        return False
    return done.get("digest") == digest and (out_dir / "summary.json").is_file()


@dataclass
class SlideRun:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_slides(slides: Sequence[Path], out: Path, student: SlideModel, teacher: SlideModel | None,
               settings: SlideSettings, shard: tuple[int, int] = (1, 1)) -> SlideRun:
    """Runs :func:`process_slide` on this shard's slides (every n-th from the i-th, in sorted order);
    a failing slide is reported by name and the others go on."""
    settings.check()
    # TensorFlow leaves ~10^6 Python objects behind; without this every full garbage collection that
    # the output tables trigger walks them all (a quarter of a second per slide of 2000 tiles)
    gc.freeze()
    if teacher is not None and tuple(teacher.class_names) != tuple(student.class_names):
        raise ConfigError(f"argument --teacher: classes {list(teacher.class_names)} differ from the model's "
                          f"{list(student.class_names)}")
    if teacher is not None and abs(teacher.tile_um - student.tile_um) > 1e-6 * student.tile_um:
        raise ConfigError(f"argument --teacher: its patches cover {teacher.tile_um:g} µm, the model's "
                          f"{student.tile_um:g} µm: they cannot share one grid")
    i, n = shard
    mine = list(slides)[i - 1::n]
    digest = settings_digest(settings, student, teacher)
    result = SlideRun()
    total = len(mine)
    _log(f"{total} slide(s){f' (shard {i}/{n} of {len(slides)})' if n > 1 else ''}: model {student.name} "
         f"at {student.mpp:g} µm/px ({student.side} px tiles)"
         + (f", teacher {teacher.name} at {teacher.mpp:g} µm/px" if teacher else "") + f" -> {out}")
    start = time.perf_counter()
    for k, path in enumerate(mine, start=1):
        out_dir = out / path.stem
        if is_done(out_dir, digest):
            result.skipped.append(path.name)
            _log(f"[{k}/{total}] {path.name}: done before with the same settings, skipped")
            continue
        _log(f"[{k}/{total}] {path.name}: started")
        try:
            s = process_slide(path, out_dir, student, teacher, settings, digest)
        except Exception as e:  # one bad slide must not stop the others
            msg = str(e) if isinstance(e, (DataError, ConfigError)) else f"{type(e).__name__}: {e}"
            result.failed[path.name] = msg
            _log(f"[{k}/{total}] {path.name}: FAILED: {msg}")
            continue
        result.done.append(path.name)
        g = s["grading"].get("label", "n/a") if s["grading"] else "n/a"
        _log(f"[{k}/{total}] {path.name}: done, {s['tiles']} tiles in {s['seconds']:.2f} s, {s['counts']}, "
             f"Gleason {g}")
    from ird_tf.evaluation.slide_report import write_slides_csv

    write_slides_csv(out, result.failed)
    _log(f"finished in {time.perf_counter() - start:.1f} s: {len(result.done)} done, {len(result.skipped)} "
         f"skipped, {len(result.failed)} failed; {out / 'slides.csv'}")
    return result


__all__ = ["SLIDE_SUFFIXES", "SlideModel", "SlideRun", "SlideSettings", "batch_for", "find_slides", "infer", "is_done",
           "load_model", "parse_shard", "process_slide", "run_slides", "settings_digest"]
