"""``python -m ird_tf.experiments.slide``: runs :func:`ird_tf.experiments.slide.main`."""

import sys

from ird_tf.experiments.slide import main

if __name__ == "__main__":
    sys.exit(main())
