"""The methods of the book, each following the Detector contract (:mod:`adlearn.methods.base`)."""

from adlearn.methods.base import Detector, Prediction, check_images

__all__ = ["Detector", "Prediction", "check_images"]
