"""Structural similarity (SSIM) as a differentiable torch function and loss.

SSIM compares two images patch by patch through their local means, variances
and covariance (Wang et al., 2004)::

    SSIM(x, y) = (2 mu_x mu_y + C1) (2 sigma_xy + C2)
                 / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2))

with the local statistics taken under a Gaussian window (11 x 11, sigma 1.5),
``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` for a data range ``L``. Unlike the
L2 loss it does not treat neighbouring pixels as independent, which is why
DRÆM adds it to the reconstruction loss.

With ``padding="valid"`` the mean SSIM equals scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``; the tests check that.
``padding="zeros"`` keeps the map at input size by zero padding, as DRÆM's
reference training code does; ``padding="symmetric"`` mirrors the borders as
scikit-image does. Interior values are the same in all three.

Example::

    >>> x = torch.rand(2, 3, 32, 32)
    >>> float(ssim(x, x))
    1.0
    >>> SSIMLoss()(x, x)          # 1 - SSIM
    tensor(0.)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Padding = Literal["valid", "zeros", "symmetric"]
_PADDINGS = ("valid", "zeros", "symmetric")


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``size`` taps (odd), centred on the middle tap."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be a positive odd number, got {size}.")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}.")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return (taps / taps.sum()).to(dtype)


def _pad_symmetric(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mirror ``radius`` pixels on each side, edge pixel included (SciPy's ``"reflect"`` mode)."""
    if radius > min(x.shape[-2:]):
        raise ValueError(f"symmetric padding of {radius} pixels needs images at least that large, got {tuple(x.shape[-2:])}.")
    x = torch.cat([x[..., :radius].flip(-1), x, x[..., -radius:].flip(-1)], dim=-1) if radius else x
    return torch.cat([x[..., :radius, :].flip(-2), x, x[..., -radius:, :].flip(-2)], dim=-2) if radius else x


def _local_mean(x: torch.Tensor, window: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Gaussian-weighted local mean of every channel (separable: rows, then columns)."""
    channels = x.shape[1]
    radius = window.numel() // 2
    if padding == "symmetric":
        x = _pad_symmetric(x, radius)
    conv_padding = radius if padding == "zeros" else 0
    horizontal = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    x = F.conv2d(x, horizontal, padding=(0, conv_padding), groups=channels)
    return F.conv2d(x, vertical, padding=(conv_padding, 0), groups=channels)


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    padding: Padding = "zeros",
) -> torch.Tensor:
    """Per-pixel, per-channel SSIM of two batches ``[B, C, H, W]``.

    Args:
        x, y: images of the same shape, values spanning ``data_range``.
        window_size: Gaussian window size (odd).
        sigma: Gaussian standard deviation in pixels.
        data_range: ``L`` in the constants ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
        padding: ``"valid"`` (map shrinks by ``window_size - 1``; matches
            scikit-image's mean), ``"zeros"`` (same size, zero padding, as in
            DRÆM's code) or ``"symmetric"`` (same size, mirrored borders as
            SciPy's ``"reflect"`` mode, so the whole map equals scikit-image's ``full=True`` map).

    Returns:
        The SSIM map, ``[B, C, H, W]`` (or smaller for ``"valid"``), computed in float32
        or float64 (half-precision inputs are promoted: variances are differences
        of nearly equal numbers).
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}.")
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"x and y must both be [B, C, H, W] of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}.")
    if padding == "valid" and min(x.shape[-2:]) < window_size:
        raise ValueError(f"padding='valid' needs images of at least {window_size} pixels a side, got {tuple(x.shape[-2:])}.")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    window = gaussian_window(window_size, sigma, dtype).to(x.device)

    mu_x = _local_mean(x, window, padding)
    mu_y = _local_mean(y, window, padding)
    # population (not sample) covariances, as in the SSIM paper and DRÆM
    var_x = _local_mean(x * x, window, padding) - mu_x**2
    var_y = _local_mean(y * y, window, padding) - mu_y**2
    cov_xy = _local_mean(x * y, window, padding) - mu_x * mu_y

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return numerator / denominator


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    padding: Padding = "zeros",
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Mean SSIM over pixels and channels: a scalar (``"mean"``) or one value per image (``"none"``)."""
    values = ssim_map(x, y, window_size=window_size, sigma=sigma, data_range=data_range, padding=padding)
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values.flatten(1).mean(dim=1)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


class SSIMLoss(nn.Module):
    """``1 - SSIM(x, y)``: DRÆM's structural term of the reconstruction loss.

    Args:
        window_size: Gaussian window size (DRÆM: 11).
        sigma: Gaussian standard deviation (DRÆM: 1.5).
        data_range: value range of the images (1 for ``[0, 1]``).
        padding: see :func:`ssim_map`; ``"zeros"`` as in DRÆM's training code.
    """

    def __init__(self, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0, padding: Padding = "zeros") -> None:
        super().__init__()
        gaussian_window(window_size, sigma)  # validates early, at construction
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}.")
        self.window_size = window_size
        self.sigma = sigma
        self.data_range = data_range
        self.padding: Padding = padding

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - ssim(x, y, window_size=self.window_size, sigma=self.sigma, data_range=self.data_range, padding=self.padding)

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, sigma={self.sigma}, data_range={self.data_range}, padding={self.padding!r}"
