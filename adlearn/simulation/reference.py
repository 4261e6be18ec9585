"""The papers' per-sample pipelines (imgaug / OpenCV / PIL), one image at a time.

These follow the public reference code step by step, so the chapter can show
the original recipe and the tests can check that the batched torch makers
produce batches with the same statistics:

* :func:`draem_reference` — ``MVTecDRAEMTrainDataset.augment_image`` of DRÆM's code
  (VitjanZ/DRAEM, ``data_loader.py`` and ``perlin.py``);
* :func:`memseg_reference` — ``MemSegDataset.generate_anomaly`` of the public
  MemSeg code (TooTouch/MemSeg, ``data/dataset.py``), with the paper's Otsu +
  opening/closing foreground mask;
* :func:`cutpaste_reference` / :func:`cutpaste_scar_reference` — ``CutPasteNormal``
  and ``CutPasteScar`` of ``Runinho/pytorch-cutpaste`` (PIL + torchvision).

Differences from the originals, on purpose: randomness comes from one
``numpy.random.Generator`` (the originals mix NumPy's, torch's and imgaug's
global generators; imgaug's global generator is still re-seeded from it,
because some seeded imgaug augmenters draw from it anyway); images are RGB (DRÆM's loader feeds OpenCV's BGR order to
colour augmenters); ``iaa.pillike.Autocontrast`` is replaced by an equivalent
``iaa.Lambda`` around ``PIL.ImageOps.autocontrast`` because imgaug's own fails
under NumPy 2 when its random cutoff is non-zero (see :mod:`adlearn.compat`);
DRÆM's ``beta`` is the opacity of the texture in ``[0.1, 1.0]`` as in the paper
(the code draws ``1 - U[0, 0.8)``, pass ``beta=(0.2, 1.0)`` for that).

:func:`reference_batch` runs any of them over a torch batch and returns a
:class:`~adlearn.simulation.batch.SyntheticBatch`, like the batched makers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from einops import rearrange

from adlearn.compat import import_imgaug
from adlearn.simulation.batch import SyntheticBatch
from adlearn.simulation.perlin import perlin_noise_np

__all__ = [
    "ReferenceSample",
    "draem_augmenters",
    "draem_reference",
    "memseg_reference",
    "cutpaste_reference",
    "cutpaste_scar_reference",
    "reference_batch",
]


@dataclass
class ReferenceSample:
    """One sample from a reference pipeline (NumPy, channels last).

    Attributes:
        image: ``[H, W, 3]`` float32 in ``[0, 1]``.
        mask: ``[H, W]`` float32 in ``{0, 1}``.
        label: 1.0 if the mask is non-empty, else 0.0.
        source: ``[H, W, 3]`` float32 in ``[0, 1]``, the anomaly source, or ``None``.
        opacity: the source's blend weight (0 when untouched).
        kind: maker-specific kind (MemSeg: 0 none, 1 texture, 2 structure).
    """

    image: np.ndarray
    mask: np.ndarray
    label: float
    source: np.ndarray | None = None
    opacity: float = 0.0
    kind: int = 0


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _autocontrast_augmenter(iaa: Any, seed: int) -> Any:
    """``pillike.Autocontrast()`` (cutoff 0..20 %) as a Lambda calling PIL directly (works under NumPy 2)."""
    cutoff_rng = np.random.default_rng(seed)

    def autocontrast_images(images: list[np.ndarray], random_state: Any, parents: Any, hooks: Any) -> list[np.ndarray]:
        return [
            np.array(PIL.ImageOps.autocontrast(PIL.Image.fromarray(image), cutoff=int(cutoff_rng.integers(0, 21))))
            for image in images
        ]

    return iaa.Lambda(func_images=autocontrast_images, name="Autocontrast")


def draem_augmenters() -> list[Callable[[int], Any]]:
    """Factories ``seed -> augmenter`` for the ten augmentations of DRÆM's (and MemSeg's) code, in its order."""
    iaa = import_imgaug()

    def seeded(augmenter: Any, seed: int) -> Any:
        # seed_ also reseeds the children some augmenters create internally
        # (MultiplyAndAddToBrightness), which the `seed=` argument does not.
        augmenter.seed_(seed)
        return augmenter

    return [
        lambda seed: seeded(iaa.GammaContrast((0.5, 2.0), per_channel=True), seed),
        lambda seed: seeded(iaa.MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30)), seed),
        lambda seed: seeded(iaa.pillike.EnhanceSharpness(), seed),
        lambda seed: seeded(iaa.AddToHueAndSaturation((-50, 50), per_channel=True), seed),
        lambda seed: seeded(iaa.Solarize(0.5, threshold=(32, 128)), seed),
        lambda seed: seeded(iaa.Posterize(), seed),
        lambda seed: seeded(iaa.Invert(), seed),
        lambda seed: _autocontrast_augmenter(iaa, seed),
        lambda seed: seeded(iaa.pillike.Equalize(), seed),
        lambda seed: seeded(iaa.Affine(rotate=(-45, 45)), seed),
    ]


def _random_augmenter(rng: np.random.Generator, count: int = 3) -> Any:
    """``randAugmenter``: ``count`` distinct augmenters, in random order, as one Sequential."""
    iaa = import_imgaug()
    import imgaug.random

    # Some imgaug augmenters draw from imgaug's global generator even when seeded
    # (the random mul/add order inside MultiplyAndAddToBrightness): seed it too.
    imgaug.random.seed(_seed(rng))
    factories = draem_augmenters()
    chosen = rng.choice(len(factories), count, replace=False)
    return iaa.Sequential([factories[i](_seed(rng)) for i in chosen])


def _perlin_mask(
    shape: tuple[int, int], rng: np.random.Generator, min_perlin_scale: int, perlin_scale: int, threshold: float
) -> np.ndarray:
    """DRÆM's mask: ``2^k`` lattice per axis, rotate with ``iaa.Affine(rotate=(-90, 90))``, threshold."""
    iaa = import_imgaug()
    scale_y = 2 ** int(rng.integers(min_perlin_scale, perlin_scale))
    scale_x = 2 ** int(rng.integers(min_perlin_scale, perlin_scale))
    noise = perlin_noise_np(shape, (scale_y, scale_x), rng=rng)
    rotation = iaa.Affine(rotate=(-90, 90))
    rotation.seed_(_seed(rng))
    noise = rotation(image=noise)
    return np.where(noise > threshold, 1.0, 0.0).astype(np.float32)


def _as_uint8_rgb(image: np.ndarray, name: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an RGB image [H, W, 3], got shape {image.shape}.")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating) or image.min() < 0 or image.max() > 1:
        raise ValueError(f"{name} must be uint8 or floats in [0, 1], got dtype {image.dtype}.")
    return np.round(image * 255).astype(np.uint8)


def _as_unit_float(image: np.ndarray, name: str) -> np.ndarray:
    checked = _as_uint8_rgb(image, name)  # validates shape, dtype and range
    return checked.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def draem_reference(
    image: np.ndarray,
    texture: np.ndarray,
    rng: np.random.Generator,
    *,
    anomaly_probability: float = 0.5,
    perlin_scale: int = 6,
    min_perlin_scale: int = 0,
    threshold: float = 0.5,
    beta: tuple[float, float] = (0.1, 1.0),
) -> ReferenceSample:
    """DRÆM's per-sample simulator (``augment_image``), step by step.

    Args:
        image: ``[H, W, 3]`` floats in ``[0, 1]`` (or ``uint8``).
        texture: ``[h, w, 3]`` RGB anomaly source (``uint8`` or floats in ``[0, 1]``).
        rng: the random source.
        anomaly_probability, perlin_scale, min_perlin_scale, threshold, beta: as
            :class:`~adlearn.simulation.draem.DraemSynthesizer`.
    """
    image = _as_unit_float(image, "image")
    height, width = image.shape[:2]
    augmenter = _random_augmenter(rng)
    texture = cv2.resize(_as_uint8_rgb(texture, "texture"), dsize=(width, height))
    texture_augmented = augmenter(image=texture)
    mask = _perlin_mask((height, width), rng, min_perlin_scale, perlin_scale, threshold)[..., None]
    texture_in_mask = texture_augmented.astype(np.float32) * mask / 255.0
    opacity = float(rng.uniform(*beta))
    augmented = image * (1 - mask) + opacity * texture_in_mask + (1 - opacity) * image * mask
    source = texture_augmented.astype(np.float32) / 255.0
    if rng.random() >= anomaly_probability:  # the code's `no_anomaly > 0.5`
        return ReferenceSample(image=image, mask=np.zeros((height, width), np.float32), label=0.0, source=image, opacity=0.0)
    augmented = (mask * augmented + (1 - mask) * image).astype(np.float32)
    label = 1.0 if mask.sum() > 0 else 0.0
    return ReferenceSample(image=augmented, mask=mask[..., 0], label=label, source=source, opacity=opacity, kind=1)


def _foreground_mask(image: np.ndarray, polarity: str, kernel_size: int) -> np.ndarray:
    """Otsu threshold (OpenCV) and morphological opening + closing, as the MemSeg paper describes."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    _, bright = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if polarity == "auto":
        border = np.concatenate([bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]])
        polarity = "dark" if border.mean() > 0.5 else "bright"
    mask = bright if polarity == "bright" else 1 - bright
    kernel = np.ones((kernel_size, kernel_size), np.uint8)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return mask.astype(np.float32)


def memseg_reference(
    image: np.ndarray,
    texture: np.ndarray | None,
    rng: np.random.Generator,
    *,
    anomaly_probability: float = 0.5,
    texture_probability: float = 0.5,
    perlin_scale: int = 6,
    min_perlin_scale: int = 0,
    threshold: float = 0.5,
    opacity: tuple[float, float] = (0.15, 1.0),
    structure_grid: tuple[int, int] = (8, 8),
    use_foreground: bool = False,
    foreground_polarity: str = "auto",
    morphology_kernel: int | None = None,
) -> ReferenceSample:
    """MemSeg's per-sample simulator (``generate_anomaly``) for one image.

    The public code alternates normal and anomalous samples; here a sample is
    anomalous with ``anomaly_probability``. Returns the image as floats in ``[0, 1]``
    (the code returns ``uint8``: the blend is rounded down to 256 levels).
    """
    image = _as_uint8_rgb(image, "image")
    height, width = image.shape[:2]
    if rng.random() >= anomaly_probability:
        unit = image.astype(np.float32) / 255.0
        return ReferenceSample(image=unit, mask=np.zeros((height, width), np.float32), label=0.0, source=unit)
    if use_foreground:
        kernel = morphology_kernel or max(3, (height // 50) | 1)
        foreground = _foreground_mask(image, foreground_polarity, kernel)
    else:
        foreground = np.ones((height, width), np.float32)
    mask = _perlin_mask((height, width), rng, min_perlin_scale, perlin_scale, threshold) * foreground
    mask_expanded = mask[..., None]

    use_texture = texture is not None and rng.random() < texture_probability
    if use_texture:
        source = cv2.resize(_as_uint8_rgb(texture, "texture"), dsize=(width, height)).astype(np.float32)
    else:
        rows, cols = structure_grid
        if height % rows or width % cols:
            raise ValueError(f"structure_grid {structure_grid} must divide the image size {(height, width)} exactly.")
        structure = _random_augmenter(rng)(image=image)
        cells = rearrange(structure, "(h gh) (w gw) c -> (h w) gh gw c", h=rows, w=cols)
        cells = cells[rng.permutation(cells.shape[0])]
        source = rearrange(cells, "(h w) gh gw c -> (h gh) (w gw) c", h=rows, w=cols).astype(np.float32)
    factor = float(rng.uniform(*opacity))
    blended = factor * (mask_expanded * source) + (1 - factor) * (mask_expanded * image)
    augmented = ((1 - mask_expanded) * image + blended).astype(np.uint8)
    label = 1.0 if mask.sum() > 0 else 0.0
    kind = (1 if use_texture else 2) if label else 0
    return ReferenceSample(
        image=augmented.astype(np.float32) / 255.0, mask=mask.astype(np.float32), label=label,
        source=source / 255.0, opacity=factor, kind=kind,
    )


def _color_jitter(patch: PIL.Image.Image, strength: float, rng: np.random.Generator) -> PIL.Image.Image:
    """torchvision's ``ColorJitter(strength, strength, strength, strength)``, its random draws taken from ``rng``.

    ColorJitter applies brightness, contrast, saturation and hue changes in a
    random order with factors ``U[1 - s, 1 + s]`` and a hue shift ``U[-s, s]``;
    drawing them here keeps torch's global generator untouched.
    """
    from torchvision.transforms import functional as TF

    low, high = max(0.0, 1 - strength), 1 + strength
    operations = [
        lambda image: TF.adjust_brightness(image, rng.uniform(low, high)),
        lambda image: TF.adjust_contrast(image, rng.uniform(low, high)),
        lambda image: TF.adjust_saturation(image, rng.uniform(low, high)),
        lambda image: TF.adjust_hue(image, rng.uniform(-min(strength, 0.5), min(strength, 0.5))),
    ]
    for index in rng.permutation(4):
        patch = operations[index](patch)
    return patch


def cutpaste_reference(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    area_ratio: tuple[float, float] = (0.02, 0.15),
    aspect_ratio: float = 0.3,
    jitter: float = 0.1,
) -> ReferenceSample:
    """``CutPasteNormal``: one rectangle of the image, jittered, pasted elsewhere (PIL)."""
    pil = PIL.Image.fromarray(_as_uint8_rgb(image, "image"))
    width, height = pil.size
    area = rng.uniform(*area_ratio) * width * height
    aspect = math.exp(rng.uniform(math.log(aspect_ratio), math.log(1 / aspect_ratio)))
    cut_w = min(width, max(1, int(round(math.sqrt(area * aspect)))))
    cut_h = min(height, max(1, int(round(math.sqrt(area / aspect)))))
    from_top, from_left = int(rng.uniform(0, height - cut_h)), int(rng.uniform(0, width - cut_w))
    patch = pil.crop((from_left, from_top, from_left + cut_w, from_top + cut_h))
    if jitter > 0:
        patch = _color_jitter(patch, jitter, rng)
    to_top, to_left = int(rng.uniform(0, height - cut_h)), int(rng.uniform(0, width - cut_w))
    augmented = pil.copy()
    augmented.paste(patch, (to_left, to_top, to_left + cut_w, to_top + cut_h))
    mask = np.zeros((height, width), np.float32)
    mask[to_top : to_top + cut_h, to_left : to_left + cut_w] = 1
    return ReferenceSample(image=np.asarray(augmented, np.float32) / 255.0, mask=mask, label=1.0, opacity=1.0, kind=1)


def cutpaste_scar_reference(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    width: tuple[float, float] = (2.0, 16.0),
    height: tuple[float, float] = (10.0, 25.0),
    rotation: tuple[float, float] = (-45.0, 45.0),
    jitter: float = 0.1,
) -> ReferenceSample:
    """``CutPasteScar``: a thin patch, jittered, rotated (``expand=True``) and pasted with its alpha (PIL)."""
    pil = PIL.Image.fromarray(_as_uint8_rgb(image, "image"))
    image_w, image_h = pil.size
    cut_w, cut_h = int(round(rng.uniform(*width))), int(round(rng.uniform(*height)))
    from_top, from_left = int(rng.uniform(0, image_h - cut_h)), int(rng.uniform(0, image_w - cut_w))
    patch = pil.crop((from_left, from_top, from_left + cut_w, from_top + cut_h))
    if jitter > 0:
        patch = _color_jitter(patch, jitter, rng)
    patch = patch.convert("RGBA").rotate(rng.uniform(*rotation), expand=True)
    to_top = int(rng.uniform(0, image_h - patch.size[1]))
    to_left = int(rng.uniform(0, image_w - patch.size[0]))
    alpha = patch.split()[-1]
    augmented = pil.copy()
    augmented.paste(patch.convert("RGB"), (to_left, to_top), mask=alpha)
    mask = np.zeros((image_h, image_w), np.float32)
    alpha_array = np.asarray(alpha) > 0
    mask[to_top : to_top + alpha_array.shape[0], to_left : to_left + alpha_array.shape[1]] = alpha_array
    return ReferenceSample(image=np.asarray(augmented, np.float32) / 255.0, mask=mask, label=1.0, opacity=1.0, kind=2)


def reference_batch(
    maker: Callable[..., ReferenceSample],
    images: torch.Tensor,
    *,
    textures: torch.Tensor | None = None,
    seed: int = 0,
    **options: Any,
) -> SyntheticBatch:
    """Run a reference ``maker`` over a torch batch, one image at a time, and stack the results.

    Args:
        maker: :func:`draem_reference`, :func:`memseg_reference`,
            :func:`cutpaste_reference` or :func:`cutpaste_scar_reference`.
        images: ``[B, 3, H, W]`` floats in ``[0, 1]``.
        textures: ``[N, 3, h, w]`` anomaly sources (DRÆM, MemSeg); one is drawn per image.
        seed: seeds the NumPy generator that drives everything.
        **options: passed to ``maker``.
    """
    rng = np.random.default_rng(seed)
    arrays = (images.detach().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    if maker is draem_reference and textures is None:
        raise ValueError("draem_reference needs textures.")

    def texture_array(index: int) -> np.ndarray:
        # One texture at a time, as a loader reads one file per sample.
        texture = textures[index].detach().cpu()
        if texture.is_floating_point():
            texture = (texture.clamp(0, 1) * 255).round().to(torch.uint8)
        return texture.permute(1, 2, 0).numpy()

    samples = []
    for array in arrays:
        if maker is draem_reference:
            samples.append(maker(array.astype(np.float32) / 255.0, texture_array(int(rng.integers(len(textures)))), rng, **options))
        elif maker is memseg_reference:
            texture = None if textures is None else texture_array(int(rng.integers(len(textures))))
            samples.append(maker(array, texture, rng, **options))
        else:
            samples.append(maker(array, rng, **options))

    def stack(values: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(values)).float()

    return SyntheticBatch(
        images=stack([s.image for s in samples]).permute(0, 3, 1, 2).contiguous(),
        masks=stack([s.mask for s in samples]).unsqueeze(1),
        labels=torch.tensor([s.label for s in samples], dtype=torch.float32),
        sources=stack([s.source if s.source is not None else s.image for s in samples]).permute(0, 3, 1, 2).contiguous(),
        opacity=torch.tensor([s.opacity for s in samples], dtype=torch.float32),
        kinds=torch.tensor([s.kind for s in samples], dtype=torch.long),
    )
