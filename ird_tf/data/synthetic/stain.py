"""The stain model: what all patches of a slide share (``SlideStyle``: the H&E stain vectors, drawn
around Ruifrok & Johnston's, stain amounts and illumination, plus the patient's tissue traits) and
Beer-Lambert mixing of hematoxylin and eosin optical densities into RGB. Apart from the drawing, so
that the colour model reads on its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Ruifrok & Johnston (2001) optical-density vectors (R, G, B) of hematoxylin and eosin.
RUIFROK_HE = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
RUIFROK_HE = RUIFROK_HE / np.linalg.norm(RUIFROK_HE, axis=1, keepdims=True)


@dataclass(frozen=True)
class SlideStyle:
    """What all patches of one slide share: the stain (per slide) and tissue traits (per patient)."""

    stain: np.ndarray  # (2, 3) unit OD vectors, rows hematoxylin and eosin
    amount: tuple[float, float]  # multipliers of the H and E optical densities
    white: float  # background intensity (illumination), 0..255
    nuclear_scale: float  # nuclei sizes x this (patient trait)
    gland_scale: float  # gland sizes x this (patient trait)


def random_style(rng: np.random.Generator, patient_rng: np.random.Generator | None = None) -> SlideStyle:
    """A slide's stain drawn around the Ruifrok vectors, and a patient's traits (from ``rng`` too if
    no ``patient_rng``)."""
    patient_rng = rng if patient_rng is None else patient_rng
    stain = np.abs(RUIFROK_HE + rng.normal(0.0, 0.035, (2, 3)))
    stain /= np.linalg.norm(stain, axis=1, keepdims=True)
    amount = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.75, 1.25)))
    traits = np.exp(patient_rng.normal(0.0, (0.04, 0.08)))
    return SlideStyle(stain, amount, float(rng.uniform(235.0, 252.0)), float(traits[0]), float(traits[1]))


def beer_lambert(od_h: np.ndarray, od_e: np.ndarray, style: SlideStyle, noise: np.ndarray) -> np.ndarray:
    """RGB uint8 from H and E optical densities: I_c = I0 exp(-(OD_H h_c + OD_E e_c)) + sensor noise."""
    stain = (style.stain * np.array(style.amount)[:, None]).astype(np.float32)
    image = np.empty((*od_h.shape, 3), np.uint8)
    for c in range(3):
        img = np.exp(-(od_h * stain[0, c] + od_e * stain[1, c] + np.float32(0.01)))
        img *= np.float32(style.white)
        img += noise[c] * np.float32(1.2) + np.float32(0.5)
        image[..., c] = np.clip(img, 0, 255)
    return image
