"""The methods of the book, each following the Detector contract (:mod:`adlearn.methods.base`).

``METHODS`` maps the command-line name of each method to its class.
"""

from adlearn.methods.anogan import AnoGAN
from adlearn.methods.base import Detector, Prediction, check_images
from adlearn.methods.draem import DRAEM

METHODS: dict[str, type[Detector]] = {"anogan": AnoGAN, "draem": DRAEM}

__all__ = ["METHODS", "AnoGAN", "DRAEM", "Detector", "Prediction", "check_images"]
