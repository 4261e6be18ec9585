"""adlearn: the companion package of the adlearn book on visual anomaly detection.

The chapters import the heavy pieces from here: data sets (``adlearn.data``),
anomaly simulation (``adlearn.simulation``), layers and losses (``adlearn.nn``),
the methods (``adlearn.methods``), metrics, visualisation and the shared
training loop.
"""

__version__ = "0.1.0"

from adlearn.profiles import PROFILE_NAMES, current_profile, profile_settings
from adlearn.runtime import describe_run, pick_device, seed_everything

__all__ = [
    "PROFILE_NAMES",
    "__version__",
    "current_profile",
    "describe_run",
    "pick_device",
    "profile_settings",
    "seed_everything",
]
