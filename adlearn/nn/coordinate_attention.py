"""Coordinate attention (Hou, Zhou and Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021).

Squeeze-and-excitation pools a feature map to one number per channel and so
forgets *where* things are. Coordinate attention pools along each axis
separately instead: one average per row (``[C, H, 1]``) and one per column
(``[C, 1, W]``). The two are concatenated, mixed by a shared 1x1 convolution
(batch norm, h-swish) down to ``mip = max(min_hidden, C // reduction)``
channels, split again, and each half turned into a gate in ``(0, 1)`` by its
own 1x1 convolution and a sigmoid::

    y = x * a_h * a_w,   a_h: [B, C, H, 1],  a_w: [B, C, 1, W]

so a channel can be switched on in some rows and columns and off in others at
the cost of two thin convolutions. MemSeg uses it to weigh, channel by
channel and position by position, the concatenated input features and memory
differences before fusing the scales.

Example::

    >>> attention = CoordinateAttention(64)
    >>> attention(torch.rand(2, 64, 16, 12)).shape
    torch.Size([2, 64, 16, 12])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CoordinateAttention"]


class CoordinateAttention(nn.Module):
    """Coordinate attention block: ``x * a_h * a_w`` with per-row and per-column channel gates.

    Args:
        channels: channels of the input.
        reduction: the shared 1x1 convolution has ``max(min_hidden, channels // reduction)``
            channels (paper: 32).
        min_hidden: the fewest channels of the shared convolution (paper: 8).
    """

    def __init__(self, channels: int, reduction: int = 32, min_hidden: int = 8) -> None:
        super().__init__()
        if channels < 1 or reduction < 1 or min_hidden < 1:
            raise ValueError(f"channels, reduction and min_hidden must be >= 1, "
                             f"got {channels}, {reduction}, {min_hidden}.")
        hidden = max(min_hidden, channels // reduction)
        self.channels, self.hidden = channels, hidden
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()  # h-swish: x * ReLU6(x + 3) / 6, as the paper's code
        self.conv_h = nn.Conv2d(hidden, channels, kernel_size=1)
        self.conv_w = nn.Conv2d(hidden, channels, kernel_size=1)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The row gates ``a_h`` ``[B, C, H, 1]`` and column gates ``a_w`` ``[B, C, 1, W]`` of ``x``."""
        height, width = x.shape[-2:]
        pooled_h = x.mean(dim=3, keepdim=True)                   # [B, C, H, 1]
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)   # [B, C, W, 1]
        y = self.act(self.bn1(self.conv1(torch.cat((pooled_h, pooled_w), dim=2))))
        y_h, y_w = torch.split(y, [height, width], dim=2)
        return torch.sigmoid(self.conv_h(y_h)), torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.gates(x)
        return x * a_h * a_w

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"
