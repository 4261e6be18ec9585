"""SSPCAB: the self-supervised predictive convolutional attentive block (Ristea et al., CVPR 2022).

The block predicts every position of a feature map from its surroundings only:

1. **Masked convolution.** Its receptive field is a ``(2k' + 2d + 1)``-square
   whose four corner sub-kernels ``K1..K4`` (each ``k' x k'``) are visible and
   whose centre ``M`` is hidden; ``d`` is the gap between a corner and the
   centre. The four corner responses are summed and passed through a ReLU.
   Because the centre never enters its own prediction, the layer has to learn
   how the context of a normal pattern determines its middle.
2. **Channel attention.** A squeeze-and-excitation module (global average
   pool, two fully connected layers with reduction ``r``, sigmoid) rescales
   each output channel.

The block keeps the shape of its input, so it can replace a convolutional
layer anywhere. Its own loss (:func:`sspcab_loss`) is the mean squared error
between the block's output and its input: the masked centre is reconstructed
from the context. The host network adds ``lambda * L_SSPCAB`` to its loss.

Example::

    >>> block = SSPCAB(channels=32)
    >>> x = torch.randn(2, 32, 16, 16)
    >>> y = block(x)
    >>> y.shape
    torch.Size([2, 32, 16, 16])
    >>> loss = sspcab_loss(x, y)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel attention of Hu et al. (2018): per-channel weights in ``(0, 1)`` from global context.

    Args:
        channels: number of feature channels.
        reduction_ratio: the bottleneck has ``channels // reduction_ratio`` units (at least 1).
    """

    def __init__(self, channels: int, reduction_ratio: int = 8) -> None:
        super().__init__()
        if channels < 1 or reduction_ratio < 1:
            raise ValueError(f"channels and reduction_ratio must be >= 1, got {channels} and {reduction_ratio}.")
        hidden = max(1, channels // reduction_ratio)
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(dim=(2, 3))  # squeeze: one number per channel
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(context))))
        return x * weights[:, :, None, None]


class SSPCAB(nn.Module):
    """Masked convolution (4 visible corners, hidden centre) followed by channel attention.

    Args:
        channels: input and output channels (the block keeps the shape).
        kernel_dim: ``k'``, the side of each corner sub-kernel (paper: 1).
        dilation: ``d``, the distance between a corner sub-kernel and the hidden centre (paper: 1).
        reduction_ratio: ``r`` of the squeeze-and-excitation module (paper: 8).
    """

    def __init__(self, channels: int, kernel_dim: int = 1, dilation: int = 1, reduction_ratio: int = 8) -> None:
        super().__init__()
        if kernel_dim < 1 or dilation < 0:
            raise ValueError(f"kernel_dim must be >= 1 and dilation >= 0, got {kernel_dim} and {dilation}.")
        self.channels = channels
        self.kernel_dim = kernel_dim
        self.dilation = dilation
        # Zero padding k'+d keeps the size; a corner sub-kernel starts `offset`
        # pixels from the opposite corner of the (2k'+2d+1)-wide receptive field.
        self.padding = kernel_dim + dilation
        self.offset = kernel_dim + 2 * dilation + 1
        # top-left, bottom-left, top-right, bottom-right
        self.corner_convs = nn.ModuleList(nn.Conv2d(channels, channels, kernel_size=kernel_dim) for _ in range(4))
        self.attention = SqueezeExcitation(channels, reduction_ratio)

    @property
    def receptive_field(self) -> int:
        """Side of the square the block looks at: ``2k' + 2d + 1``."""
        return 2 * self.kernel_dim + 2 * self.dilation + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SSPCAB expects [B, {self.channels}, H, W], got {tuple(x.shape)}.")
        p, o = self.padding, self.offset
        padded = F.pad(x, (p, p, p, p))
        # Each corner conv sees the padded map shifted so that its k' x k' kernel
        # lands on one corner of the receptive field centred on the output pixel.
        views = (
            padded[:, :, :-o, :-o],
            padded[:, :, o:, :-o],
            padded[:, :, :-o, o:],
            padded[:, :, o:, o:],
        )
        summed = sum(conv(view) for conv, view in zip(self.corner_convs, views))
        return self.attention(F.relu(summed))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_dim={self.kernel_dim}, dilation={self.dilation}"


def sspcab_loss(block_input: torch.Tensor, block_output: torch.Tensor) -> torch.Tensor:
    """SSPCAB's self-supervised loss: mean squared error between the block's output and its input.

    Gradients flow into both sides, as in the reference implementation.
    """
    if block_input.shape != block_output.shape:
        raise ValueError(f"SSPCAB input and output shapes differ: {tuple(block_input.shape)} vs {tuple(block_output.shape)}.")
    return F.mse_loss(block_output.float(), block_input.float())
