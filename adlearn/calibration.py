"""Calibration on held-out normal images: one scale per model for its anomaly maps.

Every detector is calibrated after training on normal images it did not train
on (:meth:`adlearn.methods.base.Detector.calibrate`); what it measures is saved
with the model. :class:`MapNormalizer` turns those measurements into the colour
scale of the book's heat maps, so a good image looks good on every figure
instead of being stretched to full red by per-image min-max scaling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ArrayLike = Any


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


class MapNormalizer:
    """One colour scale per model, fitted on the anomaly maps of held-out normal images.

    The ``low_quantile`` of the normal map values becomes 0 (the bottom of the
    colour map) and the ``high_quantile`` becomes ``normal_ceiling``: normal
    images stay in the lower part of the scale, and a defect shows red only when
    it scores well above anything seen on normal images.

    Args:
        low_quantile: quantile of normal map values drawn as 0.
        high_quantile: quantile of normal map values drawn at ``normal_ceiling``.
        normal_ceiling: where on the ``[0, 1]`` scale the ``high_quantile`` lands.

    Example::

        normalizer = MapNormalizer().fit(collect_predictions(detector, held_out_normals).maps)
        plot_detection_grid(images, masks, maps, normalizer=normalizer)
    """

    def __init__(self, low_quantile: float = 0.5, high_quantile: float = 0.999, normal_ceiling: float = 0.5) -> None:
        if not 0 <= low_quantile < high_quantile <= 1:
            raise ValueError(
                f"need 0 <= low_quantile < high_quantile <= 1, got {low_quantile} and {high_quantile}."
            )
        if not 0 < normal_ceiling <= 1:
            raise ValueError(f"normal_ceiling must be in (0, 1], got {normal_ceiling}.")
        self.low_quantile = low_quantile
        self.high_quantile = high_quantile
        self.normal_ceiling = normal_ceiling
        self.low: float | None = None
        self.high: float | None = None

    def fit(self, normal_maps: ArrayLike) -> MapNormalizer:
        """Fit on maps of normal images (any shape, e.g. ``[N, 1, H, W]``); returns ``self``."""
        values = _numpy(normal_maps).astype(np.float64, copy=False).ravel()
        if values.size == 0:
            raise ValueError("normal_maps is empty; fit the normalizer on maps of held-out normal images.")
        if not np.isfinite(values).all():
            raise ValueError("normal_maps contains NaN or infinite values.")
        self.low, self.high = (float(q) for q in np.quantile(values, [self.low_quantile, self.high_quantile]))
        return self

    @classmethod
    def from_bounds(cls, low: float, high: float, *, low_quantile: float = 0.5, high_quantile: float = 0.999,
                    normal_ceiling: float = 0.5) -> MapNormalizer:
        """A normalizer from quantiles already computed (e.g. the ones a detector saved when it was calibrated)."""
        normalizer = cls(low_quantile, high_quantile, normal_ceiling)
        low, high = float(low), float(high)
        if not (np.isfinite(low) and np.isfinite(high)) or high < low:
            raise ValueError(f"need finite bounds with low <= high, got {low} and {high}.")
        normalizer.low, normalizer.high = low, high
        return normalizer

    @classmethod
    def from_detector(cls, detector: Any, normal_dataset: Any, *, batch_size: int = 16, **kwargs: Any) -> MapNormalizer:
        """Fit on the maps ``detector`` gives for ``normal_dataset`` (held-out good images, never the test set)."""
        from adlearn.evaluation import collect_predictions

        maps = collect_predictions(detector, normal_dataset, batch_size=batch_size).maps
        return cls(**kwargs).fit(maps)

    def _check_fitted(self) -> tuple[float, float]:
        if self.low is None or self.high is None:
            raise RuntimeError("MapNormalizer is not fitted; call fit(normal_maps) first.")
        return self.low, self.high

    @property
    def vmin(self) -> float:
        """Raw map value drawn as 0."""
        return self._check_fitted()[0]

    @property
    def vmax(self) -> float:
        """Raw map value drawn as 1 (full red)."""
        low, high = self._check_fitted()
        spread = max(high - low, 1e-12)  # constant normal maps still give a usable scale
        return low + spread / self.normal_ceiling

    def __call__(self, maps: ArrayLike) -> np.ndarray:
        """Maps scaled to ``[0, 1]`` (clipped) on this model's scale, as float32 NumPy."""
        vmin, vmax = self.vmin, self.vmax
        return np.clip((_numpy(maps).astype(np.float32) - vmin) / (vmax - vmin), 0.0, 1.0)

    def __repr__(self) -> str:
        fitted = f"low={self.low:.4g}, high={self.high:.4g}" if self.low is not None else "not fitted"
        return f"MapNormalizer({fitted}, quantiles=({self.low_quantile}, {self.high_quantile}))"
