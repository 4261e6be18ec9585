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
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adlearn.methods.base import Detector, Prediction, check_images
from adlearn.nn import SSPCAB, SSIMLoss, focal_loss, sspcab_loss
from adlearn.simulation.augment import rotate
from adlearn.train import History, Trainer, random_batches, stack_images

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
        self.has_sspcab = sspcab
        if sspcab:
            self.block5 = nn.Sequential(
                SSPCAB(8 * w),
                nn.Conv2d(8 * w, 8 * w, kernel_size=3, padding=1),
                nn.BatchNorm2d(8 * w),
                nn.ReLU(inplace=True),
            )
        else:
            self.block5 = _conv_block(8 * w, 8 * w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the bottleneck features and, with SSPCAB, the block's self-supervised loss (else ``None``)."""
        x = self.mp1(self.block1(x))
        x = self.mp2(self.block2(x))
        x = self.mp3(self.block3(x))
        x = self.mp4(self.block4(x))
        if not self.has_sspcab:
            return self.block5(x), None
        predicted = self.block5[0](x)
        return self.block5[1:](predicted), sspcab_loss(x, predicted)


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
    """Six stages, five 2x max-pools; returns every stage's features for the skip connections."""

    def __init__(self, in_channels: int, base_width: int) -> None:
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
        self.block6 = _conv_block(8 * w, 8 * w)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.block1(x)
        b2 = self.block2(self.mp1(b1))
        b3 = self.block3(self.mp2(b2))
        b4 = self.block4(self.mp3(b3))
        b5 = self.block5(self.mp4(b4))
        b6 = self.block6(self.mp5(b5))
        return [b1, b2, b3, b4, b5, b6]


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
    """

    def __init__(self, in_channels: int = 6, out_channels: int = 2, base_width: int = 64) -> None:
        super().__init__()
        self.encoder_segment = DiscriminativeEncoder(in_channels, base_width)
        self.decoder_segment = DiscriminativeDecoder(base_width, out_channels)

    def forward(self, joined: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits ``[B, out_channels, H, W]`` (H, W multiples of 32)."""
        return self.decoder_segment(self.encoder_segment(joined))


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
class DraemOutput:
    """Everything DRÆM computes for a batch (what the chapter's figures show).

    Attributes:
        reconstruction: ``[B, 3, H, W]`` the reconstructive sub-network's output, clipped to ``[0, 1]``.
        maps: ``[B, 1, H, W]`` pixel anomaly probabilities.
        scores: ``[B]`` image scores (max of the mean-filtered map).
    """

    reconstruction: torch.Tensor
    maps: torch.Tensor
    scores: torch.Tensor


# --------------------------------------------------------------------------- detector


class DRAEM(Detector):
    """DRÆM behind the Detector contract.

    Hyper-parameters (see ``PROFILES`` for each run profile's values):

    Args:
        image_size: side of the square images the networks see (training and
            inference; other inputs are resized and the maps resized back).
        reconstructive_width: base width of the reconstructive sub-network (paper: 128).
        discriminative_width: base width of the discriminative sub-network (paper: 64).
        sspcab: put SSPCAB in the reconstructive encoder (see :class:`ReconstructiveEncoder`).
        sspcab_weight: weight ``lambda`` of SSPCAB's loss in the total loss.
        batch_size: training batch size (paper: 8).
        train_crop: train on one random ``train_crop`` x ``train_crop`` window of every synthetic
            sample instead of the whole image (``None``, the paper). The networks are fully
            convolutional, so they still see whole images at test time; on stationary textures a
            window is as informative as the image at a fraction of the cost, which buys a CPU
            budget several times more training samples. Cut after synthesis, so anomalies keep
            their size relative to the image (a window may hold none).
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
        synthesis: extra keyword arguments for :class:`adlearn.simulation.DraemSynthesizer`.
        predict_batch_size: images per forward pass in :meth:`predict`.
        seed: seed of the initial weights, batch order and synthesis.
    """

    INPUT_CHANNELS: ClassVar[int] = 3
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(
            image_size=64, reconstructive_width=4, discriminative_width=4, sspcab=False, sspcab_weight=0.1,
            batch_size=4, train_crop=None, lr=1e-3, epochs=None, steps=12, lr_milestones=(0.8, 0.9), lr_gamma=0.2,
            ssim_weight=1.0, focal_gamma=2.0, rotation_probability=0.3, rotation_degrees=90.0,
            score_filter_size=21, texture_root=None, texture_count=8,
            synthesis={}, predict_batch_size=16, seed=0,
        ),
        # book: chosen by runs on the built-in textures on 2 CPU cores (benchmarks/README.md). Widths
        # 16/8 cost the same per step as 4/16 and scored higher on brick and gravel over two seeds
        # (the reconstruction stays soft at either width in 600 steps, so why is not settled).
        # Rotating 30 % of the images costs more than it teaches in 600 steps; the score filter is
        # the reference 21 scaled from 256 to 128 pixels.
        "book": dict(
            image_size=128, reconstructive_width=16, discriminative_width=8, sspcab=False, sspcab_weight=0.1,
            batch_size=8, train_crop=None, lr=1e-3, epochs=None, steps=600, lr_milestones=(0.8, 0.9), lr_gamma=0.2,
            ssim_weight=1.0, focal_gamma=2.0, rotation_probability=0.0, rotation_degrees=90.0,
            score_filter_size=11, texture_root=None, texture_count=None,
            synthesis={}, predict_batch_size=16, seed=0,
        ),
        "paper": dict(
            image_size=256, reconstructive_width=128, discriminative_width=64, sspcab=False, sspcab_weight=0.1,
            batch_size=8, train_crop=None, lr=1e-4, epochs=700, steps=None, lr_milestones=(0.8, 0.9), lr_gamma=0.2,
            ssim_weight=1.0, focal_gamma=2.0, rotation_probability=0.3, rotation_degrees=90.0,
            score_filter_size=21, texture_root=None, texture_count=None,
            synthesis={}, predict_batch_size=16, seed=0,
        ),
    }

    def __init__(
        self,
        image_size: int = 256,
        reconstructive_width: int = 128,
        discriminative_width: int = 64,
        sspcab: bool = False,
        sspcab_weight: float = 0.1,
        batch_size: int = 8,
        train_crop: int | None = None,
        lr: float = 1e-4,
        epochs: int | None = 700,
        steps: int | None = None,
        lr_milestones: tuple[float, ...] = (0.8, 0.9),
        lr_gamma: float = 0.2,
        ssim_weight: float = 1.0,
        focal_gamma: float = 2.0,
        rotation_probability: float = 0.3,
        rotation_degrees: float = 90.0,
        score_filter_size: int = 21,
        texture_root: str | None = None,
        texture_count: int | None = None,
        synthesis: dict[str, Any] | None = None,
        predict_batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if image_size < 32 or image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the U-Net pools 5 times), got {image_size}.")
        for name, value in (("reconstructive_width", reconstructive_width), ("discriminative_width", discriminative_width),
                            ("batch_size", batch_size), ("predict_batch_size", predict_batch_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if train_crop is not None and (train_crop < 32 or train_crop % 32 or train_crop > image_size):
            raise ValueError(f"train_crop must be None or a multiple of 32 between 32 and image_size={image_size}, "
                             f"got {train_crop}.")
        if steps is None and epochs is None:
            raise ValueError("give the training length as steps or epochs; both are None.")
        if score_filter_size < 1 or score_filter_size % 2 == 0:
            raise ValueError(f"score_filter_size must be a positive odd number, got {score_filter_size}.")
        if not 0.0 <= rotation_probability <= 1.0:
            raise ValueError(f"rotation_probability must be in [0, 1], got {rotation_probability}.")
        if any(not 0.0 < m <= 1.0 for m in lr_milestones):
            raise ValueError(f"lr_milestones are fractions of training in (0, 1], got {lr_milestones}.")
        super().__init__(
            image_size=image_size, reconstructive_width=reconstructive_width, discriminative_width=discriminative_width,
            sspcab=sspcab, sspcab_weight=sspcab_weight, batch_size=batch_size, train_crop=train_crop, lr=lr, epochs=epochs, steps=steps,
            lr_milestones=tuple(lr_milestones), lr_gamma=lr_gamma, ssim_weight=ssim_weight, focal_gamma=focal_gamma,
            rotation_probability=rotation_probability, rotation_degrees=rotation_degrees,
            score_filter_size=score_filter_size, texture_root=texture_root, texture_count=texture_count,
            synthesis=dict(synthesis or {}), predict_batch_size=predict_batch_size, seed=seed,
        )
        # the initial weights are part of what the seed fixes; the global random state is left alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.reconstructive_net = ReconstructiveSubNetwork(3, 3, reconstructive_width, sspcab=sspcab)
            self.discriminative_net = DiscriminativeSubNetwork(6, 2, discriminative_width)
            self.reconstructive_net.apply(init_draem_weights)
            self.discriminative_net.apply(init_draem_weights)
        self.reconstructive_net.eval()
        self.discriminative_net.eval()
        self.history: History = History()

    # ------------------------------------------------------------------ training

    def training_steps(self, num_images: int) -> int:
        """Optimiser steps of one training run on ``num_images`` images (``steps``, or ``epochs`` x batches per epoch)."""
        if self.hparams["steps"] is not None:
            return int(self.hparams["steps"])
        return int(self.hparams["epochs"]) * math.ceil(num_images / self.hparams["batch_size"])

    def build_synthesizer(self, verbose: bool = True, **options: Any) -> Any:
        """The anomaly simulator DRÆM trains on: Perlin masks filled with augmented foreign textures.

        ``options`` are keyword arguments of :class:`adlearn.simulation.DraemSynthesizer` that take
        precedence over the ``synthesis`` hyper-parameter (e.g. ``keep_sources=True`` for figures).
        """
        from adlearn.data.textures import load_texture_images
        from adlearn.simulation import DraemSynthesizer

        textures = load_texture_images(
            self.hparams["texture_root"], image_size=self.hparams["image_size"], count=self.hparams["texture_count"],
            seed=self.hparams["seed"], dtype=torch.uint8, verbose=verbose,
        )
        return DraemSynthesizer(textures, **{**self.hparams["synthesis"], **options})

    def fit(
        self,
        train_dataset: Any,
        *,
        device: Any = None,
        progress: bool = True,
        steps: int | None = None,
        callback: Callable[[int, History], None] | None = None,
        callback_every: int = 0,
        checkpoint_path: str | None = None,
        synthesizer: Any = None,
        **budget: Any,
    ) -> DRAEM:
        """Train both sub-networks on the anomaly-free images of ``train_dataset``.

        Args:
            train_dataset: items with an ``"image"`` ``[3, H, W]`` in ``[0, 1]`` (all anomaly-free).
            device: where to train (default: CUDA if available, else CPU).
            progress: show a progress bar.
            steps: override the training length in optimiser steps.
            callback: called as ``callback(step, history)`` every ``callback_every`` steps (live plots).
            callback_every: see ``callback``.
            checkpoint_path: resume from / save to this training checkpoint.
            synthesizer: a ready anomaly simulator (default: :meth:`build_synthesizer`).
        """
        if budget:
            raise TypeError(f"DRAEM.fit got unknown argument(s) {sorted(budget)}; it accepts steps, callback, "
                            "callback_every, checkpoint_path and synthesizer.")
        hp = self.hparams
        images = self._training_images(train_dataset)
        total_steps = self.training_steps(len(images)) if steps is None else int(steps)
        if total_steps < 1:
            raise ValueError(f"training needs at least one step, got {total_steps}.")

        trainer_device = torch.device(device) if device is not None else None
        optimizer = torch.optim.Adam(
            [{"params": self.reconstructive_net.parameters()}, {"params": self.discriminative_net.parameters()}],
            lr=hp["lr"],
        )
        milestones = sorted({max(1, int(f * total_steps)) for f in hp["lr_milestones"]})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=hp["lr_gamma"])
        trainer = Trainer(
            {"reconstructive": self.reconstructive_net, "discriminative": self.discriminative_net},
            {"adam": optimizer},
            schedulers={"multistep": scheduler},
            device=trainer_device,
            checkpoint_path=checkpoint_path,
        )
        self.device = trainer.device
        images = images.to(self.device)
        synthesizer = synthesizer if synthesizer is not None else self.build_synthesizer(verbose=progress)
        # Random numbers are drawn on the CPU (cheap, no GPU synchronisation) and the
        # work is done on the training device, so a seed means the same run everywhere.
        batch_generator = torch.Generator().manual_seed(hp["seed"])
        synthesis_generator = torch.Generator().manual_seed(hp["seed"] + 1)
        batches = random_batches(images, hp["batch_size"], batch_generator)
        ssim_loss = SSIMLoss()

        def step(_: int) -> dict[str, torch.Tensor]:
            clean = rotate_some(next(batches), hp["rotation_probability"], hp["rotation_degrees"], synthesis_generator)
            synthetic = synthesizer(clean, synthesis_generator)
            corrupted, masks = synthetic.images, synthetic.masks
            if hp["train_crop"] is not None:
                corrupted, clean, masks = random_crops((corrupted, clean, masks), hp["train_crop"], synthesis_generator)
            with trainer.autocast():
                reconstruction, block_loss = self.reconstructive_net.forward_with_sspcab_loss(corrupted)
                # reconstruction first, then the image, as in the reference code; the
                # reconstruction is not detached, so the focal loss also trains it.
                logits = self.discriminative_net(torch.cat((reconstruction, corrupted), dim=1))
            reconstruction = reconstruction.float()
            l2 = F.mse_loss(reconstruction, clean)
            structural = ssim_loss(reconstruction, clean)
            segmentation = focal_loss(logits, masks, gamma=hp["focal_gamma"])
            loss = l2 + hp["ssim_weight"] * structural + segmentation
            losses = {"loss": loss, "l2": l2, "ssim": structural, "focal": segmentation}
            if block_loss is not None:
                loss = loss + hp["sspcab_weight"] * block_loss
                losses.update(loss=loss, sspcab=block_loss)
            trainer.backward(loss)
            logged = {name: value.detach() for name, value in losses.items()}
            logged["lr"] = optimizer.param_groups[0]["lr"]  # the rate this step used (the schedule steps after it)
            return logged

        self.history = trainer.fit(step, total_steps, progress=progress, desc="DRAEM", callback=callback,
                                   callback_every=callback_every)
        return self

    def _training_images(self, train_dataset: Any) -> torch.Tensor:
        """The training images as one ``[N, 3, S, S]`` tensor at the detector's image size."""
        if isinstance(train_dataset, torch.Tensor):
            images = train_dataset
        else:
            images = stack_images(train_dataset)
        images = check_images(images, self.INPUT_CHANNELS, name="training images")
        return self._resize(images.float(), self.hparams["image_size"])

    @staticmethod
    def _resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(images.shape[-2:]) == size:
            return images
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def inspect(self, images: torch.Tensor) -> DraemOutput:
        """Reconstruction, pixel map and image score of ``images`` ``[B, 3, H, W]`` in ``[0, 1]``.

        Inputs of another size than ``image_size`` are resized for the networks
        and the reconstruction and map are resized back to the input size.
        """
        images = check_images(images, self.INPUT_CHANNELS)
        size = tuple(images.shape[-2:])
        self.reconstructive_net.eval()
        self.discriminative_net.eval()
        net_device = next(self.reconstructive_net.parameters()).device
        reconstructions, maps = [], []
        for chunk in images.split(self.hparams["predict_batch_size"]):
            chunk = self._resize(chunk.float().to(net_device), self.hparams["image_size"])
            reconstruction = self.reconstructive_net(chunk)
            logits = self.discriminative_net(torch.cat((reconstruction, chunk), dim=1))
            reconstructions.append(reconstruction.float().clamp(0, 1))
            maps.append(anomaly_map_from_logits(logits))
        reconstruction = torch.cat(reconstructions)
        anomaly_map = torch.cat(maps)
        # the image score is taken at the networks' resolution, where the filter size was chosen
        scores = image_score_from_map(anomaly_map, self.hparams["score_filter_size"])
        if size != tuple(anomaly_map.shape[-2:]):
            anomaly_map = F.interpolate(anomaly_map, size=size, mode="bilinear", align_corners=False)
            reconstruction = self._resize(reconstruction, size)
        return DraemOutput(reconstruction=reconstruction.cpu(), maps=anomaly_map.cpu(), scores=scores.cpu())

    def predict(self, images: torch.Tensor) -> Prediction:
        """Image scores ``[B]`` (max of the mean-filtered map) and pixel maps ``[B, 1, H, W]`` (anomaly probability)."""
        output = self.inspect(images)
        return Prediction(scores=output.scores, maps=output.maps)

    # ------------------------------------------------------------------ persistence

    def _get_state(self) -> dict[str, Any]:
        return {
            "reconstructive_net": {k: v.cpu() for k, v in self.reconstructive_net.state_dict().items()},
            "discriminative_net": {k: v.cpu() for k, v in self.discriminative_net.state_dict().items()},
            "history": self.history.records,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.reconstructive_net.load_state_dict(state["reconstructive_net"])
        self.discriminative_net.load_state_dict(state["discriminative_net"])
        self.history = History(list(state.get("history", [])))
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> DRAEM:
        """Move both networks to ``device`` (for :meth:`predict`)."""
        self.device = torch.device(device)
        self.reconstructive_net.to(self.device)
        self.discriminative_net.to(self.device)
        return self
