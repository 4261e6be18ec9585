"""Run a detector over a test set: ``evaluate``, ``collect_predictions`` and ``compute_metrics``.

:func:`evaluate` runs a :class:`~adlearn.methods.base.Detector` over a data set
and returns the book's numbers; :func:`collect_predictions` keeps the scores and
maps (as a :class:`TestPredictions`) for plots, and :func:`compute_metrics`
turns them into the same numbers. The metrics themselves, computed on plain
arrays and tensors, live in :mod:`adlearn.metrics`.

Example::

    results = evaluate(detector, test_set)
    results["image_auroc"], results["pixel_auroc"], results["aupro"]
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from adlearn.metrics import _check_binary, aupro, average_precision, f1_max, image_auroc, pixel_auroc

__all__ = ["TestPredictions", "collect_predictions", "compute_metrics", "evaluate"]


@dataclass
class TestPredictions:
    """What a detector said about every item of a test set, kept for metrics and plots.

    Attributes:
        scores: ``[N]`` image scores.
        maps: ``[N, H, W]`` anomaly maps (float32).
        labels: ``[N]`` 0 good / 1 defective.
        masks: ``[N, H, W]`` bool ground truth.
        defect_types: one name per item (``"good"`` for good ones).
        paths: one path per item (empty strings when the data set has none).
        images: ``[N, C, H, W]`` inputs when collected with ``keep_images=True``, else ``None``.
    """

    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    defect_types: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    images: np.ndarray | None = None

    __test__ = False  # a data container, not a pytest test class despite its name

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _predict_takes_batch_size(detector: Any) -> bool:
    """Whether ``detector.predict`` has a ``batch_size`` keyword (and so batches by itself)."""
    try:
        parameters = inspect.signature(detector.predict).parameters
    except (TypeError, ValueError):  # no signature to read: call it the old way
        return False
    parameter = parameters.get("batch_size")
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _checked_prediction(prediction: Any, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``[B]`` and maps ``[B, H, W]`` of one ``predict`` call, checked against the ``[B, H, W]`` masks."""
    if tuple(prediction.maps.shape[-2:]) != masks.shape[-2:]:
        raise ValueError(
            f"the detector's maps are {tuple(prediction.maps.shape[-2:])} but the masks are "
            f"{masks.shape[-2:]}; predict must return maps at input resolution."
        )
    if prediction.scores.shape[0] != masks.shape[0]:
        raise ValueError(f"predict was given {masks.shape[0]} images but returned {prediction.scores.shape[0]} scores.")
    return prediction.scores.detach().float().cpu().numpy(), prediction.maps.detach().float().cpu().numpy()[:, 0]


def collect_predictions(
    detector: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    device: Any = None,
    keep_images: bool = False,
    progress: bool = False,
) -> TestPredictions:
    """Run ``detector.predict`` over ``dataset`` and keep everything.

    A detector whose ``predict`` takes ``batch_size`` (``predict(images, *, batch_size)``)
    batches by itself: it gets the whole set in one call,
    ``detector.predict(images, batch_size=batch_size)``, with the images on the
    CPU (or on ``device`` when that is given) and moves each batch where its
    model is. Any other detector (``predict(images)``) is called once per batch
    of ``batch_size`` images, sent to ``device``.

    Args:
        detector: anything with ``predict(images) -> Prediction`` (an adlearn ``Detector``).
        dataset: a map-style data set of dicts with ``image`` ``[C, H, W]``, ``mask``
            ``[1, H, W]`` and ``label`` (``defect_type`` and ``path`` are kept when present).
        batch_size: images per batch, read from the data set and scored at a time.
        device: where batches are sent; defaults to ``detector.device`` (where ``fit`` put the model).
        keep_images: also keep the input images (memory: N x C x H x W floats).
        progress: show a progress bar.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if len(dataset) == 0:
        raise ValueError("dataset is empty; nothing to evaluate.")
    from tqdm.auto import tqdm  # imported here: evaluation runs in places without a progress bar

    whole_set = _predict_takes_batch_size(detector)
    target = torch.device(device) if device is not None else getattr(detector, "device", torch.device("cpu"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    scores, maps, labels, masks, images = [], [], [], [], []
    defect_types: list[str] = []
    paths: list[str] = []
    for batch in tqdm(loader, desc="load" if whole_set else "predict", disable=not progress, leave=False):
        missing = {"image", "mask", "label"} - set(batch)
        if missing:
            raise KeyError(f"dataset items must be dicts with 'image', 'mask' and 'label'; missing {sorted(missing)}.")
        batch_images = batch["image"].float()
        batch_masks = _check_binary(batch["mask"], "dataset masks")[:, 0]
        if not whole_set:
            batch_scores, batch_maps = _checked_prediction(detector.predict(batch_images.to(target)), batch_masks)
            scores.append(batch_scores)
            maps.append(batch_maps)
        labels.append(np.asarray(batch["label"]).astype(np.int64).reshape(-1))
        masks.append(batch_masks)
        size = batch_images.shape[0]
        defect_types.extend(batch.get("defect_type", [""] * size))
        paths.extend(batch.get("path", [""] * size))
        if keep_images or whole_set:
            images.append(batch_images)
    all_masks = np.concatenate(masks)
    if whole_set:
        all_images = torch.cat(images)
        if device is not None:
            all_images = all_images.to(target)
        all_scores, all_maps = _checked_prediction(detector.predict(all_images, batch_size=batch_size), all_masks)
        scores, maps = [all_scores], [all_maps]
    return TestPredictions(
        scores=np.concatenate(scores),
        maps=np.concatenate(maps),
        labels=np.concatenate(labels),
        masks=all_masks,
        defect_types=[str(name) for name in defect_types],
        paths=[str(path) for path in paths],
        images=torch.cat(images).numpy() if keep_images else None,
    )


def compute_metrics(predictions: TestPredictions, *, fpr_limit: float = 0.3) -> dict[str, float]:
    """The book's numbers from collected predictions.

    Returns:
        ``image_auroc``, ``image_f1_max``, ``pixel_auroc``, ``pixel_ap`` and ``aupro``.
        The pixel metrics are NaN (with a warning) when no mask marks any defect
        pixel, e.g. a data set with image labels only.
    """
    results = {
        "image_auroc": image_auroc(predictions.scores, predictions.labels),
        "image_f1_max": float(f1_max(predictions.scores, predictions.labels)),
    }
    if predictions.masks.any():
        results["pixel_auroc"] = pixel_auroc(predictions.maps, predictions.masks)
        results["pixel_ap"] = average_precision(predictions.maps, predictions.masks)
        results["aupro"] = aupro(predictions.maps, predictions.masks, fpr_limit=fpr_limit)
    else:
        warnings.warn("no mask marks a defect pixel; pixel AUROC, pixel AP and AUPRO are NaN.", stacklevel=2)
        results.update(pixel_auroc=math.nan, pixel_ap=math.nan, aupro=math.nan)
    return results


def evaluate(
    detector: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    device: Any = None,
    fpr_limit: float = 0.3,
    progress: bool = False,
) -> dict[str, float]:
    """Score a test set with a detector: :func:`collect_predictions` then :func:`compute_metrics`.

    ``batch_size`` is passed on to ``detector.predict(images, batch_size=batch_size)``
    when ``predict`` takes it; otherwise ``predict(images)`` is called once per
    batch of that many images. Use the two steps separately when the scores
    and maps are wanted for plots.

    Returns:
        ``image_auroc``, ``image_f1_max``, ``pixel_auroc``, ``pixel_ap`` and ``aupro`` (see :func:`compute_metrics`).

    Example::

        results = evaluate(detector, test_set)
        results["image_auroc"], results["pixel_auroc"], results["aupro"]
    """
    predictions = collect_predictions(detector, dataset, batch_size=batch_size, device=device, progress=progress)
    return compute_metrics(predictions, fpr_limit=fpr_limit)
