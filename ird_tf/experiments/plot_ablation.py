"""``python -m ird_tf.experiments.plot_ablation``: see :mod:`ird_tf.experiments.sweep.ablation_plot`."""

import sys

from ird_tf.experiments.sweep.ablation_plot import main

if __name__ == "__main__":
    sys.exit(main())
