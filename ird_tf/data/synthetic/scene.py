"""The canvas of one patch: ``Scene`` holds its layers (epithelium, lumens, necrosis, secretions,
corpora amylacea) and its nuclei, and draws glands, disks and nuclei into them in pixels. Also the
geometry the tissue patterns are built from: jittered grids, outlines with harmonics, nuclear
appearance by severity and greedy random packing of glands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ird_tf.data.synthetic.stain import SlideStyle


def grid(rng: np.random.Generator, h: int, w: int, spacing: float,
          jitter: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Jittered grid of points (y, x) over an h x w box, ``spacing`` px apart."""
    gy, gx = np.arange(spacing / 2, h, spacing), np.arange(spacing / 2, w, spacing)
    y, x = (a.ravel() for a in np.meshgrid(gy, gx, indexing="ij"))
    j = rng.uniform(-jitter, jitter, (2, y.size)) * spacing
    return y + j[0], x + j[1]


def at(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values of ``img`` at the pixels holding the points (y, x), clamped to the image."""
    iy = np.clip(y.astype(np.intp), 0, img.shape[0] - 1)
    return img[iy, np.clip(x.astype(np.intp), 0, img.shape[1] - 1)]


def harmonics(rng: np.random.Generator, ks: tuple[int, int], amp: float, count: int = 3) -> np.ndarray:
    """Rows (k, amplitude, phase) of a radius modulation 1 + sum a cos(k theta + phase)."""
    u = rng.random((3, count))
    k = ks[0] + np.floor(u[0] * (ks[1] - ks[0] + 1))
    return np.stack([k, amp * u[1], 2 * np.pi * u[2]], 1).astype(np.float32)


def outline_radius(th: np.ndarray, r: float, harm: np.ndarray) -> np.ndarray:
    out = np.ones_like(th)
    for k, a, p in harm:
        out += a * np.cos(k * th + p)
    return out * np.float32(r)


@dataclass
class _Shape:
    """A drawn gland or nest: centre, outline r(1 + harmonics), and its soft mask in the box ``sl``."""

    cy: float
    cx: float
    r: float
    harm: np.ndarray
    sl: tuple[slice, slice]
    outer: np.ndarray
    th: np.ndarray
    rr: np.ndarray

    def radius(self, th: np.ndarray) -> np.ndarray:
        return outline_radius(th, self.r, self.harm)


@dataclass
class Nuclei:
    """Nuclear appearance; sizes in µm, densities as hematoxylin OD."""

    length: float  # mean long-axis diameter
    aspect: float  # short / long
    pleo: float  # log-sd of sizes (pleomorphism)
    dens: float  # OD at the rim
    vesic: float  # 0 solid .. 1 empty centre (vesicular chromatin)
    coarse: float  # chromatin texture amplitude
    p_nucleolus: float
    nucleolus: float  # nucleolus diameter


def epithelial_nuclei(s: float, style: SlideStyle) -> Nuclei:
    """Nuclei of epithelium with latent severity s (0 benign .. 1 G5): bigger, paler (vesicular),
    coarser chromatin, more and larger nucleoli as s grows."""
    s = float(np.clip(s, -0.2, 1.2))
    return Nuclei(
        length=float(np.clip(6.6 + 4.4 * s, 6.0, 12.0)) * style.nuclear_scale,
        aspect=0.68 + 0.16 * s, pleo=0.05 + 0.10 * s, dens=1.3 - 0.3 * s,
        vesic=float(np.clip(0.05 + 0.6 * s, 0.0, 0.65)), coarse=0.1 + 0.45 * s,
        p_nucleolus=float(np.clip(2.4 * s - 0.3, 0.0, 0.95)), nucleolus=1.2 + 0.9 * s,
    )


_NUCLEI_FIELDS = ("y", "x", "a", "b", "ang", "dens", "vesic", "coarse", "nl", "nly", "nlx", "owner")


class Scene:
    """Layers of one patch in px; structures are owned by ``b`` (benign), ``g`` (graded) or ``s``
    (stroma) so that the graded region can clip them."""

    def __init__(self, rng: np.random.Generator, n: int, mpp: float, style: SlideStyle):
        self.rng, self.n, self.mpp, self.style = rng, n, mpp, style
        self.cover = {"b": self.zeros(), "g": self.zeros()}
        self.lumen = {"b": self.zeros(), "g": self.zeros()}
        self.necro, self.secretion, self.corpora = self.zeros(), self.zeros(), self.zeros()
        self.nuc: list[np.ndarray] = []  # (len(_NUCLEI_FIELDS), m) blocks
        self._rings: dict[tuple, tuple[Nuclei, list]] = {}

    def zeros(self) -> np.ndarray:
        return np.zeros((self.n, self.n), np.float32)

    def px(self, um: float) -> float:
        return um / self.mpp

    def gland(self, owner: str, cy: float, cx: float, r: float, harm: np.ndarray,
              t: float | None) -> _Shape | None:
        """Outline of radius ``r`` px; epithelium ``t`` px thick around a lumen (None: solid)."""
        ext, n = r * (1 + float(harm[:, 1].sum())) + 2, self.n
        y0, y1 = max(0, int(cy - ext)), min(n, int(cy + ext) + 2)
        x0, x1 = max(0, int(cx - ext)), min(n, int(cx + ext) + 2)
        if y0 >= y1 or x0 >= x1:
            return None
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
        rr, th = np.sqrt(dy * dy + dx * dx), np.arctan2(dy, dx)
        big_r = outline_radius(th, r, harm)
        sl = (slice(y0, y1), slice(x0, x1))
        outer = np.clip(big_r - rr + 0.5, 0, 1)
        np.maximum(self.cover[owner][sl], outer, out=self.cover[owner][sl])
        if t is not None:
            lumen = self.lumen[owner][sl]
            np.maximum(lumen, np.clip(big_r - t - rr + 0.5, 0, 1), out=lumen)
        return _Shape(cy, cx, r, harm, sl, outer, th, rr)

    def _stamp(self, y: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        """Flat pixel indices (N, k, k) of a k x k window around each point, offsets dy (N, k, 1) and
        dx (N, 1, k) from the point, and the in-image mask."""
        off = np.arange(k) - k // 2
        iy, ix = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
        yy, xx = iy[:, None, None] + off[None, :, None], ix[:, None, None] + off[None, None, :]
        ok = (yy >= 0) & (yy < self.n) & (xx >= 0) & (xx < self.n)
        dy = (yy - y[:, None, None]).astype(np.float32)
        dx = (xx - x[:, None, None]).astype(np.float32)
        return yy * self.n + xx, dy, dx, ok

    def disks(self, layer: np.ndarray, y: np.ndarray, x: np.ndarray, r: np.ndarray,
              value: float = 1.0) -> None:
        """Soft disks of radii ``r`` px painted into ``layer`` (union, clipped at ``value``)."""
        keep = (y > -r) & (y < self.n + r) & (x > -r) & (x < self.n + r)
        if not keep.any():
            return
        y, x, r = y[keep], x[keep], r[keep]
        idx, dy, dx, ok = self._stamp(y, x, 2 * int(np.ceil(r.max())) + 3)
        val = np.clip(r[:, None, None] - np.sqrt(dy * dy + dx * dx) + 0.5, 0, 1) * value
        idx, val = idx[ok], val[ok]
        flat = layer.reshape(-1)  # a view: small sets of disks touch few pixels, so add in place
        np.add.at(flat, idx, val.astype(np.float32))
        np.minimum(flat[idx], value, out=val)
        flat[idx] = val

    # -- nuclei
    def add_nuclei(self, owner: str, y: np.ndarray, x: np.ndarray, kind: Nuclei,
                   angle: np.ndarray | None = None, *, aspect: float | None = None,
                   length: float | None = None, dens: float | None = None) -> None:
        """Nuclei of ``kind`` centred at (y, x) px (random orientation unless ``angle``); sizes,
        aspect and density vary per nucleus around the kind's values (or the overrides)."""
        m = y.size
        if m == 0:
            return
        g, u = self.rng.standard_normal((2, m)), self.rng.random((6, m))
        rec = np.empty((len(_NUCLEI_FIELDS), m), np.float32)
        rec[0], rec[1] = y, x
        rec[2] = self.px((kind.length if length is None else length) * np.exp(kind.pleo * g[0])) / 2
        rec[3] = rec[2] * np.clip((kind.aspect if aspect is None else aspect) * np.exp(0.08 * g[1]), 0.15, 1)
        rec[4] = np.pi * u[0] if angle is None else angle
        rec[5] = (kind.dens if dens is None else dens) * (0.85 + 0.3 * u[1])
        rec[6], rec[7] = kind.vesic, kind.coarse
        rec[8] = np.where(u[2] < kind.p_nucleolus, self.px(kind.nucleolus) * (0.8 + 0.45 * u[3]), 0.0)
        rec[9], rec[10] = (u[4] - 0.5) * 0.6 * rec[2], (u[5] - 0.5) * 0.6 * rec[2]
        rec[11] = "bgs".index(owner)
        self.nuc.append(rec)

    def ring_nuclei(self, owner: str, shape: _Shape | None, depth: float, spacing: float, kind: Nuclei,
                    *, tangential: bool = False, **over: float) -> None:
        """A row of nuclei ``depth`` px inside the outline, ``spacing`` px apart, long axes radial or
        tangential. Rows are queued and drawn together by :meth:`flush_rings` (far fewer calls)."""
        if shape is not None:
            key = (owner, id(kind), tangential, tuple(sorted(over.items())))
            self._rings.setdefault(key, (kind, []))[1].append((shape, depth, spacing))

    def flush_rings(self) -> None:
        rng = self.rng
        for (owner, _, tangential, over), (kind, rows) in self._rings.items():
            m = np.array([max(3, int(2 * np.pi * max(sh.r - dep, 1.0) / sp)) for sh, dep, sp in rows])
            ring = np.repeat(np.arange(len(rows)), m)
            j = np.arange(ring.size) - np.repeat(np.cumsum(m) - m, m)
            u = rng.random((3, ring.size))
            phase = rng.uniform(0, 2 * np.pi, len(rows))
            th = ((j + 0.4 * u[0] - 0.2) * (2 * np.pi / m[ring]) + phase[ring]).astype(np.float32)
            harm = np.zeros((len(rows), max(len(sh.harm) for sh, _, _ in rows), 3), np.float32)
            for i, (sh, _, _) in enumerate(rows):
                harm[i, : len(sh.harm)] = sh.harm
            h = harm[ring]  # (N, H, 3): k, amplitude, phase
            cy, cx, r, depth = (np.array([v for v in col], np.float32) for col in
                                zip(*[(sh.cy, sh.cx, sh.r, dep) for sh, dep, _ in rows], strict=True))
            rad = r[ring] * (1 + (h[..., 1] * np.cos(h[..., 0] * th[:, None] + h[..., 2])).sum(1))
            rad -= depth[ring] * (0.9 + 0.2 * u[1])
            ok = rad > 0
            ang = th + (np.pi / 2 if tangential else 0.0) + 0.5 * (u[2] - 0.5)
            self.add_nuclei(owner, (cy[ring] + rad * np.sin(th))[ok], (cx[ring] + rad * np.cos(th))[ok], kind,
                            ang[ok], **dict(over))
        self._rings = {}

    def fill_nuclei(self, owner: str, where: np.ndarray, spacing: float, kind: Nuclei,
                    origin: tuple[int, int] = (0, 0)) -> None:
        """Nuclei on a jittered grid wherever ``where`` (a box at ``origin``) exceeds 0.5."""
        y, x = grid(self.rng, where.shape[0], where.shape[1], spacing)
        keep = at(where, y, x) > 0.5
        self.add_nuclei(owner, y[keep] + origin[0], x[keep] + origin[1], kind)

    def render_nuclei(self, fine: np.ndarray, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Hematoxylin and eosin OD of all nuclei: soft ellipses, darker rim (vesicular), chromatin
        texture from ``fine`` noise, nucleoli; stamped in size buckets and summed with bincount."""
        n = self.n
        self.flush_rings()
        if not self.nuc:
            return self.zeros(), self.zeros()
        nu = dict(zip(_NUCLEI_FIELDS, np.concatenate(self.nuc, axis=1), strict=True))
        y, x, a = nu["y"], nu["x"], nu["a"]
        keep = (y > -a) & (y < n + a) & (x > -a) & (x < n + a)
        keep &= at(self.lumen["b"] + self.lumen["g"], y, x) < 0.5
        if region is not None:
            inside = at(region, y, x) > 0.5
            keep &= np.where(nu["owner"] == 1, inside, np.where(nu["owner"] == 0, ~inside, True))
        nu = {f: v[keep] for f, v in nu.items()}
        if not keep.any():
            return self.zeros(), self.zeros()
        ks = 2 * np.ceil(nu["a"] + 0.75).astype(int) + 1
        order = np.argsort(ks, kind="stable")
        nu, ks = {f: v[order] for f, v in nu.items()}, ks[order]
        flat = fine.ravel()
        idx_h, val_h = [], []
        edges = np.flatnonzero(np.diff(ks)) + 1
        for lo, hi in zip([0, *edges], [*edges, ks.size], strict=True):  # one window size per bucket
            sel = {f: nu[f][lo:hi, None, None] for f in ("ang", "a", "b", "dens", "vesic", "coarse")}
            idx, dy, dx, ok = self._stamp(nu["y"][lo:hi], nu["x"][lo:hi], int(ks[lo]))
            c, s = np.cos(sel["ang"]), np.sin(sel["ang"])
            u, v = (dx * c + dy * s) / sel["a"], (dy * c - dx * s) / sel["b"]
            rho2 = u * u + v * v
            edge = np.clip((1 - np.sqrt(rho2)) * sel["b"] + 0.5, 0, 1)
            h = edge * sel["dens"] * (1 - sel["vesic"] * np.clip(1 - rho2, 0, 1))
            ok &= edge > 0
            idx = idx[ok]
            idx_h.append(idx)
            val_h.append(h[ok] * (1 + sel["coarse"].ravel()[ok.nonzero()[0]] * flat[idx]))
        od_h = np.bincount(np.concatenate(idx_h), np.concatenate(val_h), minlength=n * n)
        od_e = 0.25 * od_h  # nuclei are stained by a little eosin too (purple rather than blue)
        has = nu["nl"] > 0
        if has.any():  # nucleoli: small eosinophilic (magenta) dots
            r = nu["nl"][has] / 2
            idx, dy, dx, ok = self._stamp(nu["y"][has] + nu["nly"][has], nu["x"][has] + nu["nlx"][has],
                                          2 * int(np.ceil(r.max())) + 3)
            dot = np.clip(r[:, None, None] - np.sqrt(dy * dy + dx * dx) + 0.5, 0, 1)
            dots = np.bincount(idx[ok], dot[ok], minlength=n * n)
            od_h += 0.35 * dots
            od_e += 0.9 * dots
        return (np.minimum(od_h, 2.0).reshape(n, n).astype(np.float32),
                np.minimum(od_e, 1.2).reshape(n, n).astype(np.float32))


def pack(rng: np.random.Generator, dist: np.ndarray, q: int, tries: int, r_range: tuple[float, float],
          gap: tuple[float, float], fit: float, margin: float = 0.0,
          taken: Sequence[tuple[float, float, float]] = ()) -> list[tuple[float, float, float]]:
    """Greedy random packing of disks (cy, cx, r) px. Centres where ``dist`` (a distance map on a grid
    of ``q`` px cells, in px) >= fit * r + margin; at least ``gap`` px (< 0: overlapping, fused) apart."""
    cand = np.flatnonzero(dist.ravel() >= fit * r_range[0] + margin)
    if cand.size == 0 or tries <= 0:
        return []
    w = dist.shape[1]
    picks = rng.choice(cand, size=tries)
    u = rng.random((4, tries))
    cy, cx = (picks // w + u[0]) * q, (picks % w + u[1]) * q
    radii = np.minimum(r_range[0] + (r_range[1] - r_range[0]) * u[2], (dist.flat[picks] - margin) / fit)
    gaps = gap[0] + (gap[1] - gap[0]) * u[3]
    placed = [tuple(map(float, t)) for t in taken]
    out = []
    for y, x, r, g in zip(cy.tolist(), cx.tolist(), radii.tolist(), gaps.tolist(), strict=True):
        if r < r_range[0]:
            continue
        # plain floats: a handful of disks, so a Python loop beats array calls here
        if any((y - oy) ** 2 + (x - ox) ** 2 < (o + r + g) ** 2 and o + r + g > 0 for oy, ox, o in placed):
            continue
        placed.append((y, x, r))
        out.append((y, x, r))
    return out
