"""MemSeg: differences and commonalities (Yang, Wu, Liu and Feng, 2022, arXiv:2205.00908).

MemSeg turns one-class anomaly detection into supervised segmentation, as
DRÆM does, and adds a *memory* of normal images:

* **differences** — anomalies are simulated on normal training images
  (:class:`adlearn.simulation.MemSegSynthesizer`: Perlin-shaped DTD texture
  or shuffled-grid structure anomalies, optionally inside the object's
  foreground), so the network learns what is *not* normal;
* **commonalities** — ``N`` normal training images (the paper: 30) are
  encoded once by the pretrained encoder and kept as the **memory**. Every
  input is compared with all of them, the closest one is picked, and the
  squared difference to it travels with the input's own features: a large
  difference at a position says "this does not look like normal".

The network is a U-Net (:class:`MemSegModel`):

1. **Encoder** (:class:`MemSegEncoder`): an ImageNet backbone from
   :mod:`adlearn.nn.backbones`. Which stage plays which role:

   ========================  ============================  ==========================================
   role (stride)             ResNet18 (``paper``)          EfficientNet-Lite0 (``quick``, ``book``)
   ========================  ============================  ==========================================
   decoder skip (2)          conv1 + bn1 + ReLU, 64 ch     stem + block 0, 16 ch
   memory level 1 (4)        layer1 ("block 1"), 64 ch     blocks 1-2, 24 ch
   memory level 2 (8)        layer2 ("block 2"), 128 ch    blocks 3-4, 40 ch
   memory level 3 (16)       layer3 ("block 3"), 256 ch    blocks 5-10, 112 ch
   decoder input (32)        layer4, 512 ch — trained      blocks 11-15, 320 ch — trained
   ========================  ============================  ==========================================

   Everything up to stride 16 is **frozen** (weights and batch-norm
   statistics), as the paper freezes blocks 1-3 "to ensure the unity of
   memory information and input features": the memory was encoded once, so
   the features it is compared with must not drift. (The public
   re-implementation also leaves ResNet's ``conv1``/``bn1`` trainable, which
   lets the input's features drift away from the stored memory; here the stem
   is frozen too.) Only the stride-32 stage trains.

2. **Memory module** (:class:`MemoryModule`): for input features ``x_l`` and
   memory features ``m_{n,l}`` at levels ``l = 1, 2, 3``, the distance to
   memory sample ``n`` is ``d_n = sum_l mean((x_l - m_{n,l})^2)`` (the mean
   over a level's elements, as the public code; the paper's "sum of all
   elements" would weigh level 1 four times more than level 3), the best
   sample is ``n* = argmin_n d_n``, and level ``l`` passes on
   ``CI_l = concat(x_l, (x_l - m_{n*,l})^2)``. All ``B x N`` distances are
   one computation per level (``|x|^2 - 2 x.m + |m|^2``: a matrix product
   with the memory's squared norms stored beside it);
   :func:`memory_distances_per_sample` / :func:`select_memory_per_sample` are
   the per-sample loop of the public re-implementation, kept as the reference
   the tests and the benchmark compare against.

3. **Multi-scale feature fusion** (:class:`MultiScaleFeatureFusion`): each
   ``CI_l`` goes through a 3x3 convolution, coordinate attention
   (:class:`adlearn.nn.CoordinateAttention`, Hou et al. 2021) and two 3x3
   convolutions that halve its channels, each convolution a conv-BN-ReLU
   block (the public code uses plain convolutions and multiplies the first
   one's output by the attention block applied to ``CI_l`` itself); deeper
   levels are upsampled, their channels aligned by a 3x3 convolution and
   added to shallower ones. The
   **spatial attention maps** come from the difference halves only::

       M3 = mean_c(DI_3),  M2 = mean_c(DI_2) * up(M3),  M1 = mean_c(DI_1) * up(M2)

   and weigh the fused features: ``F_l <- F_l * M_l``.

4. **Decoder** (:class:`MemSegDecoder`): from the stride-32 features up,
   each step is an upsampling layer (bilinear x2, conv-BN-ReLU), a
   concatenation with the skip of the same size and a Conv layer of two
   conv-BN-ReLU blocks (the paper's text; the public code leaves these Conv
   layers out); the last one is a single block and a 2-channel convolution:
   per-pixel logits of (normal, anomalous).

**Loss**: ``0.6 * L1(softmax_1, mask) + 0.4 * focal(gamma = 4)``
(:func:`memseg_loss`, with :func:`adlearn.nn.focal_loss`). **Training**:
batches of 8 training images, half of them given a simulated anomaly;
AdamW with a linear warm-up and a cosine decay (:func:`warmup_cosine_factor`).
**Scoring**: the pixel map is the softmax probability of "anomalous"; the
image score is the mean of its ``score_top_k`` largest values (the public
code's evaluation: the top 100 of 256 x 256 pixels), which, unlike the
maximum, does not fire on a single hot pixel.

Example::

    detector = MemSeg.from_profile("book")
    detector.fit(MVTecAD(root, "grass", "train", image_size=128))
    output = detector.inspect(images)          # maps, scores, which memory image each picked
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adlearn.methods.base import (
    BufferDict, Detector, DetectorConfig, Prediction, TrainingPlan, fused_score, register, resize_maps,
    score_statistics,
)
from adlearn.nn.backbones import BACKBONES, FeatureExtractor
from adlearn.nn.coordinate_attention import CoordinateAttention
from adlearn.nn.focal import focal_loss
from adlearn.train import random_batches

__all__ = [
    "MemSeg", "MemSegConfig", "MemSegModel", "MemSegEncoder", "EncoderFeatures", "MemoryModule", "MemoryMatch",
    "MultiScaleFeatureFusion", "MemSegDecoder", "MemSegOutput", "memory_distances_per_sample",
    "select_memory_per_sample", "spatial_attention_maps", "memseg_loss", "anomaly_map_from_logits",
    "image_score_top_k", "warmup_cosine_factor", "ENCODER_STAGES",
]

#: which backbone stage plays which MemSeg role (printed by the chapter; see the module docstring)
ENCODER_STAGES: dict[str, dict[str, str]] = {
    "resnet18": {"skip (stride 2)": "conv1 + bn1 + ReLU", "level 1 (stride 4)": "layer1",
                 "level 2 (stride 8)": "layer2", "level 3 (stride 16)": "layer3", "deep (stride 32)": "layer4"},
    "efficientnet_lite0": {"skip (stride 2)": "stem + block 0", "level 1 (stride 4)": "blocks 1-2",
                           "level 2 (stride 8)": "blocks 3-4", "level 3 (stride 16)": "blocks 5-10",
                           "deep (stride 32)": "blocks 11-15"},
}


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """The paper's basic convolution block: 3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``size`` (the x2 steps of the U-Net, exact for any image size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- encoder


@dataclass
class EncoderFeatures:
    """The encoder's outputs for a batch.

    Attributes:
        skip: ``[B, C0, H/2, W/2]`` stride-2 features for the decoder's last skip connection.
        levels: the three memory levels ``[B, C_l, H/s, W/s]`` at strides 4, 8 and 16 (frozen).
        deep: ``[B, C4, H/32, W/32]`` the trained stride-32 stage, the decoder's input.
    """

    skip: torch.Tensor
    levels: list[torch.Tensor]
    deep: torch.Tensor


class MemSegEncoder(nn.Module):
    """A pretrained backbone cut into MemSeg's five roles, frozen up to stride 16 (see :data:`ENCODER_STAGES`).

    Args:
        backbone: a name of :data:`adlearn.nn.backbones.BACKBONES`.
        weights: ``"imagenet"`` (random weights with a :class:`~adlearn.nn.BackboneWeightsWarning`
            when they cannot be had), ``"random"`` (deliberately), or ``"none"`` (a saved model's
            weights follow).

    Attributes:
        skip_channels, level_channels, deep_channels: channel counts of the outputs.
    """

    def __init__(self, backbone: str = "resnet18", weights: str = "imagenet") -> None:
        super().__init__()
        self.lite = backbone == "efficientnet_lite0"
        strides = (2, 4, 8, 16, 32) if self.lite else (4, 8, 16, 32)
        self.extractor = FeatureExtractor(backbone, strides=strides, weights=weights, trainable=True)
        channels = self.extractor.channels
        if self.lite:
            self.skip_channels = channels[0]
            self.level_channels, self.deep_channels = tuple(channels[1:4]), channels[4]
        else:  # ResNet's stride-2 features are the stem's output before its max-pool
            self.skip_channels = self.extractor.stem[0].out_channels
            self.level_channels, self.deep_channels = tuple(channels[0:3]), channels[3]
        for module in self.frozen_modules():
            module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """Every part of the backbone up to stride 16 (weights and batch-norm statistics stay fixed)."""
        return [self.extractor.stem, *self.extractor.stages[:-1]]

    def train(self, mode: bool = True) -> MemSegEncoder:
        """Train mode for the stride-32 stage only; the frozen stages stay in eval mode."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def forward(self, images: torch.Tensor) -> EncoderFeatures:
        """Features of ``images`` ``[B, 3, H, W]`` in ``[0, 1]`` (the backbone's normalisation is applied here)."""
        extractor = self.extractor
        x = (images - extractor.mean) / extractor.std
        if self.lite:
            x = extractor.stem(x)
            maps = []
            for stage in extractor.stages:
                x = stage(x)
                maps.append(x)
            return EncoderFeatures(skip=maps[0], levels=maps[1:4], deep=maps[4])
        skip = extractor.stem[:-1](x)  # conv1, bn1, relu
        x = extractor.stem[-1](skip)   # max-pool
        maps = []
        for stage in extractor.stages:
            x = stage(x)
            maps.append(x)
        return EncoderFeatures(skip=skip, levels=maps[0:3], deep=maps[3])


# --------------------------------------------------------------------------- memory module


@dataclass
class MemoryMatch:
    """What the memory module finds for a batch.

    Attributes:
        indices: ``[B]`` long, the best-matching memory sample of each input.
        distances: ``[B, N]`` total distance to every memory sample (sum over levels of the
            mean squared difference).
        differences: per level, ``[B, C_l, h_l, w_l]`` squared difference to the chosen sample (``DI``).
        concatenated: per level, ``[B, 2 C_l, h_l, w_l]`` = ``concat(input features, difference)`` (``CI``).
    """

    indices: torch.Tensor
    distances: torch.Tensor
    differences: list[torch.Tensor]
    concatenated: list[torch.Tensor]


def _match_from_indices(features: Sequence[torch.Tensor], memory: Sequence[torch.Tensor], indices: torch.Tensor,
                        distances: torch.Tensor) -> MemoryMatch:
    """Gather the chosen memory samples and form the differences and concatenations (shared by both versions)."""
    differences, concatenated = [], []
    for x, bank in zip(features, memory):
        x = x.float()
        channels = x.shape[1]
        # written straight into the concatenation (one pass less over the largest tensors than torch.cat)
        joined = torch.empty((x.shape[0], 2 * channels, *x.shape[2:]), dtype=x.dtype, device=x.device)
        joined[:, :channels] = x
        difference = joined[:, channels:]
        torch.sub(bank.index_select(0, indices), x, out=difference).square_()  # (m - x)^2, element by element
        differences.append(difference)
        concatenated.append(joined)
    return MemoryMatch(indices=indices, distances=distances, differences=differences, concatenated=concatenated)


def memory_distances_per_sample(features: Sequence[torch.Tensor], memory: Sequence[torch.Tensor]) -> torch.Tensor:
    """REFERENCE ONLY — ``[B, N]`` distances by the public re-implementation's loop (``MemoryBank._calc_diff``).

    For every level and every input it repeats the input ``N`` times, takes the
    mean squared error against each memory sample, and adds it up. Kept so the
    tests and ``benchmarks/bench_memseg.py`` can check :meth:`MemoryModule.distances`
    (one batched computation) against it; never used in training or prediction.

    Args:
        features: per level ``[B, C_l, h_l, w_l]`` input features.
        memory: per level ``[N, C_l, h_l, w_l]`` memory features.
    """
    count = memory[0].shape[0]
    distances = torch.zeros(features[0].shape[0], count, device=features[0].device)
    for x, bank in zip(features, memory):
        for index, sample in enumerate(x.float()):
            repeated = torch.repeat_interleave(sample.unsqueeze(0), repeats=count, dim=0)
            distances[index] += F.mse_loss(repeated, bank, reduction="none").mean(dim=[1, 2, 3])
    return distances


def select_memory_per_sample(features: Sequence[torch.Tensor], memory: Sequence[torch.Tensor]) -> MemoryMatch:
    """REFERENCE ONLY — :meth:`MemoryModule.select` with the per-sample loop's distances.

    The public code's ``select``: the loop's distances (:func:`memory_distances_per_sample`),
    their argmin, then the chosen samples' differences and the concatenation.
    """
    distances = memory_distances_per_sample(features, memory)
    return _match_from_indices(features, memory, distances.argmin(dim=1), distances)


class MemoryModule(nn.Module):
    """The memory: ``N`` normal images' features at three levels, and the batched best-match search.

    :meth:`store` fills it once (in ``MemSeg.setup``); its tensors live in a
    :class:`~adlearn.methods.base.BufferDict`, so they move and are saved with the model
    whatever ``N`` turned out to be.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bank = BufferDict()
        # per level: (the stored tensor, its flattened transpose [D_l, N] made contiguous); a plain cache, not
        # state: rebuilt whenever the stored tensor is another object (after store, load or a move)
        self._transposed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def levels(self) -> int:
        """How many feature levels are stored (0 before :meth:`store`)."""
        return sum(1 for name in self.bank.keys() if name.startswith("level"))

    def __len__(self) -> int:
        """``N``, the number of memory samples."""
        return int(self.bank["level0"].shape[0]) if self.levels else 0

    def features(self) -> list[torch.Tensor]:
        """The stored features, per level ``[N, C_l, h_l, w_l]``."""
        if not self.levels:
            raise RuntimeError("the memory is empty: MemSeg.fit stores the memory images' features (setup).")
        return [self.bank[f"level{level}"] for level in range(self.levels)]

    @torch.no_grad()
    def store(self, features: Sequence[torch.Tensor], images: torch.Tensor | None = None) -> None:
        """Keep ``features`` (per level ``[N, C_l, h_l, w_l]``), their squared norms and, for figures, the images."""
        for level, bank in enumerate(features):
            bank = bank.detach().float().contiguous()
            self.bank[f"level{level}"] = bank
            self.bank[f"squared_norm{level}"] = bank.flatten(1).pow(2).sum(dim=1)
        self._transposed.clear()
        if images is not None:  # uint8: a quarter of the memory; only figures read them back
            self.bank["images"] = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)

    def _flat_transposed(self, level: int) -> torch.Tensor:
        """Level ``level`` of the memory as a contiguous ``[D_l, N]`` matrix (the product reads it fastest)."""
        bank = self.bank[f"level{level}"]
        cached = self._transposed.get(level)
        if cached is None or cached[0] is not bank:
            cached = (bank, bank.flatten(1).T.contiguous())
            self._transposed[level] = cached
        return cached[1]

    def distances(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[B, N]``: ``sum_l mean((x_l - m_{n,l})^2)`` for the whole batch and memory at once.

        ``|x - m|^2 = |x|^2 - 2 x.m + |m|^2``: one matrix product per level
        (``[B, D_l] @ [D_l, N]``) instead of ``B x N`` difference tensors, with the
        memory's squared norms computed once in :meth:`store` (and the memory kept a
        second time, transposed, which makes the product about 15 % faster on a
        CPU). Always in float32,
        also under mixed precision (a float16 product would lose the small
        differences that decide the match). The price of the expansion is
        rounding: an input identical to a memory sample gets a distance of about
        1e-6 of ``mean |x|^2`` instead of exactly 0 (its differences, computed
        directly, are exactly 0); float64 would cost more than the loop it replaces.
        """
        memory = self.features()
        if len(features) != len(memory):
            raise ValueError(f"expected {len(memory)} feature levels, got {len(features)}.")
        total = None
        with torch.autocast(device_type=features[0].device.type, enabled=False):
            for level, (x, bank) in enumerate(zip(features, memory)):
                if tuple(x.shape[1:]) != tuple(bank.shape[1:]):
                    raise ValueError(f"level {level} features have shape {tuple(x.shape[1:])}, the memory "
                                     f"{tuple(bank.shape[1:])}: were they made at another image size?")
                flat = x.float().flatten(1)
                norms = self.bank[f"squared_norm{level}"].unsqueeze(0) + torch.linalg.vecdot(flat, flat).unsqueeze(1)
                squared = torch.addmm(norms, flat, self._flat_transposed(level), alpha=-2.0)
                level_distance = squared.clamp_min(0) / flat.shape[1]
                total = level_distance if total is None else total + level_distance
        return total

    def select(self, features: Sequence[torch.Tensor], exclude: torch.Tensor | None = None) -> MemoryMatch:
        """The best-matching memory sample of each input and ``CI_l = concat(x_l, (x_l - m_{n*,l})^2)``.

        ``exclude``: ``[B]`` long, a memory sample each input may not pick (``-1``: none). Training
        passes the memory slot of the image a simulated anomaly was painted on, so the match is
        never the image itself, as it never is for a test image.
        """
        distances = self.distances(features)
        choice = distances
        if exclude is not None:
            if exclude.shape != (distances.shape[0],):
                raise ValueError(f"exclude must have shape ({distances.shape[0]},), got {tuple(exclude.shape)}.")
            rows = torch.nonzero(exclude >= 0).squeeze(1)
            if rows.numel():
                if len(self) < 2:
                    raise ValueError("excluding a memory sample needs at least 2 samples in the memory.")
                choice = distances.clone()
                choice[rows, exclude[rows]] = float("inf")
        with torch.autocast(device_type=features[0].device.type, enabled=False):
            return _match_from_indices(features, self.features(), choice.argmin(dim=1), distances)

    forward = select

    def images(self) -> torch.Tensor:
        """The memory images ``[N, 3, H, W]`` as floats in ``[0, 1]`` (for figures)."""
        return self.bank["images"].float() / 255


# --------------------------------------------------------------------------- fusion and attention


def spatial_attention_maps(differences: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """MemSeg's spatial attention ``[M1, M2, M3]`` (each ``[B, 1, h_l, w_l]``) from the level differences.

    ``M3 = mean_c(DI_3)``, ``M2 = mean_c(DI_2) * up(M3)``, ``M1 = mean_c(DI_1) * up(M2)``:
    a position is attended to when it differs from the memory at every scale.
    """
    first, second, third = (d.mean(dim=1, keepdim=True) for d in differences)
    m3 = third
    m2 = second * _upsample_to(m3, second.shape[-2:])
    m1 = first * _upsample_to(m2, first.shape[-2:])
    return [m1, m2, m3]


class FusionBlock(nn.Module):
    """One level of the fusion: 3x3 conv-BN-ReLU, coordinate attention, two 3x3 blocks to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _conv_block(in_channels, in_channels)
        self.attention = CoordinateAttention(in_channels)
        self.project = nn.Sequential(_conv_block(in_channels, out_channels), _conv_block(out_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.attention(self.conv(x)))


class MultiScaleFeatureFusion(nn.Module):
    """MemSeg's MSFF module with the spatial attention (see the module docstring).

    Args:
        level_channels: ``(C1, C2, C3)``, the encoder's channels at the memory levels; level
            ``l`` receives ``2 C_l`` channels (features and differences) and gives back ``C_l``.
    """

    def __init__(self, level_channels: Sequence[int]) -> None:
        super().__init__()
        c1, c2, c3 = (int(c) for c in level_channels)
        self.blocks = nn.ModuleList(FusionBlock(2 * c, c) for c in (c1, c2, c3))
        self.align32 = nn.Conv2d(c3, c2, kernel_size=3, padding=1)  # after upsampling level 3 to level 2
        self.align21 = nn.Conv2d(c2, c1, kernel_size=3, padding=1)

    def forward(self, concatenated: Sequence[torch.Tensor],
                differences: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The fused, attention-weighted features ``[F1, F2, F3]`` and the attention maps ``[M1, M2, M3]``."""
        f1, f2, f3 = (block(ci) for block, ci in zip(self.blocks, concatenated))
        f2 = f2 + self.align32(_upsample_to(f3, f2.shape[-2:]))
        f1 = f1 + self.align21(_upsample_to(f2, f1.shape[-2:]))
        attention = spatial_attention_maps(differences)
        return [f * m.to(f.dtype) for f, m in zip((f1, f2, f3), attention)], attention


# --------------------------------------------------------------------------- decoder


class _UpLayer(nn.Module):
    """The paper's upsampling layer: bilinear x2 (to the skip's size), then a conv-BN-ReLU block."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = _conv_block(in_channels, out_channels)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.block(_upsample_to(x, size))


class MemSegDecoder(nn.Module):
    """U-Net decoder from the stride-32 features to 2-class logits at the image size.

    Args:
        deep_channels: channels of the encoder's stride-32 stage.
        level_channels: ``(C1, C2, C3)``, channels of the fused levels (strides 4, 8, 16).
        skip_channels: channels of the stride-2 encoder features.
        width: channels of the two finest decoder stages (public code: 48).
    """

    def __init__(self, deep_channels: int, level_channels: Sequence[int], skip_channels: int, width: int = 48) -> None:
        super().__init__()
        c1, c2, c3 = (int(c) for c in level_channels)
        self.up3, self.conv3 = _UpLayer(deep_channels, c3), nn.Sequential(_conv_block(2 * c3, c3), _conv_block(c3, c3))
        self.up2, self.conv2 = _UpLayer(c3, c2), nn.Sequential(_conv_block(2 * c2, c2), _conv_block(c2, c2))
        self.up1, self.conv1 = _UpLayer(c2, c1), nn.Sequential(_conv_block(2 * c1, c1), _conv_block(c1, c1))
        self.up0 = _UpLayer(c1, width)
        self.conv0 = nn.Sequential(_conv_block(width + skip_channels, width), _conv_block(width, width))
        self.up_out = _UpLayer(width, width)
        self.head = nn.Sequential(_conv_block(width, width), nn.Conv2d(width, 2, kernel_size=3, padding=1))

    def forward(self, deep: torch.Tensor, fused: Sequence[torch.Tensor], skip: torch.Tensor,
                size: Sequence[int]) -> torch.Tensor:
        """Logits ``[B, 2, *size]`` of (normal, anomalous)."""
        f1, f2, f3 = fused
        x = self.conv3(torch.cat((self.up3(deep, f3.shape[-2:]), f3), dim=1))
        x = self.conv2(torch.cat((self.up2(x, f2.shape[-2:]), f2), dim=1))
        x = self.conv1(torch.cat((self.up1(x, f1.shape[-2:]), f1), dim=1))
        x = self.conv0(torch.cat((self.up0(x, skip.shape[-2:]), skip), dim=1))
        return self.head(self.up_out(x, size))


# --------------------------------------------------------------------------- the whole network


@dataclass
class MemSegOutput:
    """Everything MemSeg computes for a batch (what the chapter's figures show).

    Attributes:
        logits: ``[B, 2, H, W]`` per-pixel class logits (normal, anomalous).
        maps: ``[B, 1, H, W]`` pixel anomaly probabilities.
        scores: ``[B]`` image scores (mean of the top-k map values); empty until scored.
        memory_indices: ``[B]`` which memory sample each input was compared with.
        memory_distances: ``[B, N]`` its distance to every memory sample.
        differences: per level, ``[B, 1, h_l, w_l]`` the channel mean of the squared difference.
        attention: ``[M1, M2, M3]``, the spatial attention maps.
    """

    logits: torch.Tensor
    maps: torch.Tensor
    memory_indices: torch.Tensor
    memory_distances: torch.Tensor
    differences: list[torch.Tensor]
    attention: list[torch.Tensor]
    scores: torch.Tensor = field(default_factory=lambda: torch.empty(0))


class MemSegModel(nn.Module):
    """MemSeg's network: encoder, memory module, multi-scale fusion with spatial attention, decoder.

    Args:
        backbone: the encoder's backbone (paper: ``"resnet18"``).
        weights: the encoder's weights (see :class:`MemSegEncoder`).
        decoder_width: channels of the decoder's two finest stages (48).
    """

    def __init__(self, backbone: str = "resnet18", weights: str = "imagenet", decoder_width: int = 48) -> None:
        super().__init__()
        self.encoder = MemSegEncoder(backbone, weights)
        self.memory = MemoryModule()
        self.fusion = MultiScaleFeatureFusion(self.encoder.level_channels)
        self.decoder = MemSegDecoder(self.encoder.deep_channels, self.encoder.level_channels,
                                     self.encoder.skip_channels, decoder_width)

    @torch.no_grad()
    def memory_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The frozen memory-level features of ``images`` (what :meth:`MemoryModule.store` keeps)."""
        return [level.float() for level in self.encoder(images).levels]

    def forward(self, images: torch.Tensor, exclude: torch.Tensor | None = None) -> MemSegOutput:
        """Logits, map, memory match and attention of ``images`` ``[B, 3, H, W]`` (H, W multiples of 32).

        ``exclude``: per input, a memory sample it may not match (``-1``: none; see :meth:`MemoryModule.select`).
        """
        features = self.encoder(images)
        match = self.memory.select([level.detach() for level in features.levels], exclude)
        fused, attention = self.fusion(match.concatenated, match.differences)
        logits = self.decoder(features.deep, fused, features.skip, images.shape[-2:])
        return MemSegOutput(
            logits=logits, maps=anomaly_map_from_logits(logits), memory_indices=match.indices,
            memory_distances=match.distances, differences=[d.mean(dim=1, keepdim=True) for d in match.differences],
            attention=attention,
        )


# --------------------------------------------------------------------------- loss and scoring


def anomaly_map_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """The pixel map: softmax probability of the anomalous class (channel 1), ``[B, 1, H, W]``."""
    return torch.softmax(logits.float(), dim=1)[:, 1:2]


def memseg_loss(logits: torch.Tensor, masks: torch.Tensor, *, l1_weight: float = 0.6, focal_weight: float = 0.4,
                gamma: float = 4.0) -> dict[str, torch.Tensor]:
    """MemSeg's objective: ``l1_weight * L1 + focal_weight * focal`` (paper: 0.6, 0.4, ``gamma = 4``).

    ``L1`` is the mean absolute difference between the anomalous-class
    probability and the mask (it keeps edges sharp); the focal loss
    (:func:`adlearn.nn.focal_loss`, with DRÆM's tiny label smoothing, as the
    public code) concentrates on the few hard pixels of a mostly normal image.

    Returns:
        ``{"loss", "l1", "focal"}``, each a scalar in float32.
    """
    l1 = (anomaly_map_from_logits(logits) - masks.float()).abs().mean()
    focal = focal_loss(logits, masks, gamma=gamma)
    return {"loss": l1_weight * l1 + focal_weight * focal, "l1": l1, "focal": focal}


def image_score_top_k(anomaly_map: torch.Tensor, k: int) -> torch.Tensor:
    """``[B]``: the mean of the ``k`` largest values of each map (all of them when a map has fewer pixels)."""
    if anomaly_map.ndim != 4 or anomaly_map.shape[1] != 1:
        raise ValueError(f"anomaly_map must be [B, 1, H, W], got {tuple(anomaly_map.shape)}.")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    flat = anomaly_map.flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(dim=1)


def warmup_cosine_factor(step: int, steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Learning rate of step ``step`` as a share of the peak: linear warm-up, then cosine decay.

    As the public code's scheduler: from ``min_ratio`` (``min_lr / lr``) up to 1
    over ``warmup_steps``, then down to ``min_ratio`` along half a cosine by the end of ``steps``.
    """
    if step < warmup_steps:
        return min_ratio + (1.0 - min_ratio) * step / warmup_steps
    span = max(1, steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * (1.0 + math.cos(math.pi * progress)) / 2.0


# --------------------------------------------------------------------------- detector


IMAGE_SCORES = ("map", "memory", "fused")  # MemSegConfig.image_score's choices
FUSED_SCORES = ("map", "memory")  # what "fused" standardises and takes the larger of (in this order)


@dataclass(frozen=True)
class MemSegConfig(DetectorConfig):
    """MemSeg's hyper-parameters; the defaults are the paper's values, else the public code's (said where).

    Attributes:
        image_size: side of the square images the network sees (a multiple of 32; paper: 256).
        backbone: the encoder (paper: ``"resnet18"``); see :data:`ENCODER_STAGES`.
        pretrained: ImageNet weights (``True``; random weights with a warning if they cannot be
            had) or deliberately random ones (``False``: what the chapter measures them against).
        memory_size: ``N``, normal training images kept in the memory (paper: 30; fewer if the
            training set is smaller).
        decoder_width: channels of the decoder's two finest stages (public code: 48).
        batch_size: training batch size, half of it with simulated anomalies (paper: 8 = 4 + 4).
        steps: optimiser steps (paper: 2700 iterations).
        lr: peak AdamW learning rate (paper: 0.04; the public code uses 0.003).
        weight_decay: AdamW weight decay (public code: 5e-4).
        warmup_fraction: share of the steps of linear warm-up (public code: 0.1).
        min_lr: learning rate at the start of the warm-up and the end of the cosine (public code: 1e-4).
        l1_weight, focal_weight: weights of the two losses (paper: 0.6 and 0.4).
        focal_gamma: focusing exponent of the focal loss (paper: 4).
        score_top_k: the image score is the mean of this many largest map values (public code: 100 at 256 px).
        foreground: restrict simulated anomalies to the object's foreground (the paper does it for
            object categories; textures fill the whole image, so leave it off for them).
        texture_root: data root holding DTD (``dtd/images/<class>/*.jpg``); ``None``: the default
            data root, then a local copy; without DTD an offline stand-in is used (see
            :func:`adlearn.data.textures.load_texture_images`).
        texture_count: how many anomaly-source textures to load (``None``: all of DTD, or 48 stand-ins).
        grey_textures: turn the texture anomalies' sources grey, for grey products (see
            :func:`adlearn.data.textures.grey_textures` and DRÆM's option of the same name).
        match_excludes_self: in training, an image in the memory may not be matched with itself. With
            the paper's 30 memory images few training images are in the memory; a memory of all of
            them would otherwise teach the decoder from differences that are exactly zero on normal
            pixels, which a test image, never in the memory, does not have.
        image_score: the image score :meth:`MemSeg.predict` returns: ``"map"`` (the paper: the mean of the map's
            ``score_top_k`` largest values), ``"memory"`` (the distance to the nearest memory image,
            ``min_n d_n``, no decoder involved) or ``"fused"`` (the larger of the two, each standardised by
            its mean and spread on the held-out normal images; beyond the paper).
        synthesis: extra keyword arguments for :class:`adlearn.simulation.MemSegSynthesizer`.
    """

    image_size: int = 256
    backbone: str = "resnet18"
    pretrained: bool = True
    memory_size: int = 30
    decoder_width: int = 48
    batch_size: int = 8
    steps: int = 2700
    lr: float = 0.04
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.1
    min_lr: float = 1e-4
    l1_weight: float = 0.6
    focal_weight: float = 0.4
    focal_gamma: float = 4.0
    score_top_k: int = 100
    foreground: bool = False
    texture_root: str | None = None
    texture_count: int | None = None
    grey_textures: bool = False
    match_excludes_self: bool = False
    image_score: str = "map"
    synthesis: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "synthesis", dict(self.synthesis or {}))
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the encoder's deepest stride), "
                             f"got {self.image_size}.")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}.")
        for name in ("memory_size", "decoder_width", "batch_size", "score_top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        if self.image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score must be one of {', '.join(IMAGE_SCORES)}, got {self.image_score!r}.")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (half normal, half simulated anomalies), got {self.batch_size}.")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {self.steps!r}.")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}.")
        if not 0.0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}.")
        if self.focal_gamma < 0 or self.l1_weight < 0 or self.focal_weight < 0:
            raise ValueError("focal_gamma, l1_weight and focal_weight must be >= 0.")


@register("memseg")
class MemSeg(Detector):
    """MemSeg behind the Detector contract (hyper-parameters: :class:`MemSegConfig`).

    Networks: ``networks["memseg"]`` (:class:`MemSegModel`), whose memory module
    (``.memory``) is filled by :meth:`setup` from ``memory_size`` training images and
    saved with the model. Set :attr:`synthesizer` before ``fit`` to train on a ready
    anomaly simulator (default: :meth:`build_synthesizer`).
    """

    Config: ClassVar[type[MemSegConfig]] = MemSegConfig
    INPUT_CHANNELS: ClassVar[int] = 3
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(
            image_size=64, backbone="efficientnet_lite0", memory_size=4, decoder_width=8, batch_size=4, steps=12,
            lr=3e-3, texture_count=8, score_top_k=8, match_excludes_self=True,
        ),
        # book: sized for 2 CPU cores: the offline ImageNet EfficientNet-Lite0 at 128 px, about 2.6 training
        # steps/s on one thread (benchmarks/bench_memseg.py); the public code's lr (0.04 is the paper's, for
        # 2700 steps); the top-k scaled with the image area (100 of 256^2 -> 25 of 128^2). 1500 steps (about
        # 10 minutes on one thread), not the former 500: measured on every data set at once, not per category
        # (benchmarks/README.md, seed 0: gravel 0.938 -> 0.984, MTD 0.779 -> 0.822 image AUROC). A memory of every
        # training image (up to 1000), each never matched with itself in training: on Magnetic Tile Defects, whose
        # tiles vary far more than 30 images cover, seed 0 went from 0.822 to 0.967 image AUROC (a memory of all
        # without the exclusion: 0.836; on gravel, where it is 0.699, the exclusion is what makes it usable). Measured on
        # every data set, not chosen per category; it costs gravel 0.956 -> 0.942 (seed 0; benchmarks/README.md).
        "book": dict(
            image_size=128, backbone="efficientnet_lite0", decoder_width=32, steps=1500, lr=3e-3,
            score_top_k=25, memory_size=1000, match_excludes_self=True,
        ),
        "paper": {},
    }

    config: MemSegConfig
    #: the anomaly simulator ``fit`` trains on; ``None`` builds one (:meth:`build_synthesizer`)
    synthesizer: Any = None

    def build_networks(self) -> dict[str, nn.Module]:
        c = self.config
        weights = "none" if self.restoring else ("imagenet" if c.pretrained else "random")
        model = MemSegModel(c.backbone, weights, c.decoder_width)
        if not self.restoring:
            extractor = model.encoder.extractor
            self.info.update(backbone=extractor.name, backbone_weights=extractor.weights_source,
                             backbone_pretrained=extractor.pretrained)
        return {"memseg": model}

    @property
    def model(self) -> MemSegModel:
        return self.networks["memseg"]

    @property
    def memory(self) -> MemoryModule:
        return self.model.memory

    # ------------------------------------------------------------------ setup and training

    def default_steps(self, num_images: int) -> int:
        return int(self.config.steps)

    def build_synthesizer(self, verbose: bool = True, **options: Any) -> Any:
        """The anomaly simulator MemSeg trains on (:class:`adlearn.simulation.MemSegSynthesizer`).

        Texture anomalies come from DTD where it is found (else the offline stand-in, said so);
        ``options`` take precedence over the ``synthesis`` hyper-parameter.
        """
        from adlearn.data.textures import load_texture_images
        from adlearn.simulation import MemSegSynthesizer

        c = self.config
        textures = load_texture_images(
            c.texture_root, image_size=c.image_size, count=c.texture_count, seed=c.seed, dtype=torch.uint8,
            verbose=verbose, grey=c.grey_textures,
        )
        return MemSegSynthesizer(textures, **{"use_foreground": c.foreground, **c.synthesis, **options})

    @torch.no_grad()
    def setup(self, images: torch.Tensor) -> None:
        """Fill the memory with ``memory_size`` training images (a seeded choice) and build the synthesizer."""
        c = self.config
        if self.synthesizer is None:
            self.synthesizer = self.build_synthesizer(verbose=True)
        count = min(c.memory_size, images.shape[0])
        chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(c.seed + 2))[:count]
        memory_images = images[chosen.to(images.device)]
        self.memory_sources = chosen  # which training image fills each memory slot (training only, not saved)
        self.model.eval()
        parts = [self.model.memory_features(chunk) for chunk in memory_images.split(c.predict_batch_size)]
        self.memory.store([torch.cat(level) for level in zip(*parts)], images=memory_images)
        self.info.update(memory_images=count)

    def training_plan(self, images: torch.Tensor, steps: int) -> TrainingPlan:
        c = self.config
        model = self.model
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=c.lr, weight_decay=c.weight_decay)
        warmup = int(steps * c.warmup_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: warmup_cosine_factor(i, steps, warmup, c.min_lr / c.lr)
        )
        foreground_masks = None
        if getattr(self.synthesizer, "use_foreground", False):
            from adlearn.simulation import foreground_masks as object_masks

            # once per training image instead of once per batch
            foreground_masks = torch.cat([object_masks(chunk, polarity=self.synthesizer.foreground_polarity,
                                                       kernel_size=self.synthesizer.morphology_kernel)
                                          for chunk in images.split(64)])
        # each training image's memory slot (-1: not in the memory), so a batch can leave its own images out of
        # the match
        slots = None
        if c.match_excludes_self:
            slots = torch.full((images.shape[0],), -1, dtype=torch.long, device=images.device)
            slots[self.memory_sources.to(images.device)] = torch.arange(self.memory_sources.numel(), device=images.device)
        # random numbers are drawn on the CPU and the work done on the training device (see DRAEM); the sampler
        # draws row indices, so each image comes with its own mask and memory slot
        batches = random_batches(torch.arange(images.shape[0], device=images.device), c.batch_size,
                                 torch.Generator().manual_seed(c.seed))
        synthesis_generator = torch.Generator().manual_seed(c.seed + 1)
        synthesizer = self.synthesizer

        def step(_: int) -> dict[str, Any]:
            rows = next(batches)
            batch = images[rows]
            exclude = slots[rows] if slots is not None else None
            if foreground_masks is not None:
                synthetic = synthesizer(batch, synthesis_generator, foreground=foreground_masks[rows])
            else:
                synthetic = synthesizer(batch, synthesis_generator)
            with self.trainer.autocast():
                logits = model(synthetic.images, exclude).logits
            losses = memseg_loss(logits, synthetic.masks, l1_weight=c.l1_weight, focal_weight=c.focal_weight,
                                 gamma=c.focal_gamma)
            self.trainer.backward(losses["loss"])
            logged: dict[str, Any] = {name: value.detach() for name, value in losses.items()}
            logged["lr"] = optimizer.param_groups[0]["lr"]  # the rate this step used
            return logged

        return TrainingPlan(step, {"adamw": optimizer}, schedulers={"warmup_cosine": scheduler},
                            random_state={"batches": batches, "synthesis": synthesis_generator})

    # ------------------------------------------------------------------ inference

    def _raw_scores(self, output: MemSegOutput) -> dict[str, torch.Tensor]:
        """``{"map": [B], "memory": [B]}``: the map's top-k mean and the distance to the nearest memory image."""
        return {"map": image_score_top_k(output.maps, self.config.score_top_k),
                "memory": output.memory_distances.min(dim=1).values}

    def _scores(self, output: MemSegOutput) -> dict[str, torch.Tensor]:
        scores = self._raw_scores(output)
        if "image_score_stats" in self.calibration:  # fitted in calibrate, before the base scores held-out images
            scores["fused"] = fused_score(scores, FUSED_SCORES, self.calibration["image_score_stats"])
        return scores

    def _forward(self, images: torch.Tensor) -> MemSegOutput:
        output = self.model(images)
        output.scores = self._scores(output)[self.config.image_score]
        return output

    def calibrate(self, held_out: torch.Tensor) -> None:
        """The fused score's standardisation (each raw score's mean and std on ``held_out``), then the base's."""
        self.calibration["image_score_stats"] = score_statistics(
            (self._raw_scores(self.model(chunk)) for chunk in self.prepared_batches(held_out)), FUSED_SCORES)
        super().calibrate(held_out)

    @torch.no_grad()
    def image_score_variants(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every image score of ``images`` (on the device, at ``image_size``) by name: ``"map"``, ``"memory"``,
        ``"fused"`` (see ``MemSegConfig.image_score``). A benchmark compares them on one trained model."""
        return self._scores(self.model(images))

    def score_batch(self, images: torch.Tensor) -> Prediction:
        output = self._forward(images)
        return Prediction(scores=output.scores, maps=output.maps)

    @torch.no_grad()
    def inspect(self, images: torch.Tensor, batch_size: int | None = None) -> MemSegOutput:
        """Everything MemSeg computes for ``images`` ``[B, 3, H, W]`` in ``[0, 1]``, on the CPU.

        ``maps`` and ``logits`` come back at the input size; the memory match,
        the per-level differences and the attention maps at the encoder's
        resolutions (strides 4, 8, 16), as the network saw them.
        """
        self.require_fitted()
        self.networks.eval()
        parts = [self._forward(chunk) for chunk in self.prepared_batches(images, batch_size)]
        size = tuple(images.shape[-2:])
        join = lambda name: torch.cat([getattr(p, name) for p in parts]).cpu()  # noqa: E731
        per_level = lambda name: [torch.cat([getattr(p, name)[i] for p in parts]).cpu() for i in range(3)]  # noqa: E731
        return MemSegOutput(
            logits=resize_maps(join("logits").float(), size), maps=resize_maps(join("maps"), size),
            scores=join("scores"), memory_indices=join("memory_indices"), memory_distances=join("memory_distances"),
            differences=per_level("differences"), attention=per_level("attention"),
        )

    def memory_images(self) -> torch.Tensor:
        """The images in the memory ``[N, 3, S, S]`` (floats in ``[0, 1]``, on the CPU)."""
        self.require_fitted()
        return self.memory.images().cpu()
