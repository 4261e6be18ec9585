"""MemSeg's anomaly simulator, batched: texture and structure anomalies inside the object's foreground.

MemSeg (Yang et al., 2022) builds on DRÆM's recipe in three steps:

1. **Where**: a thresholded, rotated Perlin mask ``M_p``, multiplied for object
   categories by a foreground mask ``M_i`` (Otsu threshold of the grey image,
   cleaned with a morphological opening and closing), so anomalies do not land
   on the background: ``M = M_p * M_i``.
2. **What**: either a *texture* anomaly (a DTD texture) or a *structure*
   anomaly: the image itself, changed by 3 random augmentations, cut into a
   grid of cells (the paper: 4 x 8; the public code: 8 x 8) and shuffled.
3. **Blend** with opacity ``delta`` uniform in ``[0.15, 1]``:
   ``I_a = (1 - M) * I + M * (delta * S + (1 - delta) * I)``.

Half of each batch stays normal (the paper's batches hold 4 normal and 4
simulated images; the public code alternates). Texture and structure anomalies
are equally likely.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from adlearn.simulation._validation import check_probability, check_range_pair, check_unit_images, generator_device
from adlearn.simulation.augment import DRAEM_AUGMENTATIONS, Augmentation, apply_augmentation_plan, grayscale, sample_augmentation_plan
from adlearn.simulation.batch import RowSplit, SyntheticBatch, TextureBank
from adlearn.simulation.draem import blend_in, choose_anomalous
from adlearn.simulation.perlin import perlin_masks

__all__ = [
    "MemSegSynthesizer",
    "otsu_threshold",
    "foreground_masks",
    "binary_opening",
    "binary_closing",
    "shuffle_grid",
    "NO_ANOMALY",
    "TEXTURE_ANOMALY",
    "STRUCTURE_ANOMALY",
]

#: values of ``SyntheticBatch.kinds`` for MemSeg batches
NO_ANOMALY, TEXTURE_ANOMALY, STRUCTURE_ANOMALY = 0, 1, 2

Polarity = Literal["auto", "dark", "bright"]


def otsu_threshold(grey: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold of each grey image ``[B, 1, H, W]`` in ``[0, 1]``, as a level 0..255 (long ``[B]``).

    Pixels whose level (``round(255 * x)``) is above the threshold form one class,
    the rest the other; the threshold maximises the between-class variance
    (OpenCV's ``THRESH_OTSU`` on the ``uint8`` image gives the same level).
    """
    levels = torch.round(grey.clamp(0, 1) * 255).long().flatten(1)
    counts = torch.zeros(levels.shape[0], 256, device=grey.device, dtype=torch.float64)
    counts.scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float64))
    probability = counts / counts.sum(dim=1, keepdim=True)
    axis = torch.arange(256, device=grey.device, dtype=torch.float64)
    weight_low = probability.cumsum(dim=1)  # class "<= t"
    mean_low = (probability * axis).cumsum(dim=1)
    mean_total = mean_low[:, -1:]
    denominator = weight_low * (1 - weight_low)
    between = (mean_total * weight_low - mean_low) ** 2 / torch.where(denominator > 1e-12, denominator, torch.ones_like(denominator))
    between = torch.where(denominator > 1e-12, between, torch.zeros_like(between))
    return between.argmax(dim=1)


def _dilate(masks: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return F.max_pool2d(masks, kernel_size, stride=1, padding=kernel_size // 2)


def _erode(masks: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return -F.max_pool2d(-masks, kernel_size, stride=1, padding=kernel_size // 2)


def binary_opening(masks: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Erosion then dilation with a square kernel: removes specks smaller than the kernel."""
    return _dilate(_erode(masks, kernel_size), kernel_size)


def binary_closing(masks: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Dilation then erosion with a square kernel: fills holes and gaps smaller than the kernel."""
    return _erode(_dilate(masks, kernel_size), kernel_size)


def foreground_masks(
    images: torch.Tensor, *, polarity: Polarity = "auto", kernel_size: int | None = None
) -> torch.Tensor:
    """MemSeg's object masks: Otsu threshold of the grey image, then opening and closing.

    Args:
        images: ``[B, 3, H, W]`` floats in ``[0, 1]``.
        polarity: which Otsu class is the object: ``"dark"`` (MemSeg's public
            code: pixels at or below the threshold), ``"bright"``, or ``"auto"``:
            the class that covers less of the image border (the background
            usually frames the object).
        kernel_size: odd side of the square structuring element; default about
            ``H / 50`` (5 at 256 pixels, at least 3).

    Returns:
        ``[B, 1, H, W]`` floats in ``{0, 1}``.
    """
    check_unit_images(images, "images")
    if polarity not in ("auto", "dark", "bright"):
        raise ValueError(f"polarity must be 'auto', 'dark' or 'bright', got {polarity!r}.")
    height = images.shape[2]
    if kernel_size is None:
        kernel_size = max(3, (height // 50) | 1)
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}.")
    grey = grayscale(images)
    threshold = otsu_threshold(grey).view(-1, 1, 1, 1)
    bright = (torch.round(grey.clamp(0, 1) * 255) > threshold).to(images.dtype)
    if polarity == "bright":
        masks = bright
    elif polarity == "dark":
        masks = 1 - bright
    else:
        border = torch.ones_like(bright[:1, :1])
        border[..., 1:-1, 1:-1] = 0
        bright_border_share = (bright * border).sum(dim=(1, 2, 3)) / border.sum()
        # The background owns the border: if bright pixels dominate it, the object is dark.
        masks = torch.where((bright_border_share > 0.5).view(-1, 1, 1, 1), 1 - bright, bright)
    return binary_closing(binary_opening(masks, kernel_size), kernel_size)


def shuffle_grid(images: torch.Tensor, grid: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut each image into ``grid = (rows, cols)`` equal cells and shuffle them (one permutation per image).

    Raises:
        ValueError: the image size is not a multiple of the grid.
    """
    batch, channels, height, width = images.shape
    rows, cols = grid
    if height % rows or width % cols:
        raise ValueError(
            f"structure_grid {grid} must divide the image size {(height, width)} exactly; "
            "choose a grid whose rows divide the height and whose columns divide the width."
        )
    cell_h, cell_w = height // rows, width // cols
    cells = images.reshape(batch, channels, rows, cell_h, cols, cell_w).permute(0, 2, 4, 1, 3, 5)
    cells = cells.reshape(batch, rows * cols, channels, cell_h, cell_w)
    order = torch.rand(batch, rows * cols, generator=generator, device=generator_device(generator)).argsort(dim=1)
    order = order.to(images.device)
    shuffled = torch.gather(cells, 1, order.view(batch, -1, 1, 1, 1).expand_as(cells))
    shuffled = shuffled.reshape(batch, rows, cols, channels, cell_h, cell_w).permute(0, 3, 1, 4, 2, 5)
    return shuffled.reshape(batch, channels, height, width)


class MemSegSynthesizer:
    """Makes MemSeg training batches: ``synth(images) -> SyntheticBatch`` (``kinds``: 0 none, 1 texture, 2 structure).

    Args:
        textures: texture sources ``[N, 3, h, w]`` for texture anomalies; ``None``
            makes every anomaly a structure anomaly (as the public code without a DTD folder).
        anomaly_probability: share of anomalous samples (0.5).
        balanced: exactly ``round(p * B)`` anomalous samples per batch (MemSeg's 4 + 4).
        texture_probability: chance that an anomaly is a texture one rather than a structure one.
        perlin_scale, min_perlin_scale, threshold, rotation: the Perlin mask, as DRÆM.
        opacity: range of the blend weight ``delta`` (``(0.15, 1.0)``).
        structure_grid: ``(rows, cols)`` of the shuffled grid (must divide the image size).
        augmentations: candidates for the structure anomaly's augmentation.
        augmentations_per_sample: how many each structure source gets (3).
        use_foreground: restrict anomalies to the object (for object categories).
        foreground_polarity: see :func:`foreground_masks`.
        morphology_kernel: see ``kernel_size`` of :func:`foreground_masks`.
        keep_sources: also return the anomaly sources as ``SyntheticBatch.sources``
            (for figures and checks; training does not need them, and they cost a copy).
    """

    def __init__(
        self,
        textures: torch.Tensor | None = None,
        *,
        anomaly_probability: float = 0.5,
        balanced: bool = True,
        texture_probability: float = 0.5,
        perlin_scale: int = 6,
        min_perlin_scale: int = 0,
        threshold: float = 0.5,
        rotation: tuple[float, float] = (-90.0, 90.0),
        opacity: tuple[float, float] = (0.15, 1.0),
        structure_grid: tuple[int, int] = (8, 8),
        augmentations: Sequence[Augmentation] = DRAEM_AUGMENTATIONS,
        augmentations_per_sample: int = 3,
        use_foreground: bool = False,
        foreground_polarity: Polarity = "auto",
        morphology_kernel: int | None = None,
        keep_sources: bool = False,
    ) -> None:
        self.textures = None if textures is None else (textures if isinstance(textures, TextureBank) else TextureBank(textures))
        self.anomaly_probability = check_probability(anomaly_probability, "anomaly_probability")
        self.balanced = bool(balanced)
        self.texture_probability = check_probability(texture_probability, "texture_probability") if self.textures is not None else 0.0
        if not 0 <= min_perlin_scale < perlin_scale:
            raise ValueError(
                f"need 0 <= min_perlin_scale < perlin_scale, got min_perlin_scale={min_perlin_scale}, perlin_scale={perlin_scale}."
            )
        self.perlin_scale, self.min_perlin_scale = int(perlin_scale), int(min_perlin_scale)
        self.threshold = float(threshold)
        self.rotation = check_range_pair(rotation, "rotation", -360.0, 360.0)
        self.opacity = check_range_pair(opacity, "opacity", 0.0, 1.0)
        rows, cols = (int(v) for v in structure_grid)
        if rows < 1 or cols < 1:
            raise ValueError(f"structure_grid must be two positive ints (rows, cols), got {structure_grid!r}.")
        self.structure_grid = (rows, cols)
        self.augmentations = tuple(augmentations)
        if not 0 <= augmentations_per_sample <= len(self.augmentations):
            raise ValueError(f"augmentations_per_sample must be in [0, {len(self.augmentations)}], got {augmentations_per_sample}.")
        self.augmentations_per_sample = int(augmentations_per_sample)
        self.use_foreground = bool(use_foreground)
        if foreground_polarity not in ("auto", "dark", "bright"):
            raise ValueError(f"foreground_polarity must be 'auto', 'dark' or 'bright', got {foreground_polarity!r}.")
        self.foreground_polarity = foreground_polarity
        self.morphology_kernel = morphology_kernel
        self.keep_sources = bool(keep_sources)

    def __repr__(self) -> str:
        textures = "no textures" if self.textures is None else f"{len(self.textures)} textures"
        return (
            f"MemSegSynthesizer({textures}, anomaly_probability={self.anomaly_probability}, "
            f"texture_probability={self.texture_probability}, opacity={self.opacity}, "
            f"structure_grid={self.structure_grid}, use_foreground={self.use_foreground})"
        )

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        foreground: torch.Tensor | None = None,
    ) -> SyntheticBatch:
        """Add MemSeg anomalies to part of ``images`` ``[B, 3, H, W]`` (floats in ``[0, 1]``).

        Args:
            images: the normal images.
            generator: random source.
            foreground: optional precomputed object masks ``[B, 1, H, W]`` (e.g. from
                :func:`foreground_masks` once per training image); used instead of
                computing them when ``use_foreground`` is set.
        """
        check_unit_images(images, "images")
        batch, _, height, width = images.shape
        rows, cols = self.structure_grid
        if height % rows or width % cols:
            raise ValueError(
                f"structure_grid {self.structure_grid} must divide the image size {(height, width)} exactly."
            )
        device, dtype = images.device, images.dtype
        draw_device = generator_device(generator)
        if self.use_foreground and foreground is not None and tuple(foreground.shape) != (batch, 1, height, width):
            raise ValueError(f"foreground must have shape {(batch, 1, height, width)}, got {tuple(foreground.shape)}.")
        split = RowSplit(choose_anomalous(batch, self.anomaly_probability, self.balanced, generator), device)
        count = split.count
        if count == 0:
            return SyntheticBatch.unchanged(images, keep_sources=self.keep_sources, with_kinds=True)
        member_images = images.index_select(0, split.members_device)
        use_texture = (torch.rand(count, generator=generator, device=draw_device) < self.texture_probability).cpu()
        low, high = self.opacity
        deltas = low + (high - low) * torch.rand(count, generator=generator, device=draw_device)
        member_masks, _ = perlin_masks(
            (height, width),
            count,
            min_perlin_scale=self.min_perlin_scale,
            perlin_scale=self.perlin_scale,
            threshold=self.threshold,
            rotation=self.rotation,
            generator=generator,
            device=device,
        )
        member_masks = member_masks.to(dtype)
        if self.use_foreground:
            if foreground is not None:
                member_foreground = foreground.to(device, dtype).index_select(0, split.members_device)
            else:
                member_foreground = foreground_masks(member_images, polarity=self.foreground_polarity, kernel_size=self.morphology_kernel)
            member_masks = member_masks * (member_foreground > 0.5).to(dtype)

        # Structure sources for the members that drew "structure", texture sources for the rest.
        kind_split = RowSplit(~use_texture, device)
        structure_sources = member_images[:0]
        if kind_split.count:
            plan = sample_augmentation_plan(kind_split.count, self.augmentations, self.augmentations_per_sample, generator)
            augmented_self = apply_augmentation_plan(member_images.index_select(0, kind_split.members_device), plan)
            structure_sources = shuffle_grid(augmented_self, self.structure_grid, generator)
        texture_sources = member_images[:0]
        if count - kind_split.count:
            assert self.textures is not None  # texture_probability is 0 without textures
            texture_indices = self.textures.random_indices(count - kind_split.count, generator)
            texture_sources = self.textures.gather(texture_indices, (height, width), device, dtype)
        member_sources = kind_split.merge(structure_sources, texture_sources)
        member_kinds = torch.where(use_texture, TEXTURE_ANOMALY, STRUCTURE_ANOMALY).to(device)
        member_opacity = deltas.to(device, dtype)

        others = images.index_select(0, split.others_device)
        augmented = split.merge(blend_in(member_images, member_sources, member_masks, member_opacity), others)
        sources = split.merge(member_sources, others) if self.keep_sources else None
        masks = split.merge(member_masks, member_masks.new_zeros(batch - count, 1, height, width))
        opacity = split.merge(member_opacity, member_opacity.new_zeros(batch - count))
        kinds = split.merge(member_kinds, member_kinds.new_zeros(batch - count))
        labels = masks.flatten(1).amax(dim=1)
        kinds = torch.where(labels > 0, kinds, torch.zeros_like(kinds))
        return SyntheticBatch(images=augmented, masks=masks, labels=labels, sources=sources, opacity=opacity, kinds=kinds)
