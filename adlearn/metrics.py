"""How good is a detector? Image AUROC, pixel AUROC, AUPRO and F1-max, computed on arrays.

Every metric takes NumPy arrays or torch tensors and returns a Python ``float``.
Higher scores and map values mean *more anomalous*; labels and masks are binary
(1 = defective).

* :func:`image_auroc` -- can the image score tell good from defective images?
* :func:`pixel_auroc` -- the same question asked of every pixel; dominated by big defects.
* :func:`aupro` -- area under the per-region-overlap curve up to a false-positive
  rate of ``fpr_limit`` (0.3), normalised to ``[0, 1]``: every connected defect
  region weighs the same, whatever its size (Bergmann et al., MVTec AD).
* :func:`f1_max` -- the best F1 over all thresholds (an optimistic, oracle threshold).
* :func:`average_precision` -- area under the precision-recall curve (DRÆM reports it per pixel).

All of them are exact (ties handled like scikit-learn and the MVTec AD evaluation
code) and vectorised: one sort, then cumulative sums, never a loop over thresholds.

:func:`image_auroc_by_defect_type` splits the image AUROC by defect type.

Running a :class:`~adlearn.methods.base.Detector` over a test set
(:func:`~adlearn.evaluation.evaluate`, :func:`~adlearn.evaluation.collect_predictions`,
:func:`~adlearn.evaluation.compute_metrics`, :class:`~adlearn.evaluation.TestPredictions`)
lives in :mod:`adlearn.evaluation`; those names can still be imported from here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage

if TYPE_CHECKING:  # adlearn.evaluation imports this module; only type checkers follow this import
    from adlearn.evaluation import TestPredictions

ArrayLike = Any  # np.ndarray | torch.Tensor | sequence of numbers

__all__ = [
    "aupro",
    "average_precision",
    "f1_curve",
    "f1_max",
    "image_auroc",
    "image_auroc_by_defect_type",
    "label_regions",
    "pixel_auroc",
    "pro_curve",
    "roc_curve",
    "trapezoid_area",
]


# --------------------------------------------------------------------------- input checks


def _to_numpy(values: ArrayLike, name: str) -> np.ndarray:
    """A NumPy view/copy of ``values`` (tensors are detached and moved to the CPU)."""
    if isinstance(values, torch.Tensor):
        values = values.detach()
        if values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()
        return values.cpu().numpy()
    try:
        return np.asarray(values)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(values).__name__}.") from error


def _check_scores(values: ArrayLike, name: str) -> np.ndarray:
    """Real-valued, finite scores as a NumPy array (float64 for integer input)."""
    array = _to_numpy(values, name)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    if array.size == 0:
        raise ValueError(f"{name} is empty.")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = "NaN" if np.isnan(array).any() else "infinite"
        raise ValueError(f"{name} contains {bad} values; every score must be a finite number.")
    return array


def _check_binary(values: ArrayLike, name: str) -> np.ndarray:
    """Binary labels/masks (0/1, ``False``/``True``, ``0.0``/``1.0``) as a bool array."""
    array = _to_numpy(values, name)
    if array.size == 0:
        raise ValueError(f"{name} is empty.")
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be binary (0 = normal, 1 = anomalous), got dtype {array.dtype}.")
    is_one = array == 1
    if not (is_one | (array == 0)).all():
        found = np.unique(array[~(is_one | (array == 0))])[:5]
        raise ValueError(
            f"{name} must be binary (0 = normal, 1 = anomalous), but it also holds {found.tolist()}; "
            "threshold soft masks first (e.g. mask > 0.5)."
        )
    return is_one


def _check_pair(scores: ArrayLike, labels: ArrayLike, score_name: str, label_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of the same shape, flattened, with both classes present."""
    score_array = _check_scores(scores, score_name)
    label_array = _check_binary(labels, label_name)
    if score_array.shape != label_array.shape:
        raise ValueError(
            f"{score_name} and {label_name} must have the same shape, "
            f"got {tuple(score_array.shape)} and {tuple(label_array.shape)}."
        )
    score_array, label_array = score_array.ravel(), label_array.ravel()
    positives = int(np.count_nonzero(label_array))
    if positives == 0 or positives == label_array.size:
        only = "anomalous (1)" if positives else "normal (0)"
        raise ValueError(
            f"{label_name} holds only {only} entries; this metric needs both normal and anomalous ones."
        )
    return score_array, label_array


def _check_maps_and_masks(maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps and ground-truth masks as ``[N, H, W]`` arrays of the same shape."""
    map_array = _check_scores(maps, "maps")
    mask_array = _check_binary(masks, "masks")
    if map_array.shape != mask_array.shape:
        raise ValueError(
            f"maps and masks must have the same shape ([N, 1, H, W], [N, H, W] or [H, W]), "
            f"got {tuple(map_array.shape)} and {tuple(mask_array.shape)}."
        )
    if map_array.ndim == 4 and map_array.shape[1] == 1:
        map_array, mask_array = map_array[:, 0], mask_array[:, 0]
    elif map_array.ndim == 2:
        map_array, mask_array = map_array[None], mask_array[None]
    elif map_array.ndim != 3:
        raise ValueError(f"maps must be [N, 1, H, W], [N, H, W] or [H, W], got shape {tuple(map_array.shape)}.")
    return map_array, mask_array


# --------------------------------------------------------------------------- ROC, AUROC, AP, F1


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based AUROC (Mann-Whitney U): P(score of a positive > score of a negative) + 0.5 P(tie).

    Sorting the two classes separately and counting with ``searchsorted`` needs
    no index array (``argsort`` would cost 8 bytes per pixel) and is several
    times faster than ranking all values together.
    """
    negatives = np.sort(scores[~labels])
    positives = np.sort(scores[labels])
    # for every positive: negatives strictly below it, and negatives below or equal
    below = np.searchsorted(negatives, positives, side="left").sum(dtype=np.int64)
    below_or_tied = np.searchsorted(negatives, positives, side="right").sum(dtype=np.int64)
    pairs = float(positives.size) * float(negatives.size)
    return float((int(below) + int(below_or_tied)) / 2 / pairs)


def image_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of image scores against image labels (equals scikit-learn's ``roc_auc_score``).

    Args:
        scores: ``[N]`` anomaly scores, higher = more anomalous.
        labels: ``[N]`` 0 (good) or 1 (defective); both must occur.

    Returns:
        The AUROC in ``[0, 1]``; 0.5 is chance, 1 a perfect ranking.
    """
    score_array, label_array = _check_pair(scores, labels, "scores", "labels")
    return _auroc(score_array, label_array)


def pixel_auroc(maps: ArrayLike, masks: ArrayLike) -> float:
    """AUROC over all pixels of all images: every pixel is one sample.

    Args:
        maps: anomaly maps ``[N, 1, H, W]``, ``[N, H, W]`` or ``[H, W]``.
        masks: ground truth of the same shape, 0 (normal) or 1 (defect).

    Returns:
        The pixel AUROC. Big defects hold most defect pixels, so they dominate it.
    """
    score_array, label_array = _check_pair(maps, masks, "maps", "masks")
    return _auroc(score_array, label_array)


def _tie_grouped_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (distinct scores, descending) with cumulative true and false positives at each.

    A sample counts as positive at threshold ``t`` when its score is ``>= t``.
    """
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # last position of each run of equal scores: all tied samples switch together
    group_ends = np.flatnonzero(np.diff(sorted_scores) != 0)
    group_ends = np.append(group_ends, sorted_scores.size - 1)
    true_positives = np.cumsum(sorted_labels, dtype=np.int64)[group_ends]
    false_positives = (group_ends + 1) - true_positives
    return sorted_scores[group_ends], true_positives, false_positives


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve at every distinct score (scikit-learn's ``roc_curve`` with ``drop_intermediate=False``).

    Args:
        scores: scores of any shape (maps work too: every pixel is a sample).
        labels: binary labels/masks of the same shape.

    Returns:
        ``(fpr, tpr, thresholds)``; the first point is ``(0, 0)`` at threshold ``inf``.
    """
    score_array, label_array = _check_pair(scores, labels, "scores", "labels")
    thresholds, true_positives, false_positives = _tie_grouped_counts(score_array, label_array)
    tpr = np.concatenate([[0.0], true_positives / true_positives[-1]])
    fpr = np.concatenate([[0.0], false_positives / false_positives[-1]])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def _counts_at_positive_thresholds(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores of the positives (descending) with the true and false positives at each.

    Precision-recall quantities only change their recall at these thresholds, and
    F1 only peaks at them, so the negatives need no ranking of their own: one
    sort and a ``searchsorted`` count them (fast for millions of pixels).
    """
    negatives = np.sort(scores[~labels])
    positives = np.sort(scores[labels])[::-1]
    group_ends = np.append(np.flatnonzero(np.diff(positives) != 0), positives.size - 1)
    thresholds = positives[group_ends]
    true_positives = group_ends + 1
    false_positives = negatives.size - np.searchsorted(negatives, thresholds, side="left")
    return thresholds, true_positives, false_positives


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision, ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (as scikit-learn).

    Works for image scores and for anomaly maps with masks (pixel AP, which DRÆM reports).
    """
    score_array, label_array = _check_pair(scores, labels, "scores", "labels")
    _, true_positives, false_positives = _counts_at_positive_thresholds(score_array, label_array)
    precision = true_positives / (true_positives + false_positives)
    recall_steps = np.diff(np.concatenate([[0], true_positives])) / true_positives[-1]
    return float(np.sum(recall_steps * precision))


def f1_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """F1 score at every distinct threshold (a sample is called anomalous when ``score >= threshold``).

    Returns:
        ``(thresholds, f1)``, thresholds descending.
    """
    score_array, label_array = _check_pair(scores, labels, "scores", "labels")
    thresholds, true_positives, false_positives = _tie_grouped_counts(score_array, label_array)
    positives = true_positives[-1]
    # F1 = 2 TP / (2 TP + FP + FN) and TP + FN is the number of positives
    f1 = 2 * true_positives / (true_positives + false_positives + positives)
    return thresholds, f1


def f1_max(scores: ArrayLike, labels: ArrayLike, *, return_threshold: bool = False) -> float | tuple[float, float]:
    """The best F1 over all thresholds: what a perfectly tuned threshold would give.

    The threshold is chosen on the test labels, so the number is optimistic; a
    deployed detector must fix its threshold on normal data beforehand.

    Args:
        scores: anomaly scores, higher = more anomalous.
        labels: binary labels of the same shape.
        return_threshold: also return the threshold reaching it.

    Returns:
        ``f1`` or ``(f1, threshold)``.
    """
    score_array, label_array = _check_pair(scores, labels, "scores", "labels")
    # F1 = 2 TP / (TP + FP + P) falls while only negatives join, so the best lies at a positive's score
    thresholds, true_positives, false_positives = _counts_at_positive_thresholds(score_array, label_array)
    f1 = 2 * true_positives / (true_positives + false_positives + true_positives[-1])
    best = int(np.argmax(f1))
    if return_threshold:
        return float(f1[best]), float(thresholds[best])
    return float(f1[best])


# --------------------------------------------------------------------------- PRO curve and AUPRO

#: 8-connectivity within one image, none across images: the MVTec AD evaluation
#: code labels regions with ``scipy.ndimage.label(mask, np.ones((3, 3)))``.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True


def label_regions(masks: ArrayLike) -> tuple[np.ndarray, int]:
    """Connected defect regions of each mask (8-connectivity), numbered across the whole set.

    Args:
        masks: binary masks ``[N, 1, H, W]``, ``[N, H, W]`` or ``[H, W]``.

    Returns:
        ``(regions, count)``: an int32 ``[N, H, W]`` array with 0 on normal pixels
        and ``1..count`` on the regions (a region never spans two images).
    """
    mask_array = _check_binary(masks, "masks")
    if mask_array.ndim == 4 and mask_array.shape[1] == 1:
        mask_array = mask_array[:, 0]
    elif mask_array.ndim == 2:
        mask_array = mask_array[None]
    elif mask_array.ndim != 3:
        raise ValueError(f"masks must be [N, 1, H, W], [N, H, W] or [H, W], got shape {tuple(mask_array.shape)}.")
    # one call for the whole stack: the structuring element links no pixels across images
    regions, count = ndimage.label(mask_array, structure=_REGION_STRUCTURE, output=np.int32)
    return regions, int(count)


def _pro_vertices(maps: np.ndarray, masks: np.ndarray, fpr_limit: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the piecewise-linear PRO curve (FPR, PRO), from ``(0, 0)`` to ``(1, 1)``.

    Lowering the threshold through the distinct values of the *defect* pixels
    only moves PRO; the normal pixels in between only move the FPR. So between
    two distinct defect values ``u_(k-1) > u_k`` the curve runs flat at PRO_(k-1)
    up to FPR(score > u_k), then straight to (FPR(score >= u_k), PRO_k) -- the
    normal pixels tied with ``u_k`` switch together with the defect pixels.
    These are exactly the points of the MVTec AD evaluation code (which keeps a
    point at every distinct value of any pixel) minus points lying on flat segments,
    so areas and interpolated values agree.

    With ``fpr_limit`` set, only the normal values that can give an FPR up to the
    limit are sorted; FPRs of later vertices are replaced by 1 (they lie beyond
    the limit, where only their being beyond it matters).
    """
    regions, region_count = label_regions(masks)
    if region_count == 0:
        raise ValueError("masks contain no anomalous pixel; the PRO curve needs at least one defect region.")
    is_normal = regions == 0
    normal_values = maps[is_normal]
    normal_count = normal_values.size
    if normal_count == 0:
        raise ValueError("masks mark every pixel as anomalous; the PRO curve needs normal pixels for its FPR.")

    # defect pixels, by decreasing value; each carries its share 1 / (|region| * regions) of the PRO
    defect_values = maps[~is_normal]
    defect_regions = regions[~is_normal]
    region_sizes = np.bincount(defect_regions, minlength=region_count + 1)
    order = np.argsort(defect_values, kind="stable")[::-1]
    defect_values = defect_values[order]
    shares = 1.0 / (region_sizes[defect_regions[order]].astype(np.float64) * region_count)
    group_ends = np.append(np.flatnonzero(np.diff(defect_values) != 0), defect_values.size - 1)
    thresholds = defect_values[group_ends]  # distinct defect values, descending
    pro = np.minimum(np.cumsum(shares)[group_ends], 1.0)

    # normal pixels at or above (and strictly above) each threshold
    needed = normal_count if fpr_limit is None else min(normal_count, math.floor(fpr_limit * normal_count) + 1)
    if needed < normal_count:
        # the `needed` largest normal values decide every FPR up to the limit; partition is O(n)
        cut = np.partition(normal_values, normal_count - needed)[normal_count - needed]
        top_normals = np.sort(normal_values[normal_values >= cut])  # keeps all ties of `cut`
    else:
        cut = -np.inf
        top_normals = np.sort(normal_values)
    at_or_above = top_normals.size - np.searchsorted(top_normals, thresholds, side="left")
    above = top_normals.size - np.searchsorted(top_normals, thresholds, side="right")
    beyond = thresholds < cut  # counts there are incomplete, but certainly past the limit
    fpr_at = np.where(beyond, 1.0, at_or_above / normal_count)
    fpr_before = np.where(beyond, 1.0, above / normal_count)

    pro_before = np.concatenate([[0.0], pro[:-1]])
    fpr = np.concatenate([[0.0], np.stack([fpr_before, fpr_at], axis=1).ravel(), [1.0]])
    pro_curve_values = np.concatenate([[0.0], np.stack([pro_before, pro], axis=1).ravel(), [1.0]])
    return fpr, pro_curve_values


def pro_curve(maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The per-region-overlap curve: mean overlap of the defect regions against the FPR of normal pixels.

    At a threshold ``t`` (pixels with value ``>= t`` are called anomalous) the
    PRO is the mean, over all connected ground-truth regions of all images
    (8-connectivity), of the fraction of the region called anomalous; the FPR is
    the fraction of all normal pixels of all images called anomalous.

    Args:
        maps: anomaly maps ``[N, 1, H, W]``, ``[N, H, W]`` or ``[H, W]``.
        masks: binary ground truth of the same shape.

    Returns:
        ``(fpr, pro)``: vertices of the curve from ``(0, 0)`` to ``(1, 1)``, FPR non-decreasing.
    """
    map_array, mask_array = _check_maps_and_masks(maps, masks)
    return _pro_vertices(map_array, mask_array, fpr_limit=None)


def trapezoid_area(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Area under the polyline ``(x, y)`` (``x`` non-decreasing) from ``x[0]`` to ``x_max``.

    The value at ``x_max`` is interpolated linearly between its neighbours, as in
    the MVTec AD evaluation's ``trapezoid``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    inside = x1 <= x_max
    area = np.sum(0.5 * (y0[inside] + y1[inside]) * (x1[inside] - x0[inside]))
    crossing = (x0 < x_max) & (x1 > x_max)
    if crossing.any():
        k = int(np.flatnonzero(crossing)[0])
        y_at_limit = y0[k] + (y1[k] - y0[k]) * (x_max - x0[k]) / (x1[k] - x0[k])
        area += 0.5 * (y0[k] + y_at_limit) * (x_max - x0[k])
    return float(area)


def aupro(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve up to ``fpr_limit``, divided by ``fpr_limit`` (MVTec AD's AU-PRO).

    Every connected defect region counts the same, however many pixels it has,
    so a method cannot score well by finding only the big defects.

    Args:
        maps: anomaly maps ``[N, 1, H, W]``, ``[N, H, W]`` or ``[H, W]``, higher = more anomalous.
        masks: binary ground truth of the same shape with at least one defect pixel and one normal pixel.
        fpr_limit: integrate over FPR in ``[0, fpr_limit]``; 0.3 as in the MVTec AD evaluation.

    Returns:
        The normalised area in ``[0, 1]``.
    """
    if not isinstance(fpr_limit, (int, float)) or isinstance(fpr_limit, bool) or not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be a number in (0, 1], got {fpr_limit!r}.")
    map_array, mask_array = _check_maps_and_masks(maps, masks)
    fpr, pro = _pro_vertices(map_array, mask_array, fpr_limit=float(fpr_limit))
    return trapezoid_area(fpr, pro, float(fpr_limit)) / float(fpr_limit)


# --------------------------------------------------------------------------- per defect type


def image_auroc_by_defect_type(predictions: TestPredictions) -> dict[str, float]:
    """Image AUROC of the good images against each defect type alone, ``{defect type: AUROC}``.

    Shows which kinds of defect a detector misses: the overall image AUROC
    mixes them. Types are listed in alphabetical order.

    Args:
        predictions: a :class:`~adlearn.evaluation.TestPredictions` from
            :func:`~adlearn.evaluation.collect_predictions`, or anything with
            ``scores`` ``[N]``, ``labels`` ``[N]`` and ``defect_types`` (N names) arrays.
    """
    types = np.asarray(predictions.defect_types)
    if len(types) != len(predictions.scores):
        raise ValueError(f"predictions hold {len(predictions.scores)} scores but {len(types)} defect types; "
                         "collect them with collect_predictions from a data set that names its defect types.")
    good = predictions.labels == 0
    if not good.any():
        raise ValueError("the predictions hold no good image (label 0); a per-type AUROC needs some.")
    results = {}
    for name in sorted(set(types[~good].tolist())):
        chosen = types == name
        scores = np.concatenate([predictions.scores[good], predictions.scores[chosen]])
        labels = np.concatenate([np.zeros(good.sum()), np.ones(chosen.sum())])
        results[str(name)] = image_auroc(scores, labels)
    return results


# --------------------------------------------------------------------------- moved to adlearn.evaluation

#: Running a detector over a data set lives in :mod:`adlearn.evaluation`; these
#: names are still found here (``from adlearn.metrics import evaluate``) for the
#: notebooks, benchmarks and scripts written before the split. They are looked up
#: lazily because adlearn.evaluation imports this module.
_MOVED_TO_EVALUATION = ("TestPredictions", "collect_predictions", "compute_metrics", "evaluate")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_EVALUATION:
        from adlearn import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MOVED_TO_EVALUATION])
