"""``python -m ird_tf.experiments.sweep``: see :mod:`ird_tf.experiments.sweep.cli`."""

import sys

from ird_tf.experiments.sweep.cli import main

sys.exit(main())
