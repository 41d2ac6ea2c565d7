"""The tissue patterns: benign glands (with atrophic glands, a G3 mimic) and Gleason patterns 3, 4
and 5 (with their mimics), each drawn into a ``Scene`` where a distance map allows it. This is where
the benchmark's fine and coarse evidence is made."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ird_tf.data.synthetic.noise import noise
from ird_tf.data.synthetic.scene import (
    Nuclei,
    Scene,
    at,
    epithelial_nuclei,
    grid,
    harmonics,
    outline_radius,
    pack,
)


def benign(sc: Scene, dist: np.ndarray, q: int, difficulty: float, s: float) -> None:
    """Benign glands: large, folded (papillary) outlines, tall pale luminal cells over a basal layer
    of flat dark nuclei; at higher difficulty some small atrophic glands (a G3 mimic with basal cells)."""
    rng, px, gs = sc.rng, sc.px, sc.style.gland_scale
    kind = epithelial_nuclei(s, sc.style)
    big = pack(rng, dist, q, 14, (px(26 * gs), px(58 * gs)), (px(8), px(28)), fit=1.3, margin=px(5))
    atrophy = rng.random() < 0.1 + 0.6 * difficulty
    small = pack(rng, dist, q, 25 if atrophy else 0, (px(10 * gs), px(20 * gs)), (px(5), px(18)),
                  fit=1.15, margin=px(5), taken=big)
    for cy, cx, r in big:
        harm = np.concatenate([harmonics(rng, (2, 3), 0.08, 2), harmonics(rng, (5, 9), 0.07, 2)])
        shape = sc.gland("b", cy, cx, r, harm, px(rng.uniform(11, 15)))
        sc.ring_nuclei("b", shape, px(1.8), px(rng.uniform(9, 13)), kind, tangential=True,
                       aspect=0.4, dens=1.4)
        sc.ring_nuclei("b", shape, px(3.5 + 0.55 * kind.length), px(kind.length * kind.aspect * 1.3),
                       kind)
        if rng.random() < 0.3:
            th, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.4) * r
            sc.disks(sc.corpora, np.array([cy + d * np.sin(th)]), np.array([cx + d * np.cos(th)]),
                     np.array([px(rng.uniform(5, 11))]))
    for cy, cx, r in small:
        shape = sc.gland("b", cy, cx, r, harmonics(rng, (2, 3), 0.06), px(rng.uniform(5, 7)))
        sc.ring_nuclei("b", shape, px(1.5), px(rng.uniform(9, 13)), kind, tangential=True,
                       aspect=0.4, dens=1.4)
        sc.ring_nuclei("b", shape, px(4.0), px(kind.length), kind, tangential=True, aspect=0.55,
                       dens=1.4)


def g3(sc: Scene, dist: np.ndarray, q: int, difficulty: float, kind: Nuclei) -> None:
    """Small, separate, well-formed glands: round lumens, one layer of cells, no basal layer."""
    rng, px, gs = sc.rng, sc.px, sc.style.gland_scale
    large = rng.random() < 0.5 * difficulty  # mimic of benign: bigger, slightly lobulated glands
    r_range = (px(13 * gs), px((30 if large else 22) * gs))
    for cy, cx, r in pack(rng, dist, q, 100, r_range, (px(2 + 5 * (1 - difficulty)), px(14)), fit=0.35):
        t = min(px(kind.length * rng.uniform(0.8, 1.0) + 2.5), r - px(4))
        harm = harmonics(rng, (2, 5) if large else (2, 3), 0.1 if large else 0.07)
        shape = sc.gland("g", cy, cx, r, harm, t)
        sc.ring_nuclei("g", shape, px(1.2 + 0.5 * kind.length), px(kind.length * 1.1), kind)
        if rng.random() < 0.3:
            sc.disks(sc.secretion, np.array([cy]), np.array([cx]), np.array([max(r - t - px(1.5), 0.5)]))


def _nest(sc: Scene, cy: float, cx: float, r: float, kind: Nuclei,
          lumens: tuple[float, float, float] | None, necrosis: float = 0.0) -> None:
    """A solid epithelial nest. ``lumens`` = (spacing, r_min, r_max) µm punches cribriform lumens;
    ``necrosis`` > 0: comedonecrosis of that relative radius, with nuclear debris."""
    rng, px = sc.rng, sc.px
    shape = sc.gland("g", cy, cx, r, harmonics(rng, (2, 5), 0.12), None)
    if shape is None:
        return
    where = shape.outer.copy()
    y0, x0 = shape.sl[0].start, shape.sl[1].start
    if lumens is not None:
        ly, lx = grid(rng, *where.shape, px(lumens[0]), 0.3)
        dy, dx = ly + y0 - cy, lx + x0 - cx
        lr = px(rng.uniform(lumens[1], lumens[2], ly.size))
        keep = np.hypot(dy, dx) < shape.radius(np.arctan2(dy, dx).astype(np.float32)) - lr - px(4.5)
        sc.disks(sc.lumen["g"], ly[keep] + y0, lx[keep] + x0, lr[keep])
    if necrosis > 0:
        nr = necrosis * r
        nec = np.clip(outline_radius(shape.th, nr, harmonics(rng, (3, 6), 0.15)) - shape.rr + 0.5, 0, 1)
        np.maximum(sc.necro[shape.sl], nec, out=sc.necro[shape.sl])
        where *= 1 - nec
        m = int(np.pi * nr * nr / px(5) ** 2)
        t, a = np.sqrt(rng.random(m)) * nr * 0.9, rng.uniform(0, 2 * np.pi, m)
        sc.add_nuclei("g", cy + t * np.sin(a), cx + t * np.cos(a),
                      replace(kind, pleo=0.35, aspect=0.85, vesic=0.0, p_nucleolus=0.0), length=2.4, dens=1.6)
    sc.fill_nuclei("g", where, px(kind.length * rng.uniform(1.0, 1.2)), kind, (y0, x0))


def g4(sc: Scene, dist: np.ndarray, q: int, difficulty: float, kind: Nuclei) -> None:
    """Cribriform nests with many small punched-out lumens, and fused / poorly formed glands."""
    rng, px, gs = sc.rng, sc.px, sc.style.gland_scale
    p_crib = rng.uniform(0.2, 1.0)
    nests = pack(rng, dist, q, int(round(14 * p_crib)), (px(20 * gs), px(45 * gs)), (px(3), px(10)),
                  fit=0.4)
    lum = (rng.uniform(8, 12), 1.4 + 0.5 * (1 - difficulty), 4.5)
    for cy, cx, r in nests:
        _nest(sc, cy, cx, r, kind, lum)
    fused = pack(rng, dist, q, 120, (px(10 * gs), px(22 * gs)), (px(-14), px(1 + 3 * difficulty)),
                  fit=0.3, taken=[(cy, cx, r + px(4)) for cy, cx, r in nests])
    for cy, cx, r in fused:
        t = None if rng.random() < 0.3 else r * rng.uniform(0.5, 0.8)
        shape = sc.gland("g", cy, cx, r, harmonics(rng, (2, 5), 0.15), t)
        sc.ring_nuclei("g", shape, px(1.2 + 0.5 * kind.length), px(kind.length * 1.05), kind)
        if t is None or t > px(2 * kind.length):
            sc.ring_nuclei("g", shape, px(2.4 + 1.5 * kind.length), px(kind.length * 1.05), kind)


def g5(sc: Scene, region: np.ndarray, dist: np.ndarray, q: int, difficulty: float, kind: Nuclei) -> None:
    """No glands: solid sheets, cords and single cells, or nests with comedonecrosis; at higher
    difficulty solid nests without lumens (a G4 mimic at low magnification)."""
    rng, px, gs, n = sc.rng, sc.px, sc.style.gland_scale, sc.n
    p = np.array([0.45, 0.2, 0.35, 0.4 * difficulty])
    mode = ("sheets", "cords", "comedo", "nests")[int(rng.choice(4, p=p / p.sum()))]
    spacing = px(kind.length * rng.uniform(0.95, 1.1))
    if mode in ("comedo", "nests"):
        for cy, cx, r in pack(rng, dist, q, 12, (px(22 * gs), px(50 * gs)), (px(4), px(14)), fit=0.5):
            _nest(sc, cy, cx, r, kind, None, rng.uniform(0.3, 0.55) if mode == "comedo" else 0.0)
        if mode == "nests":
            return
        mode = "sheets" if rng.random() < 0.5 else "cords"
    if mode == "sheets":  # solid sheets split by thin fibrovascular septa
        free = region * (1 - sc.cover["g"]) * (np.abs(noise(rng, n, px(30))) > rng.uniform(0.06, 0.14))
        np.maximum(sc.cover["g"], free, out=sc.cover["g"])
        sc.fill_nuclei("g", free, spacing, kind)
        return
    # cords of cells (level-set bands of a smooth field) and single cells in the stroma
    f = noise(rng, n, px(rng.uniform(14, 22)))
    cords = region * (np.abs(f - rng.uniform(-0.5, 0.5)) < rng.uniform(0.25, 0.4)) * (1 - sc.cover["g"])
    np.maximum(sc.cover["g"], cords, out=sc.cover["g"])
    sc.fill_nuclei("g", cords, spacing * 0.95, kind)
    y, x = grid(rng, n, n, px(rng.uniform(12, 20)), 0.5)
    keep = (at(region, y, x) > 0.5) & (at(sc.cover["g"], y, x) < 0.1)
    sc.disks(sc.cover["g"], y[keep], x[keep], np.full(int(keep.sum()), px(kind.length * 0.75)))
    sc.add_nuclei("g", y[keep], x[keep], kind)
