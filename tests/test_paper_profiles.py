"""Every method's `paper` profile runs: full image size and widths, one training step, one prediction, on the CPU.

The `paper` settings are what a Colab reader runs first; this makes sure that
path does not crash on its first step. Data are generated (the built-in data
set, the offline digits); pretrained weights are never downloaded here: the
torchvision fetch is made to fail, so a `paper` backbone falls back to random
weights with its visible warning.
"""

from __future__ import annotations

import contextlib
import urllib.error

import pytest
import torch

from adlearn import methods
from adlearn.data import MVTecAD
from adlearn.nn import BackboneWeightsWarning

#: what each smoke run changes beyond one step: a smaller batch (a 97 M-parameter step) and a shorter latent
#: search (500 steps per image at calibration and prediction), so the run fits a CI budget
SMOKE_OVERRIDES = {
    "draem": {"batch_size": 2},
    "anogan": {"search_steps": 5},
    "cutpaste": {"batch_size": 2, "patch_stride": 16},
    # one distillation step of the Wide-ResNet-101 teacher (random here: no downloads) on four natural images
    "efficientad": {"distill_steps": 1, "distill_batch_size": 1, "distill_count": 4, "penalty_count": 2},
}


@pytest.fixture()
def no_weight_downloads(monkeypatch, tmp_path):
    import adlearn.nn.backbones as backbones

    def refuse(name):
        raise urllib.error.URLError("downloads are off in the tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(backbones, "_fetch_torchvision_state_dict", refuse)


@pytest.mark.parametrize("name", methods.available())
def test_paper_profile_trains_one_step_and_predicts(name, builtin_root, no_weight_downloads):
    method = methods.get(name)
    config = method.profile_config("paper", **SMOKE_OVERRIDES.get(name, {}))
    assert config.image_size == method.Config().image_size  # the paper's size, not a small one
    if method.INPUT_CHANNELS == 1:
        from adlearn.data.mnist import one_class_split

        split = one_class_split((1,), seed=0, verbose=False)
        train, images = [split.train[i] for i in range(12)], split.test.images[:1]
    else:
        train = MVTecAD(builtin_root, "washer", "train", image_size=config.image_size)
        images = torch.stack([MVTecAD(builtin_root, "washer", "test", image_size=config.image_size)[0]["image"]])
    backbone = getattr(config, "backbone", None) or getattr(config, "distill_backbone", None)
    downloads_weights = backbone is not None and not backbone.startswith("efficientnet")
    with pytest.warns(BackboneWeightsWarning) if downloads_weights else contextlib.nullcontext():
        detector = method(config)
        detector.fit(train, steps=1, progress=False, device="cpu")
    prediction = detector.predict(images)
    assert prediction.scores.shape == (1,) and prediction.maps.shape == (1, 1, *images.shape[-2:])
    assert bool(torch.isfinite(prediction.maps).all())
    if "backbone" in config.__dataclass_fields__:
        assert detector.info["backbone_pretrained"] in (True, False)  # the chapters print it
