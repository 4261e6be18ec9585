"""DRÆM's anomaly simulator, batched: Perlin-shaped patches of an augmented texture blended into the image.

For an anomaly-free image ``I`` DRÆM (Zavrtanik et al., ICCV 2021) makes

    I_a = (1 - M) * I + (1 - beta) * (M * I) + beta * (M * A)

where ``M`` is a thresholded, rotated Perlin noise map (lattice ``2^k`` cells per
axis, ``k`` uniform in ``[0, 6)``, threshold 0.5, rotation in ``[-90, 90]``
degrees), ``A`` is a texture (DTD) changed by 3 augmentations drawn from the set
of :data:`~adlearn.simulation.augment.DRAEM_AUGMENTATIONS`, and ``beta`` is the
opacity of the texture, uniform in ``[0.1, 1.0]`` (the paper). The reference code
draws ``1 - beta`` as ``U[0, 0.8)``, i.e. ``beta`` in ``(0.2, 1.0]``; pass
``beta=(0.2, 1.0)`` to follow it. About half of the samples (``no_anomaly > 0.5``
in the reference code) stay anomaly-free, and a sample whose mask came out empty
is labelled normal.

The reference loader also rotates 30% of the *normal* images by up to 90 degrees
before synthesis; that is data augmentation of the training image (the
reconstruction target changes too), so it is left to the DRÆM method.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adlearn.simulation._validation import check_probability, check_range_pair, check_unit_images, generator_device
from adlearn.simulation.augment import DRAEM_AUGMENTATIONS, Augmentation, apply_augmentation_plan, sample_augmentation_plan
from adlearn.simulation.batch import RowSplit, SyntheticBatch, TextureBank
from adlearn.simulation.perlin import perlin_masks

__all__ = ["DraemSynthesizer", "choose_anomalous", "blend_in"]


def choose_anomalous(
    batch: int, probability: float, balanced: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Which samples get an anomaly: bool ``[batch]`` on the generator's device.

    ``balanced=False`` flips a coin per sample (DRÆM's loader); ``balanced=True``
    makes exactly ``round(probability * batch)`` anomalous, at random positions
    (MemSeg's batches of 4 normal and 4 anomalous images).
    """
    device = generator_device(generator)
    if balanced:
        count = int(round(probability * batch))
        order = torch.randperm(batch, generator=generator, device=device)
        chosen = torch.zeros(batch, dtype=torch.bool, device=device)
        chosen[order[:count]] = True
        return chosen
    return torch.rand(batch, generator=generator, device=device) < probability


def blend_in(images: torch.Tensor, sources: torch.Tensor, masks: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """``(1 - opacity) * image + opacity * source`` inside ``masks``, the image untouched outside.

    Computed with ``torch.lerp`` (one fused pass): where the weight ``mask * opacity``
    is 0 it returns the image exactly, so every pixel outside the mask stays
    bit-for-bit equal to the input ("changed pixels lie in the mask" holds exactly).
    """
    weight = masks * opacity.view(-1, 1, 1, 1).to(images.dtype)  # [B, 1, H, W], a third of the image's size
    return torch.lerp(images, sources, weight).clamp_(0, 1)


class DraemSynthesizer:
    """Makes DRÆM training batches: ``synth(images) -> SyntheticBatch``.

    Args:
        textures: anomaly sources ``[N, 3, h, w]`` (floats in ``[0, 1]`` or ``uint8``),
            e.g. :func:`adlearn.data.textures.load_texture_images`; resized to the
            images on the fly.
        anomaly_probability: chance that a sample gets an anomaly (DRÆM: 0.5).
        perlin_scale: lattice exponents are drawn in ``[min_perlin_scale, perlin_scale)``.
        min_perlin_scale: see ``perlin_scale``.
        threshold: Perlin values above it form the mask (0.5).
        beta: range of the texture's opacity (paper: ``(0.1, 1.0)``).
        rotation: range of the Perlin map's rotation, degrees.
        augmentations: candidate augmentations of the texture.
        augmentations_per_sample: how many distinct ones each texture gets (3).
        balanced: exactly ``round(p * B)`` anomalous samples per batch instead of a coin per sample.
        keep_sources: also return the augmented textures as ``SyntheticBatch.sources``
            (for figures and checks; training does not need them, and they cost a copy).

    Example:
        >>> synth = DraemSynthesizer(load_texture_images(image_size=256, count=64))
        >>> batch = synth(images, generator=torch.Generator().manual_seed(0))
        >>> batch.images.shape, batch.masks.shape, batch.labels.shape
        (torch.Size([8, 3, 256, 256]), torch.Size([8, 1, 256, 256]), torch.Size([8]))
    """

    def __init__(
        self,
        textures: torch.Tensor,
        *,
        anomaly_probability: float = 0.5,
        perlin_scale: int = 6,
        min_perlin_scale: int = 0,
        threshold: float = 0.5,
        beta: tuple[float, float] = (0.1, 1.0),
        rotation: tuple[float, float] = (-90.0, 90.0),
        augmentations: Sequence[Augmentation] = DRAEM_AUGMENTATIONS,
        augmentations_per_sample: int = 3,
        balanced: bool = False,
        keep_sources: bool = False,
    ) -> None:
        self.textures = textures if isinstance(textures, TextureBank) else TextureBank(textures)
        self.anomaly_probability = check_probability(anomaly_probability, "anomaly_probability")
        if not 0 <= min_perlin_scale < perlin_scale:
            raise ValueError(
                f"need 0 <= min_perlin_scale < perlin_scale, got min_perlin_scale={min_perlin_scale}, perlin_scale={perlin_scale}."
            )
        self.perlin_scale = int(perlin_scale)
        self.min_perlin_scale = int(min_perlin_scale)
        self.threshold = float(threshold)
        self.beta = check_range_pair(beta, "beta", 0.0, 1.0)
        self.rotation = check_range_pair(rotation, "rotation", -360.0, 360.0)
        self.augmentations = tuple(augmentations)
        if not 0 <= augmentations_per_sample <= len(self.augmentations):
            raise ValueError(
                f"augmentations_per_sample must be in [0, {len(self.augmentations)}], got {augmentations_per_sample}."
            )
        self.augmentations_per_sample = int(augmentations_per_sample)
        self.balanced = bool(balanced)
        self.keep_sources = bool(keep_sources)

    def __repr__(self) -> str:
        return (
            f"DraemSynthesizer({len(self.textures)} textures, anomaly_probability={self.anomaly_probability}, "
            f"perlin 2^[{self.min_perlin_scale},{self.perlin_scale}), threshold={self.threshold}, beta={self.beta})"
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> SyntheticBatch:
        """Add DRÆM anomalies to part of ``images`` ``[B, 3, H, W]`` (floats in ``[0, 1]``).

        All work happens on the images' device, batched over the samples that
        get an anomaly; random numbers come from ``generator`` (see
        :mod:`adlearn.simulation.augment` for why they are drawn on its device).
        """
        check_unit_images(images, "images")
        batch, _, height, width = images.shape
        device, dtype = images.device, images.dtype
        split = RowSplit(choose_anomalous(batch, self.anomaly_probability, self.balanced, generator), device)
        count = split.count
        if count == 0:
            return SyntheticBatch.unchanged(images, keep_sources=self.keep_sources)
        texture_indices = self.textures.random_indices(count, generator)
        low, high = self.beta
        betas = low + (high - low) * torch.rand(count, generator=generator, device=generator_device(generator))
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
        plan = sample_augmentation_plan(count, self.augmentations, self.augmentations_per_sample, generator)
        bank = self.textures.as_is((height, width), device, dtype)
        if bank is not None and texture_indices.device.type == "cpu" and self.augmentations_per_sample > 0:
            # Augment the bank's rows directly instead of copying them out first (no operation modifies its input).
            member_sources = apply_augmentation_plan(bank, plan, rows=texture_indices.tolist())
        else:
            member_sources = apply_augmentation_plan(self.textures.gather(texture_indices, (height, width), device, dtype), plan)
        member_masks = member_masks.to(dtype)
        member_opacity = betas.to(device, dtype)
        # Blend only the samples that get an anomaly; the others are copied from the input
        # by the one concatenation that assembles the batch.
        blended = blend_in(split.select_members(images), member_sources, member_masks, member_opacity)
        augmented = split.merge_over(blended, images)
        sources = split.merge_over(member_sources, images) if self.keep_sources else None
        masks = split.merge(member_masks, member_masks.new_zeros(batch - count, 1, height, width))
        opacity = split.merge(member_opacity, member_opacity.new_zeros(batch - count))
        labels = split.merge(member_masks.flatten(1).amax(dim=1), member_opacity.new_zeros(batch - count))
        return SyntheticBatch(images=augmented, masks=masks, labels=labels, sources=sources, opacity=opacity)
