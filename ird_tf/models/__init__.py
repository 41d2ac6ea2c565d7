"""Models: backbones with a named feature tap and the flat functional classifier built on them.

Importing this package registers :class:`ImagePreprocess`, which ``keras.models.load_model`` needs to
read a saved classifier."""

from ird_tf.errors import WeightsError
from ird_tf.models.backbones import BACKBONES, ImagePreprocess, build_backbone, get_backbone
from ird_tf.models.classifier import build_classifier, load_initial_weights, logits_model

__all__ = [
    "BACKBONES", "ImagePreprocess", "WeightsError", "build_backbone", "build_classifier", "get_backbone",
    "load_initial_weights", "logits_model",
]
