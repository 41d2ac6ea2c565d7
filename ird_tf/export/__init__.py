"""Export for TensorFlow Serving: a versioned SavedModel with a float-image and an encoded-bytes signature."""

from ird_tf.export.serving import (
    BYTES_SIGNATURE,
    DEFAULT_SIGNATURE,
    export_for_serving,
    find_export,
    student_view,
)

__all__ = ["BYTES_SIGNATURE", "DEFAULT_SIGNATURE", "export_for_serving", "find_export", "student_view"]
