"""DRÆM: a discriminatively trained reconstruction embedding (Zavrtanik, Kristan and Skočaj, ICCV 2021).

Two networks are trained together on anomaly-free images into which anomalies
are pasted on the fly (Perlin-noise masks filled with foreign textures, see
:class:`adlearn.simulation.DraemSynthesizer`):

* the **reconstructive sub-network** (an encoder-decoder without skip
  connections) learns to turn the corrupted image back into the clean one,
  with an L2 + SSIM loss;
* the **discriminative sub-network** (a U-Net) sees the corrupted image
  concatenated with its reconstruction (6 channels) and learns, with a focal
  loss, to segment where the two disagree in a way that matters. It *learns*
  the distance between image and reconstruction instead of relying on a
  hand-made one (a pixel difference, SSIM) and its post-processing.

Scoring: the pixel map is the softmax probability of the "anomalous" class;
the image score is the maximum of that map after a mean filter (21 x 21 in
the reference test code), which ignores isolated hot pixels.

The layer layout and module names follow the authors' ``model_unet.py`` so
their published state dicts load into :class:`ReconstructiveSubNetwork` and
:class:`DiscriminativeSubNetwork` with ``load_state_dict``.

Example::

    detector = DRAEM.from_profile("book")
    detector.fit(MVTecAD(root, "grass", "train", image_size=128))
    prediction = detector.predict(images)      # .scores [B], .maps [B, 1, H, W]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adlearn.methods.base import (
    Detector, DetectorConfig, Prediction, TrainingPlan, register, resize_images, resize_maps,
)
from adlearn.nn import SSPCAB, SSIMLoss, focal_loss, ssim_map, sspcab_loss
from adlearn.simulation.augment import rotate
from adlearn.train import random_batches

# --------------------------------------------------------------------------- networks


def _conv_block(in_channels: int, out_channels: int, middle_channels: int | None = None) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU (the unit every DRÆM stage is built of)."""
    middle = out_channels if middle_channels is None else middle_channels
    return nn.Sequential(
        nn.Conv2d(in_channels, middle, kernel_size=3, padding=1),
        nn.BatchNorm2d(middle),
        nn.ReLU(inplace=True),
        nn.Conv2d(middle, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Bilinear 2x upsampling, then a 3x3 convolution, batch norm and ReLU."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _last_stage(width: int, sspcab: bool) -> nn.Sequential:
    """An encoder's last stage: two conv-BN-ReLU units, or with ``sspcab`` an SSPCAB block in place of the first
    (the "penultimate convolutional layer" where the SSPCAB paper inserts it)."""
    if not sspcab:
        return _conv_block(width, width)
    return nn.Sequential(SSPCAB(width), nn.Conv2d(width, width, kernel_size=3, padding=1), nn.BatchNorm2d(width),
                         nn.ReLU(inplace=True))


def _run_last_stage(stage: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The stage's output and, when it holds SSPCAB, the block's self-supervised loss (else ``None``)."""
    if not isinstance(stage[0], SSPCAB):
        return stage(x), None
    predicted = stage[0](x)
    return stage[1:](predicted), sspcab_loss(x, predicted)


class ReconstructiveEncoder(nn.Module):
    """Five stages of two convolutions, four 2x max-pools: ``[B, 3, H, W] -> [B, 8w, H/16, W/16]``.

    With ``sspcab=True`` the penultimate convolutional layer (the first
    convolution of the last stage, with its batch norm and ReLU) is replaced
    by an :class:`~adlearn.nn.SSPCAB` block, where the SSPCAB paper puts it in DRÆM.
    """

    def __init__(self, in_channels: int, base_width: int, sspcab: bool = False) -> None:
        super().__init__()
        w = base_width
        self.block1 = _conv_block(in_channels, w)
        self.mp1 = nn.Sequential(nn.MaxPool2d(2))
        self.block2 = _conv_block(w, 2 * w)
        self.mp2 = nn.Sequential(nn.MaxPool2d(2))
        self.block3 = _conv_block(2 * w, 4 * w)
        self.mp3 = nn.Sequential(nn.MaxPool2d(2))
        self.block4 = _conv_block(4 * w, 8 * w)
        self.mp4 = nn.Sequential(nn.MaxPool2d(2))
        self.block5 = _last_stage(8 * w, sspcab)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the bottleneck features and, with SSPCAB, the block's self-supervised loss (else ``None``)."""
        x = self.mp1(self.block1(x))
        x = self.mp2(self.block2(x))
        x = self.mp3(self.block3(x))
        x = self.mp4(self.block4(x))
        return _run_last_stage(self.block5, x)


class ReconstructiveDecoder(nn.Module):
    """Four upsampling stages without skip connections: ``[B, 8w, H/16, W/16] -> [B, 3, H, W]``.

    No skip connections: an anomaly in the input cannot be copied through to
    the output, it has to go through the bottleneck that only knows normal patterns.
    """

    def __init__(self, base_width: int, out_channels: int) -> None:
        super().__init__()
        w = base_width
        self.up1 = _up_block(8 * w, 8 * w)
        self.db1 = _conv_block(8 * w, 4 * w, middle_channels=8 * w)
        self.up2 = _up_block(4 * w, 4 * w)
        self.db2 = _conv_block(4 * w, 2 * w, middle_channels=4 * w)
        self.up3 = _up_block(2 * w, 2 * w)
        self.db3 = _conv_block(2 * w, w, middle_channels=2 * w)
        self.up4 = _up_block(w, w)
        self.db4 = _conv_block(w, w)
        self.fin_out = nn.Sequential(nn.Conv2d(w, out_channels, kernel_size=3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.db1(self.up1(x))
        x = self.db2(self.up2(x))
        x = self.db3(self.up3(x))
        x = self.db4(self.up4(x))
        return self.fin_out(x)


class ReconstructiveSubNetwork(nn.Module):
    """DRÆM's encoder-decoder that repaints anomalies with normal-looking content.

    Args:
        in_channels: image channels in (3).
        out_channels: image channels out (3).
        base_width: width ``w`` of the first stage; later stages use ``2w, 4w, 8w, 8w``
            (paper: 128).
        sspcab: put an SSPCAB block in place of the encoder's penultimate convolution.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base_width: int = 128, sspcab: bool = False) -> None:
        super().__init__()
        self.encoder = ReconstructiveEncoder(in_channels, base_width, sspcab=sspcab)
        self.decoder = ReconstructiveDecoder(base_width, out_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``[B, out_channels, H, W]`` (H, W multiples of 16)."""
        return self.forward_with_sspcab_loss(images)[0]

    def forward_with_sspcab_loss(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reconstruction and SSPCAB's loss (``None`` without SSPCAB)."""
        features, block_loss = self.encoder(images)
        return self.decoder(features), block_loss


class DiscriminativeEncoder(nn.Module):
    """Six stages, five 2x max-pools; returns every stage's features for the skip connections.

    With ``sspcab=True`` the first convolution of the last stage is an SSPCAB block (the placement
    "in both networks" the SSPCAB authors described for DRÆM).
    """

    def __init__(self, in_channels: int, base_width: int, sspcab: bool = False) -> None:
        super().__init__()
        w = base_width
        self.block1 = _conv_block(in_channels, w)
        self.mp1 = nn.Sequential(nn.MaxPool2d(2))
        self.block2 = _conv_block(w, 2 * w)
        self.mp2 = nn.Sequential(nn.MaxPool2d(2))
        self.block3 = _conv_block(2 * w, 4 * w)
        self.mp3 = nn.Sequential(nn.MaxPool2d(2))
        self.block4 = _conv_block(4 * w, 8 * w)
        self.mp4 = nn.Sequential(nn.MaxPool2d(2))
        self.block5 = _conv_block(8 * w, 8 * w)
        self.mp5 = nn.Sequential(nn.MaxPool2d(2))
        self.block6 = _last_stage(8 * w, sspcab)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_with_sspcab_loss(x)[0]

    def forward_with_sspcab_loss(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        b1 = self.block1(x)
        b2 = self.block2(self.mp1(b1))
        b3 = self.block3(self.mp2(b2))
        b4 = self.block4(self.mp3(b3))
        b5 = self.block5(self.mp4(b4))
        b6, block_loss = _run_last_stage(self.block6, self.mp5(b5))
        return [b1, b2, b3, b4, b5, b6], block_loss


class DiscriminativeDecoder(nn.Module):
    """U-Net decoder: upsample, concatenate the encoder's features of the same size, convolve."""

    def __init__(self, base_width: int, out_channels: int) -> None:
        super().__init__()
        w = base_width
        self.up_b = _up_block(8 * w, 8 * w)
        self.db_b = _conv_block((8 + 8) * w, 8 * w)
        self.up1 = _up_block(8 * w, 4 * w)
        self.db1 = _conv_block((4 + 8) * w, 4 * w)
        self.up2 = _up_block(4 * w, 2 * w)
        self.db2 = _conv_block((2 + 4) * w, 2 * w)
        self.up3 = _up_block(2 * w, w)
        self.db3 = _conv_block((1 + 2) * w, w)
        self.up4 = _up_block(w, w)
        self.db4 = _conv_block(2 * w, w)
        self.fin_out = nn.Sequential(nn.Conv2d(w, out_channels, kernel_size=3, padding=1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        b1, b2, b3, b4, b5, b6 = features
        x = self.db_b(torch.cat((self.up_b(b6), b5), dim=1))
        x = self.db1(torch.cat((self.up1(x), b4), dim=1))
        x = self.db2(torch.cat((self.up2(x), b3), dim=1))
        x = self.db3(torch.cat((self.up3(x), b2), dim=1))
        x = self.db4(torch.cat((self.up4(x), b1), dim=1))
        return self.fin_out(x)


class DiscriminativeSubNetwork(nn.Module):
    """DRÆM's U-Net that segments anomalies from image ⊕ reconstruction.

    Args:
        in_channels: 6 (reconstruction and image, 3 channels each).
        out_channels: 2 classes (normal, anomalous).
        base_width: width ``w`` of the first stage (paper: 64).
        sspcab: put an SSPCAB block in place of the encoder's penultimate convolution.
    """

    def __init__(self, in_channels: int = 6, out_channels: int = 2, base_width: int = 64, sspcab: bool = False) -> None:
        super().__init__()
        self.encoder_segment = DiscriminativeEncoder(in_channels, base_width, sspcab=sspcab)
        self.decoder_segment = DiscriminativeDecoder(base_width, out_channels)

    def forward(self, joined: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits ``[B, out_channels, H, W]`` (H, W multiples of 32)."""
        return self.forward_with_sspcab_loss(joined)[0]

    def forward_with_sspcab_loss(self, joined: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits and SSPCAB's loss (``None`` without SSPCAB)."""
        features, block_loss = self.encoder_segment.forward_with_sspcab_loss(joined)
        return self.decoder_segment(features), block_loss


def init_draem_weights(module: nn.Module) -> None:
    """The reference initialisation: convolutions N(0, 0.02); batch norm scale N(1, 0.02), shift 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def rotate_some(images: torch.Tensor, probability: float, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate a random ``probability`` share of ``images`` by angles uniform in ``[-degrees, degrees]``.

    The reference loader does this to 30 % of the normal training images (by up
    to 90 degrees, black corners) before pasting anomalies in; the rotated
    image is also the reconstruction target. Random numbers come from the CPU
    ``generator``; the untouched images are returned bit-for-bit.
    """
    if probability <= 0 or degrees == 0:
        return images
    chosen = torch.nonzero(torch.rand(images.shape[0], generator=generator) < probability).flatten()
    angles = (torch.rand(chosen.numel(), generator=generator) * 2 - 1) * degrees
    if chosen.numel() == 0:
        return images
    chosen = chosen.to(images.device)
    rotated = rotate(images.index_select(0, chosen), angles).clamp(0, 1)
    return images.index_copy(0, chosen, rotated)


def random_crops(tensors: tuple[torch.Tensor, ...], size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """One random ``size`` x ``size`` window per sample, the same window in every tensor of ``tensors``.

    All tensors are ``[B, C, H, W]`` with the same ``B``, ``H`` and ``W`` (an
    image, its clean target and its mask). The windows are gathered in one
    indexing operation for the whole batch; offsets come from the CPU ``generator``.
    """
    batch, _, height, width = tensors[0].shape
    if size > min(height, width):
        raise ValueError(f"train_crop {size} is larger than the training images ({height}x{width}).")
    if size == height and size == width:
        return tensors
    device = tensors[0].device
    top = torch.randint(0, height - size + 1, (batch,), generator=generator).to(device)
    left = torch.randint(0, width - size + 1, (batch,), generator=generator).to(device)
    window = torch.arange(size, device=device)
    rows = (top[:, None] + window)[:, None, :, None]      # [B, 1, size, 1]
    cols = (left[:, None] + window)[:, None, None, :]     # [B, 1, 1, size]
    samples = torch.arange(batch, device=device)[:, None, None, None]
    crops = []
    for tensor in tensors:
        channels = torch.arange(tensor.shape[1], device=device)[None, :, None, None]
        crops.append(tensor[samples, channels, rows, cols])
    return tuple(crops)


# --------------------------------------------------------------------------- scoring


def anomaly_map_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """DRÆM's pixel map: softmax probability of the anomalous class (channel 1), ``[B, 1, H, W]``."""
    return torch.softmax(logits.float(), dim=1)[:, 1:2]


def image_score_from_map(anomaly_map: torch.Tensor, filter_size: int = 21) -> torch.Tensor:
    """DRÆM's image score: the maximum of the map after a ``filter_size``-square mean filter, ``[B]``.

    As in the reference test code the filter pads with zeros and counts them in
    the average (``avg_pool2d`` defaults), so a hot spot at the border counts
    a little less than one in the middle.
    """
    if anomaly_map.ndim != 4 or anomaly_map.shape[1] != 1:
        raise ValueError(f"anomaly_map must be [B, 1, H, W], got {tuple(anomaly_map.shape)}.")
    if filter_size < 1 or filter_size % 2 == 0:
        raise ValueError(f"filter_size must be a positive odd number, got {filter_size}.")
    smoothed = F.avg_pool2d(anomaly_map, filter_size, stride=1, padding=filter_size // 2)
    return smoothed.flatten(1).amax(dim=1)


@dataclass
class RepairReport:
    """How close the reconstruction comes to the clean image inside synthetic anomalies.

    Per anomalous sample, means over the mask's pixels: ``l1_*`` is ``|x - clean|`` (lower is
    closer), ``ssim_*`` the SSIM map of ``x`` against the clean image (higher is closer), for
    ``x`` = the corrupted input and ``x`` = its reconstruction. The reconstruction *repairs*
    when it is closer than the input on both. ``ssim_outside`` is the reconstruction's SSIM
    with the clean image *outside* the mask, where there is nothing to repair: how well it
    reproduces normal appearance at all, the ceiling of its SSIM inside.
    """

    l1_input: torch.Tensor
    l1_reconstruction: torch.Tensor
    ssim_input: torch.Tensor
    ssim_reconstruction: torch.Tensor
    ssim_outside: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Means over the samples, and the share of samples the reconstruction repaired (on L1 and on SSIM)."""
        return {
            "samples": len(self.l1_input),
            "L1 in mask, input": float(self.l1_input.mean()),
            "L1 in mask, reconstruction": float(self.l1_reconstruction.mean()),
            "SSIM in mask, input": float(self.ssim_input.mean()),
            "SSIM in mask, reconstruction": float(self.ssim_reconstruction.mean()),
            "share repaired (L1)": float((self.l1_reconstruction < self.l1_input).float().mean()),
            "share repaired (SSIM)": float((self.ssim_reconstruction > self.ssim_input).float().mean()),
            "SSIM outside the masks, reconstruction": float(self.ssim_outside.mean()),
        }

    @property
    def repairs(self) -> bool:
        """Closer to the clean image than the input, on average, by both L1 and SSIM inside the masks."""
        s = self.summary()
        return (s["L1 in mask, reconstruction"] < s["L1 in mask, input"]
                and s["SSIM in mask, reconstruction"] > s["SSIM in mask, input"])


def measure_repair(detector: "DRAEM", clean: torch.Tensor, synthesizer: Any, generator: torch.Generator) -> RepairReport:
    """Corrupt ``clean`` normal images ``[B, 3, H, W]`` with ``synthesizer`` and compare, inside each
    synthetic mask, the corrupted input and its reconstruction with the clean image.

    Samples the synthesizer leaves unchanged (empty masks) are skipped. Images must already be at
    the detector's ``image_size``, so that the mask lines up with the reconstruction.
    """
    if detector.reconstructive_net is None:
        raise ValueError("this DRÆM was trained without its reconstructive sub-network (use_reconstruction=False).")
    synthetic = synthesizer(clean, generator)
    keep = synthetic.masks.flatten(1).sum(dim=1) > 0
    if not bool(keep.any()):
        raise ValueError("the synthesizer added no anomaly to any of the images; pass more images.")
    corrupted, masks, clean = synthetic.images[keep], synthetic.masks[keep], clean[keep]
    return repair_report(clean, corrupted, detector.inspect(corrupted).reconstruction, masks)


def repair_report(clean: torch.Tensor, corrupted: torch.Tensor, reconstruction: torch.Tensor,
                  masks: torch.Tensor) -> RepairReport:
    """:class:`RepairReport` of ``reconstruction`` (of ``corrupted``) against ``clean``, inside ``masks``
    ``[B, 1, H, W]``, none of them empty. :func:`measure_repair` synthesises the anomalies and reconstructs
    with a fitted detector; call this directly with any reconstruction (e.g. during training)."""
    def mean_over(region: torch.Tensor, values: torch.Tensor) -> torch.Tensor:  # per sample, over region and channels
        return (values.mean(dim=1, keepdim=True) * region).flatten(1).sum(dim=1) / region.flatten(1).sum(dim=1)

    ssim_reconstruction = ssim_map(reconstruction, clean)
    return RepairReport(
        l1_input=mean_over(masks, (corrupted - clean).abs()),
        l1_reconstruction=mean_over(masks, (reconstruction - clean).abs()),
        ssim_input=mean_over(masks, ssim_map(corrupted, clean)),
        ssim_reconstruction=mean_over(masks, ssim_reconstruction),
        ssim_outside=mean_over(1 - masks, ssim_reconstruction),
    )


@dataclass
class DraemOutput:
    """Everything DRÆM computes for a batch (what the chapter's figures show).

    Attributes:
        reconstruction: ``[B, 3, H, W]`` the reconstructive sub-network's output, clipped to ``[0, 1]``
            (``None`` in the ablation without it).
        maps: ``[B, 1, H, W]`` pixel anomaly probabilities.
        scores: ``[B]`` image scores (max of the mean-filtered map).
    """

    reconstruction: torch.Tensor | None
    maps: torch.Tensor
    scores: torch.Tensor


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class DRAEMConfig(DetectorConfig):
    """DRÆM's hyper-parameters; the defaults are the paper's (and its reference code's) values.

    Attributes:
        image_size: side of the square images the networks see (a multiple of 32: the U-Net pools 5 times).
        reconstructive_width: base width of the reconstructive sub-network (paper: 128).
        discriminative_width: base width of the discriminative sub-network (paper: 64).
        sspcab: add SSPCAB blocks (see :class:`ReconstructiveEncoder`), where ``sspcab_placement`` says.
        sspcab_placement: ``"reconstructive"`` (the block in the reconstructive encoder only, as the
            public SSPCAB+DRÆM code does) or ``"both"`` (also in the discriminative encoder, as the
            SSPCAB authors described it); each block's loss is added with ``sspcab_weight``.
        use_reconstruction: ``False`` is the ablation without the reconstructive sub-network: the
            discriminative net sees only the image (3 channels) and is trained by the focal loss alone.
        sspcab_weight: weight ``lambda`` of SSPCAB's loss in the total loss (SSPCAB paper: 0.1).
        batch_size: training batch size (paper: 8).
        train_crop: train on one random ``train_crop`` x ``train_crop`` window of every synthetic
            sample instead of the whole image (``None``, the paper). The networks are fully
            convolutional, so they still see whole images at test time; on stationary textures a
            window is as informative as the image at a fraction of the cost. Cut after synthesis,
            so anomalies keep their size relative to the image (a window may hold none).
        reconstruction_warmup_steps: the first this many training steps train the reconstructive
            sub-network alone (its loss only; the discriminative net is not run), the rest train both
            as the paper does (paper: 0). Counted in ``steps``/``epochs``. A network that has learned to
            reconstruct before the discriminative net starts to rely on it gives it a sharper reference.
        lr: Adam learning rate for both sub-networks (paper: 1e-4).
        epochs: training length in passes over the training set (paper: 700); used when ``steps`` is ``None``.
        steps: training length in optimiser steps; overrides ``epochs``.
        lr_milestones: fractions of training after which the learning rate is multiplied by ``lr_gamma``
            (paper: 80 % and 90 %).
        lr_gamma: learning-rate decay factor (paper: 0.2).
        ssim_weight: weight of the SSIM term of the reconstruction loss (reference code: 1).
        focal_gamma: focusing exponent of the focal loss (2).
        rotation_probability: chance that a training image is rotated before synthesis (reference loader: 0.3).
        rotation_degrees: such rotations are uniform in ``[-rotation_degrees, rotation_degrees]`` (90).
        score_filter_size: mean-filter size of the image score (reference test code: 21).
        texture_root: data root holding DTD (``dtd/images/<class>/*.jpg``); ``None``: the default
            data root. Without DTD an offline stand-in is used (see
            :func:`adlearn.data.textures.load_texture_images`).
        texture_count: how many anomaly-source textures to load (``None``: all of DTD, or 48 stand-ins).
        grey_textures: turn the anomaly sources grey (luma in all three channels). For grey products
            (Magnetic Tile Defects): with coloured sources every synthetic anomaly can be found by its
            colour alone, a cue no real defect of a grey product has.
        synthesis: extra keyword arguments for :class:`adlearn.simulation.DraemSynthesizer`.
    """

    image_size: int = 256
    reconstructive_width: int = 128
    discriminative_width: int = 64
    sspcab: bool = False
    sspcab_placement: str = "reconstructive"
    use_reconstruction: bool = True
    sspcab_weight: float = 0.1
    batch_size: int = 8
    train_crop: int | None = None
    reconstruction_warmup_steps: int = 0
    lr: float = 1e-4
    epochs: int | None = 700
    steps: int | None = None
    lr_milestones: tuple[float, ...] = (0.8, 0.9)
    lr_gamma: float = 0.2
    ssim_weight: float = 1.0
    focal_gamma: float = 2.0
    rotation_probability: float = 0.3
    rotation_degrees: float = 90.0
    score_filter_size: int = 21
    texture_root: str | None = None
    texture_count: int | None = None
    grey_textures: bool = False
    synthesis: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))
        object.__setattr__(self, "synthesis", dict(self.synthesis or {}))
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the U-Net pools 5 times), got {self.image_size}.")
        for name in ("reconstructive_width", "discriminative_width", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        crop = self.train_crop
        if crop is not None and (crop < 32 or crop % 32 or crop > self.image_size):
            raise ValueError(f"train_crop must be None or a multiple of 32 between 32 and image_size={self.image_size}, "
                             f"got {crop}.")
        if self.steps is None and self.epochs is None:
            raise ValueError("give the training length as steps or epochs; both are None.")
        if self.reconstruction_warmup_steps < 0:
            raise ValueError(f"reconstruction_warmup_steps must be >= 0, got {self.reconstruction_warmup_steps}.")
        if self.reconstruction_warmup_steps and not self.use_reconstruction:
            raise ValueError("reconstruction_warmup_steps needs the reconstructive sub-network (use_reconstruction=True).")
        if self.sspcab_placement not in ("reconstructive", "both"):
            raise ValueError(f"sspcab_placement must be 'reconstructive' or 'both', got {self.sspcab_placement!r}.")
        if self.score_filter_size < 1 or self.score_filter_size % 2 == 0:
            raise ValueError(f"score_filter_size must be a positive odd number, got {self.score_filter_size}.")
        if not 0.0 <= self.rotation_probability <= 1.0:
            raise ValueError(f"rotation_probability must be in [0, 1], got {self.rotation_probability}.")
        if any(not 0.0 < m <= 1.0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones are fractions of training in (0, 1], got {self.lr_milestones}.")


@register("draem")
class DRAEM(Detector):
    """DRÆM behind the Detector contract (hyper-parameters: :class:`DRAEMConfig`).

    Networks: ``networks["reconstructive"]`` (:class:`ReconstructiveSubNetwork`) and
    ``networks["discriminative"]`` (:class:`DiscriminativeSubNetwork`), initialised as in
    the reference code. ``steps`` of :meth:`fit` defaults to ``steps``, else ``epochs`` passes
    over the training images. Set :attr:`synthesizer` before ``fit`` to train on a ready
    anomaly simulator (default: :meth:`build_synthesizer`).
    """

    Config: ClassVar[type[DRAEMConfig]] = DRAEMConfig
    INPUT_CHANNELS: ClassVar[int] = 3
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(
            image_size=64, reconstructive_width=4, discriminative_width=4, batch_size=4, lr=1e-3, epochs=None,
            steps=12, texture_count=8,
        ),
        # book: chosen by runs on the built-in textures on 2 CPU cores (benchmarks/README.md). Widths
        # 16/8 cost the same per step as 4/16 and scored higher on brick and gravel over two seeds
        # (the reconstruction stays soft at either width in 600 steps, so why is not settled).
        # Rotating 30 % of the images costs more than it teaches in 600 steps; the score filter is
        # the reference 21 scaled from 256 to 128 pixels.
        "book": dict(
            image_size=128, reconstructive_width=16, discriminative_width=8, lr=1e-3, epochs=None, steps=600,
            rotation_probability=0.0, score_filter_size=11,
        ),
        "paper": {},
    }

    config: DRAEMConfig
    #: the anomaly simulator ``fit`` trains on; ``None`` builds one (:meth:`build_synthesizer`)
    synthesizer: Any = None

    def build_networks(self) -> dict[str, nn.Module]:
        c = self.config
        discriminative = DiscriminativeSubNetwork(6 if c.use_reconstruction else 3, 2, c.discriminative_width,
                                                  sspcab=c.sspcab and c.sspcab_placement == "both")
        discriminative.apply(init_draem_weights)
        if not c.use_reconstruction:
            return {"discriminative": discriminative}
        reconstructive = ReconstructiveSubNetwork(3, 3, c.reconstructive_width, sspcab=c.sspcab)
        reconstructive.apply(init_draem_weights)
        return {"reconstructive": reconstructive, "discriminative": discriminative}

    @property
    def reconstructive_net(self) -> ReconstructiveSubNetwork | None:
        """The reconstructive sub-network; ``None`` in the ablation without it (``use_reconstruction=False``)."""
        return self.networks["reconstructive"] if "reconstructive" in self.networks else None

    @property
    def discriminative_net(self) -> DiscriminativeSubNetwork:
        return self.networks["discriminative"]

    # ------------------------------------------------------------------ training

    def default_steps(self, num_images: int) -> int:
        """Optimiser steps of one training run on ``num_images`` images (``steps``, or ``epochs`` x batches per epoch)."""
        if self.config.steps is not None:
            return int(self.config.steps)
        return int(self.config.epochs) * math.ceil(num_images / self.config.batch_size)

    training_steps = default_steps  # the name chapter 3 uses

    def build_synthesizer(self, verbose: bool = True, **options: Any) -> Any:
        """The anomaly simulator DRÆM trains on: Perlin masks filled with augmented foreign textures.

        ``options`` are keyword arguments of :class:`adlearn.simulation.DraemSynthesizer` that take
        precedence over the ``synthesis`` hyper-parameter (e.g. ``keep_sources=True`` for figures).
        """
        from adlearn.data.textures import load_texture_images
        from adlearn.simulation import DraemSynthesizer

        c = self.config
        textures = load_texture_images(
            c.texture_root, image_size=c.image_size, count=c.texture_count, seed=c.seed, dtype=torch.uint8,
            verbose=verbose, grey=c.grey_textures,
        )
        return DraemSynthesizer(textures, **{**c.synthesis, **options})

    def setup(self, images: torch.Tensor) -> None:
        if self.synthesizer is None:
            self.synthesizer = self.build_synthesizer(verbose=True)

    def training_plan(self, images: torch.Tensor, steps: int) -> TrainingPlan:
        c = self.config
        reconstructive, discriminative = self.reconstructive_net, self.discriminative_net
        optimizer = torch.optim.Adam(
            [{"params": network.parameters()} for network in self.networks.values()], lr=c.lr
        )
        milestones = sorted({max(1, int(f * steps)) for f in c.lr_milestones})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=c.lr_gamma)
        # Random numbers are drawn on the CPU (cheap, no GPU synchronisation) and the
        # work is done on the training device, so a seed means the same run everywhere.
        batches = random_batches(images, c.batch_size, torch.Generator().manual_seed(c.seed))
        synthesis_generator = torch.Generator().manual_seed(c.seed + 1)
        synthesizer = self.synthesizer
        ssim_loss = SSIMLoss()

        def step(index: int) -> dict[str, Any]:
            clean = rotate_some(next(batches), c.rotation_probability, c.rotation_degrees, synthesis_generator)
            synthetic = synthesizer(clean, synthesis_generator)
            corrupted, masks = synthetic.images, synthetic.masks
            if c.train_crop is not None:
                corrupted, clean, masks = random_crops((corrupted, clean, masks), c.train_crop, synthesis_generator)
            # Which networks this step trains: both (the paper), the reconstructive one alone during
            # reconstruction_warmup_steps, or the discriminative one alone in the ablation without reconstruction.
            train_discriminative = reconstructive is None or index >= c.reconstruction_warmup_steps
            block_losses = []
            with self.trainer.autocast():
                if reconstructive is not None:
                    reconstruction, block_loss = reconstructive.forward_with_sspcab_loss(corrupted)
                    block_losses.append(block_loss)
                if train_discriminative:
                    # reconstruction first, then the image, as in the reference code; the
                    # reconstruction is not detached, so the focal loss also trains it.
                    joined = corrupted if reconstructive is None else torch.cat((reconstruction, corrupted), dim=1)
                    logits, block_loss = discriminative.forward_with_sspcab_loss(joined)
                    block_losses.append(block_loss)
            parts: dict[str, torch.Tensor] = {}
            loss = None
            if reconstructive is not None:
                reconstruction = reconstruction.float()
                parts.update(l2=F.mse_loss(reconstruction, clean), ssim=ssim_loss(reconstruction, clean))
                loss = parts["l2"] + c.ssim_weight * parts["ssim"]
            if train_discriminative:
                parts["focal"] = focal_loss(logits, masks, gamma=c.focal_gamma)
                loss = parts["focal"] if loss is None else loss + parts["focal"]
            losses = {"loss": loss, **parts}
            block_losses = [value.float() for value in block_losses if value is not None]
            if block_losses:
                block_loss = sum(block_losses)
                loss = loss + c.sspcab_weight * block_loss
                losses.update(loss=loss, sspcab=block_loss)
            self.trainer.backward(loss)
            logged: dict[str, Any] = {name: value.detach() for name, value in losses.items()}
            logged["lr"] = optimizer.param_groups[0]["lr"]  # the rate this step used (the schedule steps after it)
            return logged

        return TrainingPlan(step, {"adam": optimizer}, schedulers={"multistep": scheduler},
                            random_state={"batches": batches, "synthesis": synthesis_generator})

    # ------------------------------------------------------------------ inference

    def _forward(self, images: torch.Tensor) -> DraemOutput:
        """Reconstruction, map and score of a batch at ``image_size`` on the device."""
        if self.reconstructive_net is None:  # the ablation without reconstruction
            reconstruction, logits = None, self.discriminative_net(images)
        else:
            reconstruction = self.reconstructive_net(images)
            logits = self.discriminative_net(torch.cat((reconstruction, images), dim=1))
            reconstruction = reconstruction.float().clamp(0, 1)
        anomaly_map = anomaly_map_from_logits(logits)
        # the image score is taken at the networks' resolution, where the filter size was chosen
        scores = image_score_from_map(anomaly_map, self.config.score_filter_size)
        return DraemOutput(reconstruction=reconstruction, maps=anomaly_map, scores=scores)

    def score_batch(self, images: torch.Tensor) -> Prediction:
        output = self._forward(images)
        return Prediction(scores=output.scores, maps=output.maps)

    @torch.no_grad()
    def inspect(self, images: torch.Tensor, batch_size: int | None = None) -> DraemOutput:
        """Reconstruction, pixel map and image score of ``images`` ``[B, 3, H, W]`` in ``[0, 1]``.

        Inputs of another size than ``image_size`` are resized for the networks
        and the reconstruction and map are resized back to the input size.
        """
        self.require_fitted()
        self.networks.eval()
        parts = [self._forward(chunk) for chunk in self.prepared_batches(images, batch_size)]
        size = tuple(images.shape[-2:])
        return DraemOutput(
            reconstruction=None if parts[0].reconstruction is None
            else resize_images(torch.cat([p.reconstruction for p in parts]), size).cpu(),
            maps=resize_maps(torch.cat([p.maps for p in parts]), size).cpu(),
            scores=torch.cat([p.scores for p in parts]).cpu(),
        )
