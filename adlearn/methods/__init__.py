"""The methods of the book, each following the Detector contract (:mod:`adlearn.methods.base`).

Every method registers itself by name: ``available()`` lists the names,
``get(name)`` returns the class, so the command line, the benchmarks and the
notebooks drive any method without a hand-written list.
"""

from adlearn.methods.base import (
    Detector,
    DetectorConfig,
    Prediction,
    TrainingPlan,
    available,
    check_images,
    get,
    register,
)
from adlearn.methods.anogan import AnoGAN  # noqa: E402  (importing a method registers it)
from adlearn.methods.draem import DRAEM  # noqa: E402
from adlearn.methods.feature_knn import FeatureKNN  # noqa: E402
from adlearn.methods.cutpaste import CutPaste  # noqa: E402
from adlearn.methods.memseg import MemSeg  # noqa: E402
from adlearn.methods.efficientad import EfficientAD  # noqa: E402

__all__ = [
    "AnoGAN", "CutPaste", "DRAEM", "Detector", "DetectorConfig", "EfficientAD", "FeatureKNN", "MemSeg", "Prediction", "TrainingPlan",
    "available", "check_images", "get", "register",
]
