"""Synthetic H&E prostate benchmark: the embedded default dataset (no download).

Why: the methods compare a 10x teacher with students at 2.5x-0.625x, so the data carries Gleason
evidence at two scales. *Fine* evidence (nuclear size and chromatin, nucleoli, the basal cell layer of
benign glands, small cribriform lumens) is a few micrometres wide and fades at 2.5x and below. *Coarse*
evidence (gland size, spacing, fusion, solid sheets, necrosis) survives downsampling but is made
ambiguous on purpose by benign and malignant mimics that only fine detail resolves: atrophic benign
glands look like G3, chronic inflammation (small dark lymphocytes) like solid G5, large G3 glands like
benign ones, solid G5 nests like G4 nests.

How a patch is drawn: lengths are in micrometres, µm/px = 10 / magnification (10x ≈ 1 µm/px; nuclei
6-12 µm). Stroma (eosin fibres, spindle nuclei), epithelium, lumens, necrosis and nuclei are painted as
hematoxylin and eosin optical densities and mixed per RGB channel by Beer-Lambert with the Ruifrok &
Johnston stain vectors, perturbed per slide with per-slide stain amounts and illumination. A graded
patch (G3/G4/G5) holds its pattern in one random region of 20-70 % of the patch among benign glands and
stroma; its mask marks that region with the SICAPv2 value (3/4/5), 0 elsewhere; NC masks are all 0.
Each patch has a latent severity (class mean + noise) that sets nuclear size, pleomorphism, chromatin
and nucleoli. ``difficulty`` in [0, 1] widens that noise (neighbouring grades overlap) and raises the
rate of mimics.

Layout (SICAPv2's, so the same reader loads it)::

    images/P003-S01_0007.jpg   patient 3, slide 1, patch 7; slide id = prefix before the first "_"
    masks/P003-S01_0007.png    0 benign, 3/4/5 Gleason grade
    partition/Test/{Train,Test}.xlsx                          ~25 % of the patients held out
    partition/Validation/Val1..Val{folds}/{Train,Test}.xlsx   patient-disjoint folds of the others
    dataset.json               settings, version, counts; written last (marks a complete dataset)

Patch k of slide s of patient p comes from ``np.random.default_rng([seed, p, s, k])``; stains,
patient traits, labels and the split from separate seed streams, so files do not depend on the
number of workers.

Benchmark v1 = the ``SyntheticConfig`` defaults, fixed before any method was compared; never tune
them (or the drawing, ``GENERATOR_REVISION`` = 1) to make a method win: seed 2023, 24 patients x 2
slides x 24 patches = 1152 patches of 128 x 128 px at 10x (a 128 µm field), balanced classes (exact
quotas per slide, so every table is balanced), difficulty 0.5, 4 folds (6 test patients; validation
groups of 5/5/4/4 patients). Gland sizes sit at the small end of the physical range so that a 128 µm
field holds whole glands; nuclei, nucleoli and lumens are at physical size.

Command line: ``python -m ird_tf.data.synthetic --out DIR [--preview PNG] [--patients N ...]``.

Modules: ``stain`` (slide stain, Beer-Lambert), ``seeds`` (seed streams), ``noise`` (random fields),
``scene`` (a patch's layers and nuclei), ``gleason`` (tissue patterns), ``render`` (one patch),
``parallel`` (worker processes), ``dataset`` (files on disk, cache, preview), ``cli`` (command line).
"""

from ird_tf.data.synthetic.cli import main
from ird_tf.data.synthetic.dataset import (
    JPEG_QUALITY,
    TEST_FRACTION,
    config_hash,
    dataset_root,
    ensure_dataset,
    generate,
    generate_unlabeled,
    image_name,
    is_complete,
    patient_split,
    preview,
    slide_labels,
)
from ird_tf.data.synthetic.render import CLASSES, GENERATOR_REVISION, MASK_VALUES, block_mean, render_patch
from ird_tf.data.synthetic.seeds import patch_rng, slide_style
from ird_tf.data.synthetic.stain import RUIFROK_HE, SlideStyle, random_style

__all__ = [
    "CLASSES", "MASK_VALUES", "GENERATOR_REVISION", "RUIFROK_HE", "SlideStyle", "random_style", "slide_style",
    "patch_rng", "render_patch", "block_mean", "config_hash", "image_name", "slide_labels", "patient_split",
    "generate", "is_complete", "dataset_root", "ensure_dataset", "generate_unlabeled", "preview", "main",
    "JPEG_QUALITY", "TEST_FRACTION",
]
