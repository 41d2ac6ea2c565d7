"""``python -m ird_tf.experiments.label_free``: see :mod:`ird_tf.experiments.label_free.cli`."""

import sys

from ird_tf.experiments.label_free.cli import main

sys.exit(main())
