"""Where every random draw comes from. Patch k of slide s of patient p uses
``default_rng([seed, p, s, k])``; stains, patient traits, labels, the split, the unlabeled pool and the
preview use separate ``SeedSequence`` streams (``seq`` with a ``TAG_*`` spawn key). In one place so the
streams stay apart and the files do not depend on the number of workers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ird_tf.config import SyntheticConfig
from ird_tf.data.synthetic.stain import SlideStyle, random_style

# spawn keys of the seed streams other than the patches' (see seq)
TAG_PATIENT, TAG_SLIDE, TAG_SPLIT, TAG_LABELS, TAG_UNLABELED, TAG_UNLABELED_SLIDE, TAG_PREVIEW = (
    range(1, 8))


def seq(entropy: Sequence[int], tag: int) -> np.random.SeedSequence:
    """A seed stream apart from the patch streams ``default_rng([seed, patient, slide, index])``."""
    return np.random.SeedSequence([int(e) for e in entropy], spawn_key=(tag,))


def slide_style(cfg: SyntheticConfig, patient: int, slide: int) -> SlideStyle:
    return random_style(np.random.default_rng(seq([cfg.seed, patient, slide], TAG_SLIDE)),
                        np.random.default_rng(seq([cfg.seed, patient], TAG_PATIENT)))


def patch_rng(cfg: SyntheticConfig, patient: int, slide: int, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, patient, slide, index])
