"""Models bundled with npquant (definitions in npquant.nn, weights in npquant/data)."""

from .digits import FUSE_GROUPS as DIGITS_FUSE_GROUPS
from .digits import DigitsCNN, digits_cnn

__all__ = ["DigitsCNN", "digits_cnn", "DIGITS_FUSE_GROUPS"]
