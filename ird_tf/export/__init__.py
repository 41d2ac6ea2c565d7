"""Export for TensorFlow Serving: a versioned SavedModel whose signatures take Student-magnification
images, high-magnification patches or encoded files (one input contract, ``InputView.prepare``)."""

from ird_tf.export.serving import (
    BYTES_SIGNATURE,
    DEFAULT_SIGNATURE,
    HIGH_SIGNATURE,
    export_for_serving,
    find_export,
)

__all__ = ["BYTES_SIGNATURE", "DEFAULT_SIGNATURE", "HIGH_SIGNATURE", "export_for_serving", "find_export"]
