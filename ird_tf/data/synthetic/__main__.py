"""``python -m ird_tf.data.synthetic``: runs the command line of ``cli``."""

import sys

from ird_tf.data.synthetic.cli import main

if __name__ == "__main__":
    sys.exit(main())
