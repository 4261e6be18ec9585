"""Input checks shared by the anomaly makers: errors that name the argument and what was expected."""

from __future__ import annotations

from typing import Any

import torch


def check_unit_images(images: Any, name: str = "images", channels: int = 3, check_range: bool = True) -> torch.Tensor:
    """Validate a float batch ``[B, channels, H, W]`` with values in ``[0, 1]`` and return it.

    Args:
        images: the tensor to check.
        name: the argument name used in error messages.
        channels: the expected number of channels (3 = RGB).
        check_range: also check the value range (one device synchronisation).

    Raises:
        TypeError: not a tensor, or not floating point (``uint8`` images must be divided by 255).
        ValueError: wrong number of dimensions or channels, an empty batch, or values outside ``[0, 1]``.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, {channels}, H, W] of floats in [0, 1], got {type(images).__name__}.")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor with values in [0, 1], got dtype {images.dtype}; "
            "convert uint8 images with images.float() / 255."
        )
    if images.ndim != 4 or images.shape[1] != channels:
        hint = " (a grey image? repeat it to 3 channels with images.expand(-1, 3, -1, -1))" if images.ndim == 4 and images.shape[1] == 1 and channels == 3 else ""
        raise ValueError(f"{name} must have shape [B, {channels}, H, W], got {tuple(images.shape)}{hint}.")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{name} must be a non-empty batch, got shape {tuple(images.shape)}.")
    if check_range:
        low, high = torch.aminmax(images.detach())
        low, high = float(low), float(high)
        if not (low >= -1e-6 and high <= 1 + 1e-6):  # also catches NaN
            raise ValueError(f"{name} must have values in [0, 1], got range [{low:.4g}, {high:.4g}].")
    return images


def check_range_pair(value: Any, name: str, low: float, high: float) -> tuple[float, float]:
    """Validate ``(a, b)`` with ``low <= a <= b <= high`` and return it as floats."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (low, high) of numbers, got {value!r}.") from None
    if not (low <= a <= b <= high):
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got ({a}, {b}).")
    return a, b


def check_probability(value: Any, name: str) -> float:
    """Validate a probability in ``[0, 1]``."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}.") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}.")
    return p


def generator_device(generator: torch.Generator | None) -> torch.device:
    """Where random numbers are drawn: the generator's device, or the CPU for the global generator."""
    return generator.device if generator is not None else torch.device("cpu")
