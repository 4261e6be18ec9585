"""Batched torch versions of the image augmentations the anomaly makers use.

DRÆM and MemSeg turn a texture (or the image itself) into an anomaly source
with three augmentations drawn at random from the set of their reference code
(imgaug): gamma contrast, brightness, sharpness, hue and saturation, solarize,
posterize, invert, auto-contrast, equalize and rotation. CutPaste jitters the
pasted patch's brightness, contrast, saturation and hue (torchvision's
``ColorJitter``). Here each of them works on a whole batch ``[B, 3, H, W]`` of
floats in ``[0, 1]``, with its own random parameters per image.

Random parameters are always drawn on the generator's device (the CPU unless a
CUDA generator is given) and then moved to the images' device: a seed gives the
same augmentations on every device, and choosing which images get which
operation needs no GPU synchronisation.

The ``uint8`` histogram operations (posterize, solarize, auto-contrast,
equalize) quantise to 256 levels first, as PIL and imgaug do.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> plan = sample_augmentation_plan(8, DRAEM_AUGMENTATIONS, count=3, generator=g)
    >>> augmented = apply_augmentation_plan(textures, plan)   # textures: [8, 3, H, W]
    >>> plan.names(0)                                        # e.g. ('equalize', 'invert', 'gamma')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adlearn.simulation._validation import generator_device

__all__ = [
    "random_grayscale",
    "Augmentation",
    "AugmentationPlan",
    "DRAEM_AUGMENTATIONS",
    "COLOR_JITTER_OPERATIONS",
    "sample_augmentation_plan",
    "apply_augmentation_plan",
    "random_augment",
    "color_jitter",
    "rotate",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "grayscale",
    "gamma_contrast",
    "multiply_add_brightness",
    "sharpness",
    "add_hue_saturation",
    "solarize",
    "posterize",
    "invert",
    "autocontrast",
    "equalize",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
]

# ----------------------------------------------------------------------------- colour spaces


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` (ITU-R 601, as OpenCV and PIL), shape ``[B, 1, H, W]``."""
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def random_grayscale(images: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``images`` ``[B, 3, H, W]`` with each one turned grey (luma in all three channels) with ``probability``.

    torchvision's ``RandomGrayscale``, batched: one draw per image from ``generator`` (on the CPU).
    """
    grey = (torch.rand(images.shape[0], generator=generator) < probability).to(images.device)
    return torch.where(grey[:, None, None, None], grayscale(images).expand(-1, 3, -1, -1), images)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB in ``[0, 1]`` to HSV with hue, saturation and value all in ``[0, 1]``."""
    red, green, blue = images.unbind(dim=1)
    value, argmax = images.max(dim=1)
    minimum = images.min(dim=1).values
    chroma = value - minimum
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue_red = ((green - blue) / safe_chroma) % 6
    hue_green = (blue - red) / safe_chroma + 2
    hue_blue = (red - green) / safe_chroma + 4
    hue = torch.where(argmax == 0, hue_red, torch.where(argmax == 1, hue_green, hue_blue)) / 6
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)), torch.zeros_like(value))
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    hue, saturation, value = hsv.unbind(dim=1)
    # The standard formula: channel n takes v - v*s*clamp(min(k, 4-k), 0, 1), k = (n + 6h) mod 6.
    offsets = hsv.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
    k = (offsets + hue.unsqueeze(1) * 6) % 6
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return value.unsqueeze(1) - value.unsqueeze(1) * saturation.unsqueeze(1) * ramp


def _channel_levels(images: torch.Tensor) -> torch.Tensor:
    """The levels 0..255 of ``[B, C, H, W]`` images, each channel shifted into its own block of 256.

    Returns a flat int32 tensor (cheaper to make and to count than int64):
    ``level + 256 * (b * C + c)``. One ``bincount`` of it gives every channel's
    histogram, and one ``index_select`` from the stacked tables maps every
    pixel, so the operations need no per-channel work.
    """
    batch, channels = images.shape[:2]
    offsets = torch.arange(batch * channels, device=images.device, dtype=torch.int32).mul_(256).view(batch, channels, 1, 1)
    levels = images.mul(255).round_().clamp_(0, 255).to(torch.int32)
    return levels.add_(offsets).flatten()


def _channel_histograms(flat_levels: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    """Histograms ``[B, C, 256]`` (long counts) of the shifted levels of :func:`_channel_levels`."""
    return torch.bincount(flat_levels, minlength=batch * channels * 256).view(batch, channels, 256)


def _apply_lookup(flat_levels: torch.Tensor, tables: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Map shifted levels through per-channel tables ``[B, C, 256]`` of output *levels* (0..255).

    The table is converted to ``[0, 1]`` floats first (256 entries per channel), so
    the lookup directly yields the output image, shaped and typed like ``like``.
    """
    float_tables = tables.to(like.dtype).div_(255.0).flatten()
    return float_tables.index_select(0, flat_levels).view(like.shape)


# ----------------------------------------------------------------------------- geometry


def _rotation_grid(angles: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``grid_sample`` coordinates ``[B, H, W, 2]`` that rotate images about their centres.

    Built by broadcasting (``affine_grid`` materialises a homogeneous grid and a
    batched product, ten times slower on a CPU). The height/width ratios keep the
    rotation rigid in pixel units for non-square images.
    """
    radians = angles.to(dtype) * (math.pi / 180)
    cos, sin = torch.cos(radians).view(-1, 1, 1), torch.sin(radians).view(-1, 1, 1)
    device = angles.device
    # Normalised pixel-centre coordinates (align_corners=False).
    columns = ((torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1).view(1, 1, width)
    rows = ((torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1).view(1, height, 1)
    grid = torch.empty(angles.shape[0], height, width, 2, device=device, dtype=dtype)
    torch.add(cos * columns, (-sin * height / width) * rows, out=grid[..., 0])
    torch.add((sin * width / height) * columns, cos * rows, out=grid[..., 1])
    return grid


def rotate(images: torch.Tensor, angles: torch.Tensor, fill: float = 0.0, mode: str = "bilinear") -> torch.Tensor:
    """Rotate each image of ``[B, C, H, W]`` about its centre by ``angles`` ``[B]`` degrees, counter-clockwise.

    Pixels rotated in from outside get ``fill`` (imgaug's ``Affine(rotate=...)``
    with its defaults: bilinear, constant 0). Works for non-square images.
    """
    _, _, height, width = images.shape
    grid = _rotation_grid(angles.to(images.device), height, width, images.dtype)
    if fill == 0.0:
        return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)
    # Rotate a constant-one channel alongside to know how much of each pixel came from outside.
    ones = torch.ones_like(images[:, :1])
    rotated = F.grid_sample(torch.cat([images, ones], dim=1), grid, mode=mode, padding_mode="zeros", align_corners=False)
    inside = rotated[:, -1:]
    return rotated[:, :-1] + (1 - inside) * fill


# ----------------------------------------------------------------------------- the DRÆM / MemSeg operations
# Each takes images [n, 3, H, W] in [0, 1] and parameters [n, P] and returns new images in [0, 1].


def gamma_contrast(images: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """``x ** gamma`` with one gamma per image and channel (``gammas`` ``[n, 3]``).

    As imgaug on ``uint8`` images, through a 256-entry table per channel
    (a table lookup is several times cheaper than ``pow`` on every pixel).
    """
    levels_axis = torch.arange(256, device=images.device, dtype=torch.float64) / 255.0
    tables = levels_axis.view(1, 1, 256) ** gammas.to(images.device, torch.float64).view(-1, 3, 1)
    flat_tables = tables.to(images.dtype).flatten()
    return flat_tables.index_select(0, _channel_levels(images)).view(images.shape)


def multiply_add_brightness(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Change the luma ``Y`` to ``Y * mul + add`` keeping the chroma (``params`` ``[n, 2]``: mul, add)."""
    luma = grayscale(images)
    multiply, add = params[:, 0].view(-1, 1, 1, 1), params[:, 1].view(-1, 1, 1, 1)
    # Adding the same amount to R, G and B moves Y by that amount and leaves Cb, Cr unchanged.
    return (images + (luma * multiply + add - luma)).clamp(0, 1)


def sharpness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageEnhance.Sharpness``: blend with PIL's SMOOTH-filtered image (``factors`` ``[n, 1]``).

    Factor 0 gives the smoothed image, 1 the original, 2 a sharpened one.
    SMOOTH is the 3x3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``; as in PIL,
    the one-pixel border keeps its original values.
    """
    if images.shape[2] <= 2 or images.shape[3] <= 2:
        return images.clone()
    # A separable 3x3 box sum plus 4 x the centre (depthwise conv2d is slow on CPU).
    rows = images[:, :, :-2] + images[:, :, 1:-1]
    rows += images[:, :, 2:]
    box = rows[:, :, :, :-2] + rows[:, :, :, 1:-1]
    box += rows[:, :, :, 2:]
    centre = images[:, :, 1:-1, 1:-1]
    # out = smoothed + f * (x - smoothed) with smoothed = (box + 4 x) / 13, in place on `box`.
    factor = factors.view(-1, 1, 1, 1)
    box.add_(centre, alpha=4.0).div_(13.0)
    out = images.clone()
    out[:, :, 1:-1, 1:-1] = box.add_(factor * (centre - box))
    return out.clamp_(0, 1)


def _wrap_unit(turns: torch.Tensor) -> torch.Tensor:
    """``turns mod 1`` in place (``x - floor(x)``; several times faster than ``remainder`` on a CPU)."""
    return turns.sub_(turns.floor())


def _hue_value_chroma(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue (turns, ``[n, H, W]``), value and chroma of RGB images, without building the HSV stack."""
    red, green, blue = images.unbind(dim=1)
    value = torch.maximum(torch.maximum(red, green), blue)
    chroma = value - torch.minimum(torch.minimum(red, green), blue)
    is_red = red == value
    is_green = (green == value) & ~is_red
    # Sector by sector (colorsys): (g - b) / C for a red maximum, (b - r) / C + 2 for green, (r - g) / C + 4 for blue.
    hue = torch.where(is_red, green - blue, torch.where(is_green, blue - red + 2 * chroma, red - green + 4 * chroma))
    hue.div_(chroma.clamp_min(1e-12))  # the numerator is exactly 0 where the chroma is
    return _wrap_unit(hue.div_(6.0)), value, chroma


def _rgb_from_hue(hue: torch.Tensor, value: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB from hue (turns in ``[0, 1)``), value and chroma (= value x saturation); see :func:`hsv_to_rgb`."""
    offsets = hue.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
    k = torch.addcmul(offsets, hue.unsqueeze(1), hue.new_tensor(6.0))  # in [1, 11)
    k.sub_((k >= 6).to(k.dtype), alpha=6.0)  # mod 6
    ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
    return ramp.mul_(-chroma.unsqueeze(1)).add_(value.unsqueeze(1))


def add_hue_saturation(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """imgaug's ``AddToHueAndSaturation``: add ``params[:, 0] / 255`` turns to the hue and ``params[:, 1] / 255`` to the saturation."""
    hue, value, chroma = _hue_value_chroma(images)
    _wrap_unit(hue.add_(params[:, 0].view(-1, 1, 1) / 255.0))
    # Saturation s = C / V moves to clamp(s + ds, 0, 1); in chroma terms C' = clamp(C + ds V, 0, V),
    # which needs no division and is 0 wherever V is.
    chroma = torch.addcmul(chroma, value, params[:, 1].view(-1, 1, 1) / 255.0).clamp_min_(0)
    chroma = torch.minimum(chroma, value, out=chroma)
    # V - C' * ramp with 0 <= C' <= V and 0 <= ramp <= 1 stays in [0, V]: no clamp needed.
    return _rgb_from_hue(hue, value, chroma)


def solarize(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """imgaug's ``Solarize``: if ``params[:, 0]`` is 1, invert every level at or above ``params[:, 1]`` (0..255)."""
    # round(255 x) >= t  <=>  x >= (t - 0.5) / 255 for an integer t; a threshold above 1 turns it off.
    if params.device.type == "cpu" and not bool((params[:, 0] > 0.5).any()):
        return images.clone()  # every coin said no (checked only where that needs no device synchronisation)
    threshold = (torch.floor(params[:, 1]) - 0.5) / 255.0
    threshold = torch.where(params[:, 0] > 0.5, threshold, torch.full_like(threshold, 2.0)).view(-1, 1, 1, 1)
    return torch.where(images >= threshold, 1 - images, images)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the ``bits`` ``[n, 1]`` highest bits of each 8-bit level (PIL ``posterize``, imgaug ``Posterize``)."""
    step = (2.0 ** (8 - bits.view(-1, 1, 1, 1))).to(images.dtype)
    levels = (images.clamp(0, 1) * 255).round_()
    return levels.div_(step).floor_().mul_(step / 255.0)


def invert(images: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - x``."""
    return 1 - images


def autocontrast(images: torch.Tensor, cutoffs: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.autocontrast`` per channel, ignoring ``cutoffs`` ``[n, 1]`` percent at each end."""
    levels = _channel_levels(images)
    counts = _channel_histograms(levels, images.shape[0], images.shape[1])
    total = counts.sum(dim=-1, keepdim=True)
    cut = (total * cutoffs.view(-1, 1, 1).round().long()) // 100
    cumulative = counts.cumsum(dim=-1)
    exclusive = cumulative - counts
    # PIL removes `cut` pixels from each end of the histogram; a level is emptied
    # when all pixels up to (or from) it fit in the cut.
    low = (cumulative <= cut).sum(dim=-1, keepdim=True)
    high = (exclusive < total - cut).sum(dim=-1, keepdim=True) - 1
    stretch = high > low
    # PIL computes the table in double precision; MPS has no float64.
    table_dtype = torch.float32 if images.device.type == "mps" else torch.float64
    scale = 255.0 / torch.where(stretch, high - low, torch.ones_like(high)).to(table_dtype)
    scale = torch.where(stretch, scale, torch.ones_like(scale))
    offset = torch.where(stretch, -low.to(table_dtype) * scale, torch.zeros_like(scale))
    levels_axis = torch.arange(256, device=images.device, dtype=table_dtype)
    tables = torch.clamp(torch.trunc(levels_axis * scale + offset), 0, 255)
    return _apply_lookup(levels, tables, images)


def equalize(images: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` per channel (histogram equalisation of the 256 levels)."""
    levels = _channel_levels(images)
    counts = _channel_histograms(levels, images.shape[0], images.shape[1])
    total = counts.sum(dim=-1, keepdim=True)
    levels_axis = torch.arange(256, device=images.device)
    last_present = torch.where(counts > 0, levels_axis, torch.zeros_like(levels_axis)).amax(dim=-1, keepdim=True)
    step = (total - torch.gather(counts, -1, last_present)) // 255
    exclusive = counts.cumsum(dim=-1) - counts
    safe_step = torch.where(step > 0, step, torch.ones_like(step))
    tables = torch.clamp((exclusive + step // 2) // safe_step, 0, 255)
    # PIL leaves a channel alone when it has a single level (step 0).
    tables = torch.where(step > 0, tables, levels_axis.expand_as(tables))
    return _apply_lookup(levels, tables, images)


def _rotate_op(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    return rotate(images, angles[:, 0])


# ----------------------------------------------------------------------------- CutPaste colour jitter (torchvision)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision ``adjust_brightness``: ``x * factor``."""
    return (images * factors.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision ``adjust_contrast``: blend with the mean grey level (of ``region`` ``[n, 1, H, W]`` if given)."""
    grey = grayscale(images)
    if region is None:
        mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    else:
        mean = (grey * region).sum(dim=(1, 2, 3), keepdim=True) / region.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    factor = factors.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * mean).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision ``adjust_saturation``: blend with the grey image."""
    factor = factors.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * grayscale(images)).clamp(0, 1)


def adjust_hue(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """torchvision ``adjust_hue``: rotate the hue by ``shifts`` turns (in ``[-0.5, 0.5]``)."""
    hue, value, chroma = _hue_value_chroma(images)
    return _rgb_from_hue(_wrap_unit(hue.add_(shifts.view(-1, 1, 1))), value, chroma).clamp_(0, 1)


# ----------------------------------------------------------------------------- random application


@dataclass(frozen=True)
class Augmentation:
    """One augmentation: its name, how to draw its parameters, how to apply them.

    Attributes:
        name: short name shown in figures.
        sample: ``(n, generator) -> [n, P]`` parameters (drawn on the generator's device).
        apply: ``(images [n, 3, H, W], params [n, P], **keywords) -> images``.
        keywords: names of the extra per-image tensors ``apply`` accepts
            (see :func:`apply_augmentation_plan`).
    """

    name: str
    sample: Callable[[int, torch.Generator | None], torch.Tensor]
    apply: Callable[..., torch.Tensor]
    keywords: tuple[str, ...] = ()


def _uniform(low: float, high: float, columns: int = 1) -> Callable[[int, torch.Generator | None], torch.Tensor]:
    def sample(n: int, generator: torch.Generator | None) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, columns, generator=generator, device=generator_device(generator))

    return sample


def _integers(low: int, high_inclusive: int) -> Callable[[int, torch.Generator | None], torch.Tensor]:
    def sample(n: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randint(low, high_inclusive + 1, (n, 1), generator=generator, device=generator_device(generator)).float()

    return sample


def _solarize_params(n: int, generator: torch.Generator | None) -> torch.Tensor:
    device = generator_device(generator)
    apply = (torch.rand(n, 1, generator=generator, device=device) < 0.5).float()
    threshold = 32 + 96 * torch.rand(n, 1, generator=generator, device=device)
    return torch.cat([apply, threshold], dim=1)


def _no_params(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.zeros(n, 0, device=generator_device(generator))


#: The ten augmentations of DRÆM's (and MemSeg's) reference code, with its parameter ranges.
DRAEM_AUGMENTATIONS: tuple[Augmentation, ...] = (
    Augmentation("gamma", _uniform(0.5, 2.0, columns=3), gamma_contrast),  # GammaContrast((0.5, 2.0), per_channel=True)
    Augmentation("brightness", lambda n, g: torch.cat([_uniform(0.8, 1.2)(n, g), _uniform(-30 / 255, 30 / 255)(n, g)], dim=1), multiply_add_brightness),
    Augmentation("sharpness", _uniform(0.0, 2.0), sharpness),  # pillike.EnhanceSharpness()
    Augmentation("hue_saturation", _uniform(-50.0, 50.0, columns=2), add_hue_saturation),  # AddToHueAndSaturation((-50, 50), per_channel=True)
    Augmentation("solarize", _solarize_params, solarize),  # Solarize(0.5, threshold=(32, 128))
    Augmentation("posterize", _integers(1, 8), posterize),  # Posterize()  (1 to 8 bits)
    Augmentation("invert", _no_params, invert),
    Augmentation("autocontrast", _integers(0, 20), autocontrast),  # pillike.Autocontrast()  (cutoff 0..20 %)
    Augmentation("equalize", _no_params, equalize),
    Augmentation("rotate", _uniform(-45.0, 45.0), _rotate_op),  # Affine(rotate=(-45, 45))
)


def _color_jitter_operations(strength: float) -> tuple[Augmentation, ...]:
    low, high = max(0.0, 1 - strength), 1 + strength
    return (
        Augmentation("brightness", _uniform(low, high), adjust_brightness),
        Augmentation("contrast", _uniform(low, high), adjust_contrast, keywords=("region",)),
        Augmentation("saturation", _uniform(low, high), adjust_saturation),
        Augmentation("hue", _uniform(-min(strength, 0.5), min(strength, 0.5)), adjust_hue),
    )


#: torchvision ``ColorJitter(0.1, 0.1, 0.1, 0.1)`` as CutPaste's reference code uses it.
COLOR_JITTER_OPERATIONS: tuple[Augmentation, ...] = _color_jitter_operations(0.1)


@dataclass(frozen=True)
class AugmentationPlan:
    """Which operations each image gets, in which order, with which parameters.

    Attributes:
        operations: the candidate operations.
        choices: long ``[B, K]`` indices into ``operations``, applied left to right.
        params: one ``[B, P]`` parameter tensor per operation (drawn for every image,
            so the plan of one image does not depend on the others' choices).
    """

    operations: tuple[Augmentation, ...]
    choices: torch.Tensor
    params: tuple[torch.Tensor, ...]

    def names(self, index: int) -> tuple[str, ...]:
        """The operation names of image ``index``, in the order they are applied."""
        return tuple(self.operations[int(i)].name for i in self.choices[index])


def sample_augmentation_plan(
    batch: int,
    operations: Sequence[Augmentation] = DRAEM_AUGMENTATIONS,
    count: int = 3,
    generator: torch.Generator | None = None,
) -> AugmentationPlan:
    """Draw ``count`` distinct operations per image, in random order, and all their parameters."""
    operations = tuple(operations)
    if not 0 <= count <= len(operations):
        raise ValueError(f"count must be between 0 and {len(operations)} (the number of operations), got {count}.")
    device = generator_device(generator)
    # A random permutation per image (argsort of uniform noise); its first `count` entries.
    choices = torch.rand(batch, len(operations), generator=generator, device=device).argsort(dim=1)[:, :count]
    params = tuple(op.sample(batch, generator) for op in operations)
    return AugmentationPlan(operations=operations, choices=choices.cpu(), params=params)


def apply_augmentation_plan(
    images: torch.Tensor,
    plan: AugmentationPlan,
    *,
    inplace: bool = False,
    rows: Sequence[int] | None = None,
    **extra: torch.Tensor,
) -> torch.Tensor:
    """Apply ``plan`` to ``images`` ``[B, 3, H, W]`` (the input is never modified).

    With ``rows`` (``B`` ints), the plan applies to ``images[rows]`` (e.g. textures
    picked from a bank, repeats allowed) without copying them out first.

    Each (step, operation) pair runs once, on the sub-batch of images that
    chose it. The batch is never reassembled between steps: each image is
    tracked as a row of the result that last produced it, so a sub-batch is a
    view when its images sit in consecutive rows of one result (always so for a
    single image) and one concatenation of just those rows otherwise; one
    ``torch.cat`` puts the batch back in order at the end. That is at most
    ``K * len(operations)`` batched calls whatever the batch size, and about
    one copy of the batch on top of the operations themselves (``index_copy_``
    into a preallocated batch is several times slower on a CPU).
    ``extra`` tensors ``[B, ...]`` are passed, in the matching order, to the
    operations that list their name in ``keywords`` (e.g. ``region`` for
    :func:`adjust_contrast`). ``inplace`` is accepted for compatibility and ignored.
    """
    batch = images.shape[0] if rows is None else len(rows)
    if plan.choices.shape[0] != batch:
        raise ValueError(f"the plan is for {plan.choices.shape[0]} images but images has {batch}" + (" rows." if rows is not None else "."))
    device = images.device
    # All bookkeeping is on the CPU with Python ints (no device syncs, no tensor work per image):
    # image `row` is row location[row][1] of tensor location[row][0].
    choices = plan.choices.tolist()
    location: list[tuple[torch.Tensor, int]] = [(images, row) for row in (range(batch) if rows is None else rows)]
    for step in range(plan.choices.shape[1]):
        groups: dict[int, list[int]] = {}
        for row in range(batch):
            groups.setdefault(choices[row][step], []).append(row)
        for op_index, group_rows in groups.items():
            operation = plan.operations[op_index]
            first, count = group_rows[0], len(group_rows)
            block = _gather_rows([location[row] for row in group_rows])
            if group_rows[-1] - first + 1 == count:  # consecutive images: slices of the per-image tensors
                picked = {"params": plan.params[op_index][first : first + count]}
                picked.update({name: value[first : first + count] for name, value in extra.items() if name in operation.keywords})
            else:
                index = torch.tensor(group_rows)
                picked = {"params": plan.params[op_index].index_select(0, index.to(plan.params[op_index].device))}
                picked.update(
                    {name: value.index_select(0, index.to(value.device)) for name, value in extra.items() if name in operation.keywords}
                )
            params = picked.pop("params").to(device, images.dtype)
            result = operation.apply(block, params, **picked)
            for position, row in enumerate(group_rows):
                location[row] = (result, position)
    return _gather_rows(location)


def _gather_rows(locations: Sequence[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """Stack rows given as (tensor, row) pairs: a view when they are consecutive rows of one tensor, else one ``cat``."""
    pieces: list[torch.Tensor] = []
    index = 0
    while index < len(locations):
        tensor, start = locations[index]
        end = index + 1
        while end < len(locations) and locations[end][0] is tensor and locations[end][1] == start + end - index:
            end += 1
        pieces.append(tensor[start : start + end - index])
        index = end
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def random_augment(
    images: torch.Tensor,
    operations: Sequence[Augmentation] = DRAEM_AUGMENTATIONS,
    count: int = 3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``count`` random operations per image (DRÆM: 3 of :data:`DRAEM_AUGMENTATIONS`)."""
    return apply_augmentation_plan(images, sample_augmentation_plan(images.shape[0], operations, count, generator))


def color_jitter(
    images: torch.Tensor,
    strength: float = 0.1,
    generator: torch.Generator | None = None,
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """torchvision-style ``ColorJitter(strength, strength, strength, strength)``: own factors per image, random order.

    Every image gets its own brightness, contrast and saturation factors
    (``1 ± strength``) and hue shift (``± strength`` turns); the order of the
    four changes is drawn once per call and shared by the batch (torchvision
    draws it per image). Each image's order is still uniformly random, and the
    batch then needs 4 whole-batch operations instead of 16 sub-batch ones, which
    matters for CutPaste's small patches.

    Args:
        images: ``[B, 3, H, W]`` in ``[0, 1]``.
        strength: the jitter strength.
        generator: random source.
        region: optional ``[B, 1, H, W]`` mask of the pixels whose mean grey level
            the contrast change keeps (CutPaste: the patch), default all pixels.
    """
    operations = COLOR_JITTER_OPERATIONS if strength == 0.1 else _color_jitter_operations(strength)
    batch = images.shape[0]
    order = torch.randperm(len(operations), generator=generator, device=generator_device(generator)).cpu()
    params = tuple(op.sample(batch, generator) for op in operations)
    plan = AugmentationPlan(operations=operations, choices=order.expand(batch, -1), params=params)
    extra = {"region": region} if region is not None else {}
    return apply_augmentation_plan(images, plan, **extra)
