"""``python -m ird_tf.experiments.figure_attention``: see :mod:`ird_tf.experiments.sweep.figure`."""

import sys

from ird_tf.experiments.sweep.figure import main

if __name__ == "__main__":
    sys.exit(main())
