"""Focal loss (Lin et al., 2017) for dense, per-pixel classification.

Cross-entropy ``-log p_t`` (``p_t`` = probability given to the true class)
lets the many easy pixels of a segmentation dominate the average: in DRÆM
most pixels are normal and quickly classified correctly. The focal loss
multiplies by ``(1 - p_t)^gamma`` so that well-classified pixels contribute
almost nothing and training concentrates on the hard ones (anomaly borders,
faint anomalies)::

    FL = -alpha_t (1 - p_t)^gamma log(p_t)

DRÆM's reference code adds a tiny label smoothing ``s``: the one-hot target is
clipped to ``[s / (K - 1), 1 - s]`` and ``s`` is added to ``p_t`` before the
logarithm, which keeps ``log`` finite when a probability underflows to 0.
``smooth=0`` gives the textbook formula.

Example::

    >>> logits = torch.zeros(1, 2, 4, 4)          # p = 0.5 everywhere
    >>> target = torch.zeros(1, 1, 4, 4)
    >>> round(float(focal_loss(logits, target, smooth=0)), 4)   # 0.25 * log 2
    0.1733
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: Sequence[float] | torch.Tensor | None = None,
    smooth: float = 1e-5,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> torch.Tensor:
    """Focal loss of class logits against integer class targets.

    Args:
        logits: ``[B, K, ...]`` unnormalised class scores (softmax is applied here).
        target: ``[B, ...]`` or ``[B, 1, ...]`` class indices in ``0..K-1``; a float
            mask with values in ``{0, 1}`` works for two classes.
        gamma: focusing exponent (DRÆM: 2); 0 gives cross-entropy.
        alpha: optional per-class weights ``[K]``; ``None`` weighs every class 1.
        smooth: label smoothing of DRÆM's implementation (1e-5); must be in ``[0, 1)``.
        reduction: ``"mean"`` over every pixel, ``"sum"``, or ``"none"`` (shape of ``target``).

    Returns:
        The loss, computed in float32 even under mixed precision.
    """
    if logits.ndim < 2:
        raise ValueError(f"logits must be [B, K, ...] with K classes, got shape {tuple(logits.shape)}.")
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(f"logits need at least 2 classes along dim 1, got {num_classes}.")
    if target.ndim == logits.ndim:
        if target.shape[1] != 1:
            raise ValueError(f"target must be [B, ...] or [B, 1, ...], got shape {tuple(target.shape)}.")
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)} without the class axis."
        )
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}.")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}.")
    classes = target.round().long()
    if int(classes.min()) < 0 or int(classes.max()) >= num_classes:
        raise ValueError(f"target holds class indices outside 0..{num_classes - 1}.")

    probabilities = torch.softmax(logits.float(), dim=1)
    one_hot = torch.zeros_like(probabilities).scatter_(1, classes.unsqueeze(1), 1.0)
    if smooth > 0:
        one_hot = one_hot.clamp(smooth / (num_classes - 1), 1.0 - smooth)
    p_true = (one_hot * probabilities).sum(dim=1) + smooth
    loss = -((1.0 - p_true).clamp_min(0.0) ** gamma) * torch.log(p_true)
    if alpha is not None:
        weights = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)
        if weights.shape != (num_classes,):
            raise ValueError(f"alpha must hold one weight per class ({num_classes}), got shape {tuple(weights.shape)}.")
        loss = weights[classes] * loss

    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss` (DRÆM's segmentation loss with ``gamma=2``)."""

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Sequence[float] | None = None,
        smooth: float = 1e-5,
        reduction: Literal["mean", "sum", "none"] = "mean",
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = None if alpha is None else list(alpha)
        self.smooth = smooth
        self.reduction: Literal["mean", "sum", "none"] = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, gamma=self.gamma, alpha=self.alpha, smooth=self.smooth, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, smooth={self.smooth}, reduction={self.reduction!r}"
