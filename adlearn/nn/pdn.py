"""EfficientAD's networks: the patch description network (PDN) and the autoencoder (Batzner et al., WACV 2024).

**PDN.** Four convolutions and two average poolings, no batch norm, no
striding: every output feature describes exactly one 33 x 33 patch of the input
(:data:`PDN_RECEPTIVE_FIELD`), so an anomaly can only change the features whose
patch covers it -- the reason the heat maps stay sharp -- and a 256 x 256 image
costs a fraction of a millisecond on a GPU. EfficientAD uses the same
architecture three ways: as the frozen *teacher* (distilled from an ImageNet
network), as the *student* (twice the output channels: one half imitates the
teacher, the other the autoencoder) and, inside the autoencoder's loss, as the
target. ``PDN-S`` has 128-256-256-384 channels; ``PDN-M`` is wider and adds
two 1 x 1 convolutions (:func:`pdn_layers`). Without padding (the paper's
anomaly-detection setting) a 256-px image gives a 56 x 56 feature map, 4 cells
short of the full stride-4 grid on each side (:func:`pdn_output_size`).

**Autoencoder.** Six strided convolutions squeeze the whole image into a
64-number code (1 x 1 x 64), and a decoder of bilinear upsamplings and
convolutions expands it back to the teacher's feature grid. A 64-number code
cannot hold fine texture, but it can hold the *layout* of an image -- how many
parts, where -- so it fails, and the student's second half disagrees with it,
where that layout is wrong (a logical anomaly).

The published teacher files (``teacher_small.pth``/``teacher_medium.pth`` of
the authors' reference re-implementation, ``pretrained_teacher_*.pth`` of
anomalib) are read by :func:`convert_pdn_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adlearn.nn.backbones import _IMAGENET_MEAN, _IMAGENET_STD

__all__ = [
    "PDN_RECEPTIVE_FIELD", "PDN_WIDTHS", "EfficientADAutoencoder", "PatchDescriptionNetwork",
    "convert_pdn_state_dict", "pdn_layers", "pdn_output_size",
]

#: the side of the input patch each PDN output feature sees
PDN_RECEPTIVE_FIELD = 33
#: the paper's hidden widths per model size (the output has ``out_channels``, 384 in the paper)
PDN_WIDTHS = {"small": (128, 256, 256), "medium": (256, 512, 512)}
#: ImageNet normalisation, which the published teachers were distilled with (the torchvision backbones' values)
IMAGENET_MEAN, IMAGENET_STD = _IMAGENET_MEAN, _IMAGENET_STD


def pdn_layers(size: str, widths: Sequence[int], out_channels: int, padding: bool) -> list[tuple[int, int, int]]:
    """The PDN's convolutions as ``(in, out, kernel)``, in order; average poolings follow the first two.

    ``small``: 4x4, 4x4, 3x3, 4x4. ``medium``: 4x4, 4x4, 1x1, 3x3, 4x4, 1x1 (the
    1x1 layers add depth, not receptive field). Both see 33 x 33 pixels.
    """
    first, second, third = (int(w) for w in widths)
    if size == "small":
        return [(3, first, 4), (first, second, 4), (second, third, 3), (third, out_channels, 4)]
    if size == "medium":
        return [(3, first, 4), (first, second, 4), (second, third, 1), (third, third, 3),
                (third, out_channels, 4), (out_channels, out_channels, 1)]
    raise ValueError(f"model size must be 'small' or 'medium', got {size!r}.")


def pdn_output_size(image_size: int, padding: bool = False) -> int:
    """Side of the PDN's feature map for a square input of ``image_size`` (56 for 256 without padding)."""
    if padding:
        return image_size // 4
    size = (image_size - 3) // 2  # conv 4x4, pool 2
    size = (size - 3) // 2  # conv 4x4, pool 2
    return size - 2 - 3  # conv 3x3, conv 4x4 (medium's 1x1 layers change nothing)


class PatchDescriptionNetwork(nn.Module):
    """The PDN: images ``[B, 3, H, W]`` in ``[0, 1]`` -> features ``[B, out_channels, h, w]``.

    Args:
        size: ``"small"`` (PDN-S) or ``"medium"`` (PDN-M).
        out_channels: output channels (paper: 384 for the teacher, 768 for the student).
        widths: hidden widths (default: the paper's, :data:`PDN_WIDTHS`); narrower widths are a
            CPU budget and are said so where they are used.
        padding: zero-pad the convolutions so the output is the full ``H/4 x W/4`` grid (the
            reference distils teachers this way); anomaly detection runs without.

    The ImageNet normalisation is applied inside (non-persistent buffers), so
    the network takes the same ``[0, 1]`` images as every detector of the book.
    Convolutions are named ``conv1 ... convN`` (anomalib's layout).
    """

    def __init__(self, size: str = "small", out_channels: int = 384, widths: Sequence[int] | None = None,
                 padding: bool = False) -> None:
        super().__init__()
        widths = PDN_WIDTHS[size] if widths is None and size in PDN_WIDTHS else widths
        self.size, self.out_channels, self.padding = size, int(out_channels), bool(padding)
        self.widths = tuple(int(w) for w in widths)
        layers = pdn_layers(size, self.widths, self.out_channels, padding)
        pad = {4: 3, 3: 1, 1: 0} if padding else {4: 0, 3: 0, 1: 0}
        last_4x4 = max(index for index, (_, _, kernel) in enumerate(layers, start=1) if kernel == 4)
        for index, (inputs, outputs, kernel) in enumerate(layers, start=1):
            # the reference pads every convolution but the last 4x4 one, so a padded PDN gives exactly H/4 x W/4
            padding_px = 0 if index == last_4x4 else pad[kernel]
            self.add_module(f"conv{index}", nn.Conv2d(inputs, outputs, kernel, padding=padding_px))
        self.num_convs = len(layers)
        self.pool = nn.AvgPool2d(2, stride=2, padding=1 if padding else 0)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = (images - self.mean) / self.std
        for index in range(1, self.num_convs + 1):
            x = getattr(self, f"conv{index}")(x)
            if index < self.num_convs:  # every convolution but the last is followed by a ReLU
                x = F.relu(x)
            if index <= 2:
                x = self.pool(x)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size!r}, widths={self.widths}, out_channels={self.out_channels}, padding={self.padding}"


def convert_pdn_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A PDN state dict in any of the published layouts, renamed to :class:`PatchDescriptionNetwork`'s.

    Accepted: ``conv1.weight ...`` (anomalib, and this module), ``0.weight,
    3.weight, ...`` (the ``nn.Sequential`` teachers of the reference
    re-implementation), either with a ``module.``/``teacher.``/``model.teacher.``
    prefix; or a whole pickled ``nn.Module``. The convolutions are matched in
    order of appearance (the layouts differ only in names).

    Raises:
        ValueError: the mapping holds no convolution weights.
    """
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    weights = [key for key, value in state.items() if key.endswith("weight") and getattr(value, "ndim", 0) == 4]
    if not weights:
        raise ValueError(f"no convolution weights in this state dict (keys: {sorted(state)[:8]}...); expected a PDN "
                         "teacher such as teacher_small.pth or pretrained_teacher_small.pth.")

    def order(key: str) -> tuple[int, str]:
        name = key[: -len(".weight")].rsplit(".", 1)[-1]
        digits = "".join(ch for ch in name if ch.isdigit())
        return (int(digits) if digits else 0, key)

    converted = {}
    for index, key in enumerate(sorted(weights, key=order), start=1):
        converted[f"conv{index}.weight"] = state[key]
        bias = key[: -len("weight")] + "bias"
        if bias in state:
            converted[f"conv{index}.bias"] = state[bias]
    return converted


class EfficientADAutoencoder(nn.Module):
    """The autoencoder: images ``[B, 3, S, S]`` -> a 64-d code -> features ``[B, out_channels, h, h]``.

    The encoder has six convolutions (32, 32, 64, 64, 64 channels at stride 2,
    then one of kernel ``S / 32`` down to 1 x 1 x 64); the decoder upsamples the
    code bilinearly through the paper's seven sizes (3, 8, 15, 32, 63, 127, 56
    at 256 px, scaled here to any ``image_size``), each followed by a 4x4
    convolution, ReLU and dropout 0.2, and ends with two 3x3 convolutions at
    the PDN's output grid.

    Args:
        image_size: side of the square input; a multiple of 32, at least 64.
        out_channels: the teacher's channels (384).
        output_size: side of the feature map to produce (the PDN's, :func:`pdn_output_size`).
        code_size: the bottleneck (paper: 64).
    """

    def __init__(self, image_size: int = 256, out_channels: int = 384, output_size: int | None = None,
                 code_size: int = 64) -> None:
        super().__init__()
        if image_size % 32 or image_size < 64:
            raise ValueError(f"the autoencoder needs image_size a multiple of 32 and at least 64, got {image_size}.")
        self.image_size = image_size
        self.output_size = pdn_output_size(image_size) if output_size is None else int(output_size)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, code_size, image_size // 32),
        )
        s = image_size
        # the paper's sizes at 256 px (3, 8, 15, 32, 63, 127), as anomalib generalises them
        self.upsample_sizes = tuple(max(1, n) for n in (s // 64 - 1, s // 32, s // 16 - 1, s // 8, s // 4 - 1, s // 2 - 1))
        blocks = []
        for index in range(len(self.upsample_sizes)):
            blocks.append(nn.Conv2d(code_size if index == 0 else 64, 64, 4, stride=1, padding=2))
        self.decoder_convs = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, out_channels, 3, padding=1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def encode(self, images: Tensor) -> Tensor:
        """The code ``[B, 64, 1, 1]`` of ``images`` in ``[0, 1]``."""
        return self.encoder((images - self.mean) / self.std)

    def decode(self, code: Tensor) -> Tensor:
        x = code
        for size, conv in zip(self.upsample_sizes, self.decoder_convs):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = self.dropout(F.relu(conv(x)))
        x = F.interpolate(x, size=self.output_size, mode="bilinear", align_corners=False)
        return self.head(x)

    def forward(self, images: Tensor) -> Tensor:
        return self.decode(self.encode(images))
