"""Tests of adlearn.evaluation: running a detector over a data set, and the old names in adlearn.metrics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from adlearn import evaluation, metrics
from adlearn.methods.base import Prediction


class ThresholdDetector:
    """A detector whose map is the image's red channel and whose score is the map's maximum (``predict(images)``)."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def predict(self, images: torch.Tensor) -> Prediction:
        self.batch_sizes.append(images.shape[0])
        maps = images[:, :1]
        return Prediction(scores=maps.amax(dim=(1, 2, 3)), maps=maps)


class BatchingDetector(ThresholdDetector):
    """The same detector with the new API: ``predict(images, *, batch_size)`` batches by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int | None]] = []

    def predict(self, images: torch.Tensor, *, batch_size: int | None = None) -> Prediction:
        self.calls.append((images.shape[0], batch_size))
        parts = [ThresholdDetector.predict(self, chunk) for chunk in images.split(batch_size or images.shape[0])]
        return Prediction(scores=torch.cat([p.scores for p in parts]), maps=torch.cat([p.maps for p in parts]))


def make_dataset(count: int = 10, size: int = 16, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(count):
        image = torch.rand(3, size, size, generator=generator) * 0.5
        mask = torch.zeros(1, size, size)
        label = index % 2
        if label:
            mask[:, 3 : 3 + index % 5 + 1, 4:9] = 1
            image[0] += 0.4 * mask[0]
        items.append(
            {"image": image, "mask": mask, "label": label, "defect_type": "stain" if label else "good", "path": f"{index}.png"}
        )
    return items


def test_evaluate_runs_in_batches_and_matches_the_metrics() -> None:
    dataset = make_dataset()
    detector = ThresholdDetector()
    results = evaluation.evaluate(detector, dataset, batch_size=4)
    assert detector.batch_sizes == [4, 4, 2]
    assert set(results) >= {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_ap"}
    assert all(isinstance(value, float) for value in results.values())

    predictions = evaluation.collect_predictions(ThresholdDetector(), dataset, batch_size=3, keep_images=True)
    maps = torch.stack([item["image"][0] for item in dataset]).numpy()
    masks = torch.stack([item["mask"][0] for item in dataset]).numpy()
    labels = np.array([item["label"] for item in dataset])
    assert isinstance(predictions, evaluation.TestPredictions) and len(predictions) == 10
    assert predictions.maps.shape == (10, 16, 16) and predictions.masks.dtype == bool
    assert predictions.images.shape == (10, 3, 16, 16)
    assert predictions.defect_types[:2] == ["good", "stain"] and predictions.paths[3] == "3.png"
    np.testing.assert_array_equal(predictions.labels, labels)
    assert results["image_auroc"] == pytest.approx(skm.roc_auc_score(labels, maps.max(axis=(1, 2))))
    assert results["pixel_auroc"] == pytest.approx(skm.roc_auc_score(masks.ravel(), maps.ravel()))
    assert results["aupro"] == pytest.approx(metrics.aupro(maps, masks > 0, fpr_limit=0.3), abs=1e-12)
    assert results["image_f1_max"] == pytest.approx(metrics.f1_max(maps.max(axis=(1, 2)), labels))
    assert evaluation.compute_metrics(predictions) == pytest.approx(results)


def test_evaluate_hands_batch_size_to_a_predict_that_takes_it() -> None:
    dataset = make_dataset()
    detector = BatchingDetector()
    results = evaluation.evaluate(detector, dataset, batch_size=4)
    assert detector.calls == [(10, 4)]  # one call with the whole set; the detector batches by itself
    assert detector.batch_sizes == [4, 4, 2]
    assert results == pytest.approx(evaluation.evaluate(ThresholdDetector(), dataset, batch_size=4))

    predictions = evaluation.collect_predictions(BatchingDetector(), dataset, batch_size=3)
    assert predictions.images is None and predictions.maps.shape == (10, 16, 16)
    assert predictions.paths[3] == "3.png"


def test_evaluate_calls_other_predicts_in_chunks() -> None:
    class KeywordsDetector(ThresholdDetector):  # a predict with other keywords (AnoGAN's scorer) is the old API
        def predict(self, images: torch.Tensor, *, scorer: str | None = None) -> Prediction:
            return super().predict(images)

    class AnyKeywordsDetector(ThresholdDetector):  # **kwargs alone does not promise batch_size
        def predict(self, images: torch.Tensor, **options) -> Prediction:
            assert not options
            return super().predict(images)

    for detector in (KeywordsDetector(), AnyKeywordsDetector()):
        evaluation.evaluate(detector, make_dataset(), batch_size=4)
        assert detector.batch_sizes == [4, 4, 2]


def test_evaluate_without_defect_pixels_gives_nan_pixel_metrics() -> None:
    dataset = make_dataset()
    for item in dataset:
        item["mask"] = torch.zeros_like(item["mask"])
    with pytest.warns(UserWarning, match="no mask"):
        results = evaluation.evaluate(ThresholdDetector(), dataset)
    assert math.isnan(results["aupro"]) and math.isnan(results["pixel_auroc"])
    assert 0 <= results["image_auroc"] <= 1


def test_evaluate_rejects_wrong_map_size_and_items() -> None:
    class SmallMaps(ThresholdDetector):
        def predict(self, images: torch.Tensor) -> Prediction:
            maps = images[:, :1, ::2, ::2]
            return Prediction(scores=maps.amax(dim=(1, 2, 3)), maps=maps)

    class SmallBatchingMaps(BatchingDetector):
        def predict(self, images: torch.Tensor, *, batch_size: int | None = None) -> Prediction:
            return SmallMaps.predict(self, images)

    with pytest.raises(ValueError, match="input resolution"):
        evaluation.evaluate(SmallMaps(), make_dataset())
    with pytest.raises(ValueError, match="input resolution"):
        evaluation.evaluate(SmallBatchingMaps(), make_dataset())
    with pytest.raises(KeyError, match="mask"):
        evaluation.evaluate(ThresholdDetector(), [{"image": torch.zeros(3, 4, 4), "label": 0}])
    with pytest.raises(ValueError, match="batch_size"):
        evaluation.evaluate(ThresholdDetector(), make_dataset(), batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        evaluation.evaluate(ThresholdDetector(), [])


# --------------------------------------------------------------------------- the old names


def test_old_names_in_metrics_still_work() -> None:
    from adlearn.metrics import TestPredictions, collect_predictions, compute_metrics, evaluate

    assert evaluate is evaluation.evaluate and collect_predictions is evaluation.collect_predictions
    assert compute_metrics is evaluation.compute_metrics and TestPredictions is evaluation.TestPredictions
    assert {"evaluate", "collect_predictions", "image_auroc"} <= set(dir(metrics))
    dataset = make_dataset()
    assert metrics.evaluate(ThresholdDetector(), dataset, batch_size=4) == pytest.approx(
        evaluation.evaluate(ThresholdDetector(), dataset, batch_size=4)
    )
    with pytest.raises(AttributeError, match="no_such_metric"):
        metrics.no_such_metric  # noqa: B018


@pytest.mark.parametrize(
    "code",
    [
        "import adlearn.metrics, sys; assert 'adlearn.evaluation' not in sys.modules",  # metrics stays light
        "import adlearn.evaluation",  # no import cycle in either order
        "from adlearn.metrics import collect_predictions, compute_metrics, evaluate",
    ],
)
def test_metrics_and_evaluation_import_in_a_fresh_interpreter(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
