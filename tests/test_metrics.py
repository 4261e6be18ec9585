"""Tests of adlearn.metrics against scikit-learn and slow, obviously-correct references."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from adlearn import metrics
from adlearn.evaluation import TestPredictions

# --------------------------------------------------------------------------- slow references


def reference_regions(mask: np.ndarray) -> list[np.ndarray]:
    """Connected regions of one 2-D mask by breadth-first flood fill over the 8 neighbours."""
    height, width = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    regions = []
    for start_row in range(height):
        for start_col in range(width):
            if not mask[start_row, start_col] or seen[start_row, start_col]:
                continue
            region = np.zeros_like(mask, dtype=bool)
            queue = deque([(start_row, start_col)])
            seen[start_row, start_col] = True
            while queue:
                row, col = queue.popleft()
                region[row, col] = True
                for d_row in (-1, 0, 1):
                    for d_col in (-1, 0, 1):
                        r, c = row + d_row, col + d_col
                        if 0 <= r < height and 0 <= c < width and mask[r, c] and not seen[r, c]:
                            seen[r, c] = True
                            queue.append((r, c))
            regions.append(region)
    return regions


def reference_pro_points(maps: np.ndarray, masks: np.ndarray) -> tuple[list[float], list[float]]:
    """(FPR, PRO) at every distinct map value, thresholding with ``>=``, plus (0, 0) and (1, 1)."""
    regions = [(index, region) for index, mask in enumerate(masks) for region in reference_regions(mask)]
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for threshold in sorted(set(maps.ravel().tolist()), reverse=True):
        called = maps >= threshold
        fprs.append((called & normal).sum() / normal.sum())
        pros.append(np.mean([(called[index] & region).sum() / region.sum() for index, region in regions]))
    return fprs + [1.0], pros + [1.0]


def reference_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Trapezoids up to the limit, the value at the limit interpolated between its neighbours."""
    fprs, pros = reference_pro_points(maps, masks)
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        elif x0 < fpr_limit:
            y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_limit) / 2
    return area / fpr_limit


def random_case(seed: int, images: int = 4, size: int = 10, levels: int | None = 6) -> tuple[np.ndarray, np.ndarray]:
    """Small maps (few distinct values, so many ties) and blobby masks with normal images among them."""
    rng = np.random.default_rng(seed)
    masks = rng.random((images, size, size)) < 0.18
    masks[0] = False  # one good image
    masks[1, 0, 0] = True  # at least one defect pixel
    maps = rng.random((images, size, size)) + 0.6 * masks
    if levels is not None:
        maps = np.round(maps * levels) / levels  # heavy ties across normal and defect pixels
    return maps.astype(np.float32), masks


# --------------------------------------------------------------------------- AUROC and curves


@pytest.mark.parametrize("seed", range(6))
def test_image_auroc_equals_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 5, 60).astype(float) + labels * rng.random(60)
    assert metrics.image_auroc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_known_values_and_torch_input() -> None:
    assert metrics.image_auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert metrics.image_auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert metrics.image_auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    value = metrics.image_auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
    assert value == pytest.approx(0.75)
    assert isinstance(value, float)


def test_pixel_auroc_equals_sklearn_on_maps() -> None:
    maps, masks = random_case(3, images=6, size=32)
    expected = skm.roc_auc_score(masks.ravel(), maps.ravel())
    assert metrics.pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    # [N, 1, H, W] tensors give the same number
    as_tensors = (torch.from_numpy(maps)[:, None], torch.from_numpy(masks.astype(np.float32))[:, None])
    assert metrics.pixel_auroc(*as_tensors) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_large_input_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random(400_000) < 0.05
    maps = (rng.random(400_000) + masks * 0.3).astype(np.float16).astype(np.float32)  # float16 forces ties
    assert metrics.pixel_auroc(maps, masks) == pytest.approx(skm.roc_auc_score(masks, maps), abs=1e-9)


def test_roc_curve_equals_sklearn() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80)
    scores = rng.integers(0, 10, 80) / 10
    fpr, tpr, thresholds = metrics.roc_curve(scores, labels)
    fpr_sk, tpr_sk, thresholds_sk = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_sk)
    np.testing.assert_allclose(tpr, tpr_sk)
    np.testing.assert_allclose(thresholds, thresholds_sk)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.image_auroc(scores, labels))


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_equals_sklearn(seed: int) -> None:
    maps, masks = random_case(seed, images=5, size=16)
    expected = skm.average_precision_score(masks.ravel(), maps.ravel())
    assert metrics.average_precision(maps, masks) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_f1_max_equals_best_f1_over_every_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 50)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 8, 50) + labels * 2.0
    best = max(skm.f1_score(labels, scores >= t) for t in np.unique(scores))
    assert metrics.f1_max(scores, labels) == pytest.approx(best, abs=1e-12)
    value, threshold = metrics.f1_max(scores, labels, return_threshold=True)
    assert skm.f1_score(labels, scores >= threshold) == pytest.approx(value, abs=1e-12)
    thresholds, f1 = metrics.f1_curve(scores, labels)
    assert np.all(np.diff(thresholds) < 0)
    assert f1.max() == pytest.approx(value, abs=1e-12)
    for t, f in zip(thresholds, f1):
        assert f == pytest.approx(skm.f1_score(labels, scores >= t), abs=1e-12)


def test_f1_max_known_value() -> None:
    # threshold 0.6 catches both defects and one good image: P = 2/3, R = 1, F1 = 0.8
    assert metrics.f1_max([0.1, 0.6, 0.7, 0.9], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert metrics.f1_max([0.1, 0.8, 0.7, 0.9], [0, 0, 1, 1]) == pytest.approx(0.8)


# --------------------------------------------------------------------------- regions, PRO, AUPRO


def test_regions_use_eight_connectivity_and_never_span_images() -> None:
    masks = np.zeros((2, 5, 5), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 2, 2] = True  # a diagonal line: one region
    masks[0, 4, 0] = True  # a second region
    masks[1, 0, 0] = True  # same place, other image: a third region
    regions, count = metrics.label_regions(masks)
    assert count == 3
    assert regions.dtype == np.int32 and regions.shape == (2, 5, 5)
    assert regions[0, 0, 0] == regions[0, 2, 2] != regions[0, 4, 0]
    assert regions[1, 0, 0] not in (regions[0, 0, 0], regions[0, 4, 0])


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_matches_threshold_loop_reference(seed: int, fpr_limit: float) -> None:
    maps, masks = random_case(seed, levels=6 if seed % 2 == 0 else None)
    expected = reference_aupro(maps.astype(np.float64), masks, fpr_limit)
    assert metrics.aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_pro_curve_passes_through_every_reference_point(seed: int) -> None:
    maps, masks = random_case(seed)
    fpr, pro = metrics.pro_curve(maps, masks)
    assert fpr[0] == 0 and pro[0] == 0 and fpr[-1] == 1 and pro[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)
    # every reference point lies on our polyline: at its FPR, our PRO range covers it
    for x, y in zip(*reference_pro_points(maps.astype(np.float64), masks)):
        at_x = pro[np.isclose(fpr, x, atol=1e-12)]
        low = at_x.min() if at_x.size else np.interp(x, fpr, pro)
        high = at_x.max() if at_x.size else np.interp(x, fpr, pro)
        assert low - 1e-9 <= y <= high + 1e-9


def test_aupro_weighs_every_region_equally() -> None:
    # one big region fully found, one small region missed entirely, no false positives at all
    masks = np.zeros((1, 20, 20), dtype=bool)
    masks[0, 2:12, 2:12] = True  # 100 pixels
    masks[0, 16, 16] = True  # 1 pixel
    maps = np.zeros((1, 20, 20))
    maps[0, 2:12, 2:12] = 1.0
    # the curve jumps to (0, 0.5), then runs straight to (1, 1): the small region joins with all normal pixels
    expected = (0.5 * 0.3 + 0.5 * 0.3 * 0.3 / 2) / 0.3
    assert metrics.aupro(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert metrics.pixel_auroc(maps, masks) > 0.99  # pixel AUROC barely notices the missed defect


def test_aupro_perfect_and_inverted_maps() -> None:
    maps, masks = random_case(0)
    assert metrics.aupro(masks.astype(float), masks) == pytest.approx(1.0)
    assert metrics.aupro(-masks.astype(float), masks) == pytest.approx(0.0)


def test_aupro_accepts_all_layouts_and_tensors() -> None:
    maps, masks = random_case(5)
    value = metrics.aupro(maps, masks)
    assert metrics.aupro(maps[:, None], masks[:, None]) == pytest.approx(value, abs=1e-12)
    assert metrics.aupro(torch.from_numpy(maps)[:, None], torch.from_numpy(masks).float()[:, None]) == pytest.approx(
        value, abs=1e-12
    )
    single = metrics.aupro(maps[1], masks[1])
    assert single == pytest.approx(reference_aupro(maps[1:2].astype(np.float64), masks[1:2], 0.3), abs=1e-6)


def test_trapezoid_area_interpolates_at_the_limit() -> None:
    x, y = np.array([0.0, 0.2, 0.4]), np.array([0.0, 1.0, 1.0])
    assert metrics.trapezoid_area(x, y, 0.3) == pytest.approx(0.1 + 0.1)
    assert metrics.trapezoid_area(x, y, 0.2) == pytest.approx(0.1)
    assert metrics.trapezoid_area(x, y, 0.1) == pytest.approx(0.025)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.image_auroc([0.1, 0.2], [0, 1, 1]), "same shape"),
        (lambda: metrics.image_auroc([0.1, 0.2, 0.3], [1, 1, 1]), "only anomalous"),
        (lambda: metrics.image_auroc([0.1, 0.2, 0.3], [0, 0, 0]), "only normal"),
        (lambda: metrics.image_auroc([0.1, math.nan, 0.3], [0, 1, 1]), "NaN"),
        (lambda: metrics.image_auroc([0.1, math.inf, 0.3], [0, 1, 1]), "infinite"),
        (lambda: metrics.image_auroc([0.1, 0.2, 0.3], [0, 2, 1]), "binary"),
        (lambda: metrics.pixel_auroc(np.zeros((2, 4, 4)), np.full((2, 4, 4), 0.5)), "binary"),
        (lambda: metrics.aupro(np.zeros((2, 4, 4)), np.zeros((2, 4, 5))), "same shape"),
        (lambda: metrics.aupro(np.zeros((2, 4, 4)), np.zeros((2, 4, 4))), "no anomalous pixel"),
        (lambda: metrics.aupro(np.zeros((2, 4, 4)), np.ones((2, 4, 4))), "every pixel"),
        (lambda: metrics.aupro(np.zeros((2, 4, 4)), np.eye(4)[None].repeat(2, 0), fpr_limit=0), "fpr_limit"),
        (lambda: metrics.aupro(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4))), r"\[N, 1, H, W\]"),
        (lambda: metrics.image_auroc([], []), "empty"),
        (lambda: metrics.image_auroc(["a", "b"], [0, 1]), "real numbers"),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# --------------------------------------------------------------------------- per defect type
# (running a detector over a data set is tested in tests/test_evaluation.py)


def _typed_predictions(scores: list[float], types: list[str]) -> TestPredictions:
    labels = np.array([0 if name == "good" else 1 for name in types])
    blank = np.zeros((len(types), 2, 2), np.float32)
    return TestPredictions(scores=np.array(scores), maps=blank, labels=labels, masks=blank.astype(bool),
                           defect_types=types)


def test_image_auroc_by_defect_type_ranks_good_images_against_each_type() -> None:
    # good scores 0.1, 0.3; scratches all above them, stains split them: 1 and 0.5
    predictions = _typed_predictions([0.1, 0.3, 0.9, 0.8, 0.2, 0.4], ["good", "good", "scratch", "scratch", "stain", "stain"])
    per_type = metrics.image_auroc_by_defect_type(predictions)
    assert list(per_type) == ["scratch", "stain"]
    assert per_type["scratch"] == pytest.approx(1.0)
    assert per_type["stain"] == pytest.approx(skm.roc_auc_score([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.4]))
    assert per_type["stain"] == pytest.approx(0.75)


def test_image_auroc_by_defect_type_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match="no good image"):
        metrics.image_auroc_by_defect_type(_typed_predictions([0.5, 0.6], ["stain", "scratch"]))
    unnamed = _typed_predictions([0.1, 0.9], ["good", "stain"])
    unnamed.defect_types = []
    with pytest.raises(ValueError, match="defect types"):
        metrics.image_auroc_by_defect_type(unnamed)
