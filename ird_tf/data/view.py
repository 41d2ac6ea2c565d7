"""The input view of a model: which image of a batch it reads and how that image is made.

A Teacher reads the high-magnification patch (``hr``). A Student reads the low-magnification view
(``lr``) of the same patch: block mean over ``factor x factor`` pixels (an exact area downsampling),
then, in ``upsampled`` mode (the paper), bilinearly resized back to the Teacher's size; in ``native``
mode it keeps the small image, so its compute falls with the square of the factor.

:class:`InputView` is derived once from the configuration and passed down: the pipeline, training,
evaluation, export and slide inference all ask it instead of re-deriving sizes from the mode. Importing
this module does not import TensorFlow (run bookkeeping uses it); :meth:`InputView.from_high` does.

One input contract (:meth:`InputView.prepare`): a model's input comes either from the
high-magnification patch (``"high"``, ``image_size`` px) or from an image already at the view's own
magnification (``"native"``, ``native_size`` px: a slide level, a low-magnification scan), and the two
give the same numbers for the same tissue. Serving and slide inference call it; nothing else
re-implements it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ird_tf.errors import ConfigError

if TYPE_CHECKING:
    from ird_tf.config import DataConfig

KEYS = ("hr", "lr")
MODES = ("upsampled", "native")


@dataclass(frozen=True)
class InputView:
    """``key``: the batch entry the model reads; ``image_size``: side of the high-magnification patch
    every view derives from; ``factor``: teacher magnification / this view's; ``mode``: see above."""

    key: str
    image_size: int
    factor: int = 1
    mode: str = "upsampled"

    def __post_init__(self) -> None:
        if self.key not in KEYS:
            raise ConfigError(f"input view key={self.key!r}: expected one of {list(KEYS)}")
        if self.mode not in MODES:
            raise ConfigError(f"input view mode={self.mode!r}: expected one of {list(MODES)}")
        if int(self.factor) != self.factor or self.factor < 1:
            raise ConfigError(f"input view factor={self.factor!r}: expected a whole number >= 1")
        if self.image_size < 1 or self.image_size % self.factor:
            raise ConfigError(f"input view image_size={self.image_size!r}: expected a positive size "
                              f"divisible by the factor {self.factor}")

    @classmethod
    def teacher(cls, data: DataConfig) -> InputView:
        """The Teacher's view: the high-magnification patch itself."""
        return cls("hr", data.image_size)

    @classmethod
    def student(cls, data: DataConfig) -> InputView:
        """The Student's view at ``data.student_mag`` in ``data.mode``."""
        return cls("lr", data.image_size, data.factor, data.mode)

    @classmethod
    def of(cls, data: DataConfig, role: str) -> InputView:
        """``role`` "teacher" or anything a Student is ("student", "distill", "alone")."""
        return cls.teacher(data) if role == "teacher" else cls.student(data)

    @property
    def is_teacher(self) -> bool:
        return self.key == "hr"

    @property
    def native_size(self) -> int:
        """Side of the image at this view's own magnification."""
        return self.image_size // self.factor

    @property
    def size(self) -> int:
        """Side of the image the model reads."""
        return self.image_size if self.mode == "upsampled" else self.native_size

    def from_high(self, hr: Any) -> Any:
        """This view of ``hr`` float32 ``[B, S, S, 3]`` (S = ``image_size``): block mean, then
        bilinear back up in ``upsampled`` mode. The one implementation of the Student's input."""
        import tensorflow as tf

        if self.factor == 1:
            return hr
        lr = tf.nn.avg_pool2d(hr, ksize=self.factor, strides=self.factor, padding="VALID")
        if self.mode == "upsampled":
            return tf.image.resize(lr, [self.image_size, self.image_size], method="bilinear")
        return lr

    def from_native(self, images: Any) -> Any:
        """This view of images already at this view's magnification, native size ``[B, n, n, 3]``
        (n = :attr:`native_size`; a slide level or a low-magnification scan): bilinear up to
        ``image_size`` in ``upsampled`` mode, as is otherwise. ``from_native`` of the block mean of a
        patch equals ``from_high`` of the patch (the same ops on the same numbers)."""
        import tensorflow as tf

        if self.factor == 1 or self.mode == "native":
            return images
        return tf.image.resize(images, [self.image_size, self.image_size], method="bilinear")

    def source_of(self, height: int, width: int) -> str:
        """Which input an image of ``height x width`` is: ``"high"`` (``image_size``, the Teacher's
        magnification) or ``"native"`` (:attr:`native_size`, this view's magnification). Any other
        size is a :class:`ConfigError`: sizes alone decide, nothing is stretched or guessed."""
        if height != width:
            raise ConfigError(f"image of {height}x{width} px: expected a square patch")
        if height == self.image_size:
            return "high"
        if height == self.native_size:
            return "native"
        raise ConfigError(f"image of {height}x{width} px: expected {self.image_size}x{self.image_size} "
                          f"(high magnification) or {self.native_size}x{self.native_size} (this view's "
                          "magnification)")

    def prepare(self, images: Any, source: str) -> Any:
        """The model's input from float32 images in [0, 1]: ``source`` ``"high"`` (the
        high-magnification patch, :meth:`from_high`) or ``"native"`` (already at this view's
        magnification, :meth:`from_native`). The one input contract of training, serving and slides."""
        if source == "high":
            return self.from_high(images)
        if source == "native":
            return self.from_native(images)
        raise ConfigError(f"input source={source!r}: expected 'high' or 'native'")


__all__ = ["InputView", "KEYS", "MODES"]
