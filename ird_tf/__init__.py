"""ird_tf: inter-resolution knowledge distillation for digital pathology (TensorFlow 2 / Keras 3).

Layers, each importing only those before it:
data -> models -> attention / losses -> training -> evaluation / export -> experiments (CLI).
"""

__version__ = "0.1.0"
