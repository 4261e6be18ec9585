"""FeatureKNN: the yardstick — pretrained features and a nearest normal patch, no training at all.

Each training image goes once through a frozen ImageNet backbone; its feature
maps at two strides (8 and 16) are brought to the finer grid, averaged over a
3 x 3 neighbourhood (so a patch sees a little context) and concatenated. All
these patch vectors form the **memory bank** of normal patches. A test patch is
scored by its Euclidean distance to the nearest vector in the bank; the map is
that distance upsampled to the image and smoothed, the image score its maximum.

This is PatchCore (Roth et al., CVPR 2022) without its refinements, and with
its coreset as an option: ``coreset_fraction < 1`` keeps a greedy k-centre
subset of the bank (chosen on a random projection, as in the paper), which
makes prediction proportionally faster at little cost in accuracy.

Every later chapter compares against it: "a model with no training gets X here".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adlearn.methods.base import BufferDict, Detector, DetectorConfig, Prediction, register
from adlearn.nn.backbones import FeatureExtractor


@dataclass(frozen=True)
class FeatureKNNConfig(DetectorConfig):
    """FeatureKNN's hyper-parameters; defaults follow PatchCore (WRN50-2 layers 2 and 3, 10 % coreset).

    Attributes:
        backbone: a name of :data:`adlearn.nn.backbones.BACKBONES`.
        strides: the two (or more) feature strides whose maps are concatenated; the first is the grid.
        neighbourhood: side of the average pooling that gives each patch its context (PatchCore: 3).
        coreset_fraction: share of the bank kept by greedy k-centre selection (1 = the whole bank).
        projection_dim: dimension of the random projection the coreset is chosen on (PatchCore: 128).
        blur_sigma: standard deviation in pixels (at ``image_size``) of the Gaussian that smooths the map (4).
    """

    backbone: str = "wide_resnet50_2"
    strides: tuple[int, ...] = (8, 16)
    neighbourhood: int = 3
    coreset_fraction: float = 0.1
    projection_dim: int = 128
    blur_sigma: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "strides", tuple(self.strides))
        if not 0.0 < self.coreset_fraction <= 1.0:
            raise ValueError(f"coreset_fraction must be in (0, 1], got {self.coreset_fraction!r}.")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be a positive odd int, got {self.neighbourhood!r}.")
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma!r}.")


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of ``[B, 1, H, W]`` maps, truncated at 4 sigma, reflect padding."""
    if sigma <= 0:
        return maps
    radius = min(int(math.ceil(4 * sigma)), min(maps.shape[-2:]) - 1)
    offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    maps = F.conv2d(F.pad(maps, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(maps, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def greedy_coreset(features: torch.Tensor, count: int, projection_dim: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``count`` rows of ``features`` chosen by greedy k-centre selection (PatchCore's coreset).

    Each new centre is the row farthest from every centre so far, so the subset
    covers the bank's extremes instead of its dense middle. Distances are taken
    on a random Gaussian projection to ``projection_dim`` dimensions (cheaper,
    distances nearly kept: Johnson-Lindenstrauss).
    """
    if count >= features.shape[0]:
        return torch.arange(features.shape[0], device=features.device)
    if features.shape[1] > projection_dim:
        matrix = torch.randn(features.shape[1], projection_dim, generator=generator) / math.sqrt(projection_dim)
        features = features @ matrix.to(features.device)
    squared_norms = features.pow(2).sum(1)
    chosen = torch.empty(count, dtype=torch.long, device=features.device)
    chosen[0] = int(torch.randint(features.shape[0], (1,), generator=generator))
    nearest = torch.full_like(squared_norms, float("inf"))
    for i in range(count):
        if i:
            chosen[i] = torch.argmax(nearest)
        centre = features[chosen[i]]
        # |f - c|^2 = |f|^2 - 2 f.c + |c|^2 as one matrix-vector product (20x faster than f - c)
        distances = torch.addmv(squared_norms + centre.pow(2).sum(), features, centre, alpha=-2)
        torch.minimum(nearest, distances, out=nearest)
    return chosen


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Euclidean distance of each row of ``queries`` to its nearest row of ``bank`` (in chunks: memory)."""
    bank_norms = bank.pow(2).sum(1)
    parts = []
    for part in queries.split(chunk):
        squared = part.pow(2).sum(1, keepdim=True) - 2 * part @ bank.T + bank_norms
        parts.append(squared.amin(1).clamp_min(0).sqrt())
    return torch.cat(parts)


@register("feature_knn")
class FeatureKNN(Detector):
    """Frozen pretrained patch features and the distance to the nearest normal patch (hyper-parameters: :class:`FeatureKNNConfig`)."""

    Config: ClassVar[type[FeatureKNNConfig]] = FeatureKNNConfig
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        # the offline ImageNet backbone (no download) at the book's sizes; the map blur scaled with the image
        "quick": dict(image_size=64, backbone="efficientnet_lite0", blur_sigma=1.0),
        "book": dict(image_size=128, backbone="efficientnet_lite0", blur_sigma=2.0),
        "paper": {},
    }

    config: FeatureKNNConfig

    def build_networks(self) -> dict[str, nn.Module]:
        weights = "none" if self.restoring else "imagenet"  # a saved model brings its own weights
        backbone = FeatureExtractor(self.config.backbone, strides=self.config.strides, weights=weights)
        if not self.restoring:
            self.info.update(backbone=backbone.name, backbone_weights=backbone.weights_source,
                             backbone_pretrained=backbone.pretrained)
        return {"backbone": backbone, "memory": BufferDict()}

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, D, h, w]`` patch vectors on the finest requested stride's grid."""
        maps = self.networks["backbone"](images)
        grid = maps[0].shape[-2:]
        pool = self.config.neighbourhood
        maps = [F.avg_pool2d(m, pool, stride=1, padding=pool // 2) for m in maps]
        maps = [m if m.shape[-2:] == grid else F.interpolate(m, size=grid, mode="bilinear", align_corners=False)
                for m in maps]
        return torch.cat(maps, dim=1)

    @torch.no_grad()
    def setup(self, images: torch.Tensor) -> None:
        """Build the memory bank from the training images (and thin it to a coreset)."""
        features = torch.cat([self.patch_features(chunk) for chunk in images.split(self.config.predict_batch_size)])
        bank = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        count = max(1, int(round(bank.shape[0] * self.config.coreset_fraction)))
        generator = torch.Generator().manual_seed(self.config.seed)
        bank = bank[greedy_coreset(bank, count, self.config.projection_dim, generator)]
        self.networks["memory"]["bank"] = bank.contiguous()
        self.info.update(memory_bank=int(bank.shape[0]), patches_seen=int(features.shape[0] * features[0, 0].numel()))

    def score_batch(self, images: torch.Tensor) -> Prediction:
        features = self.patch_features(images)
        batch, dim, height, width = features.shape
        distances = nearest_distances(features.permute(0, 2, 3, 1).reshape(-1, dim), self.networks["memory"]["bank"])
        patch_map = distances.view(batch, 1, height, width)
        maps = F.interpolate(patch_map, size=images.shape[-2:], mode="bilinear", align_corners=False)
        maps = gaussian_blur(maps, self.config.blur_sigma)
        return Prediction(scores=patch_map.flatten(1).amax(1), maps=maps)
