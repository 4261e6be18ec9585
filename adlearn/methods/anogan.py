"""AnoGAN (Schlegl et al., 2017): learn what normal looks like with a GAN, then search its latent space.

The method in three pieces, each in this file:

1. **A DCGAN** (Radford et al., 2016) trained on normal images only: a generator
   ``G`` maps a latent vector ``z ~ N(0, I)`` to an image, a discriminator ``D``
   tells real images from generated ones.  Two sizes: 28×28 (MNIST's own size,
   as in most PyTorch re-implementations) and 64×64 (the DCGAN paper's, used by
   AnoGAN with images scaled up).
2. **The latent search** (the AnoGAN score).  For a test image ``x``, start from
   a random ``z`` and follow the gradient of

   ``L(z) = (1 − λ)·R(z) + λ·D(z)``, with ``R(z) = Σ |x − G(z)|`` (residual loss)
   and ``D(z) = Σ |f(x) − f(G(z))|`` (discrimination loss on the discriminator's
   intermediate features ``f``), ``λ = 0.1``.

   ``G`` only draws normal images, so an anomalous ``x`` keeps a large loss.
   The final ``L`` is the anomaly score and ``|x − G(z)|`` the anomaly map.
   Every image's loss depends on its own ``z`` only, so all images are searched
   at once as one batch (:func:`latent_search`); :func:`latent_search_per_image`
   is the one-image-at-a-time loop of the original code, kept as a reference.
3. **An encoder** (f-AnoGAN's *izi_f* training, Schlegl et al., 2019), trained
   after the GAN with ``G`` and ``D`` frozen: ``E`` maps an image to its latent in
   one forward pass, trained so that ``G(E(x))`` reproduces ``x`` in pixels and in
   discriminator features.  Scoring with ``z = E(x)`` replaces hundreds of
   gradient steps by one pass.

Images are ``[0, 1]`` at the interface (the Detector contract); the networks
work in ``[-1, 1]`` (DCGAN's tanh output), converted by :func:`to_network` and
:func:`to_image`.  Residuals are measured in ``[0, 1]`` units.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from adlearn.methods.base import (
    Detector, DetectorConfig, Prediction, TrainingPlan, check_images, register, resize_images, resize_maps,
)
from adlearn.train import random_batches

IMAGE_SIZES: tuple[int, ...] = (28, 64)
SCORERS: tuple[str, ...] = ("search", "encoder")
SampleCallback = Callable[[int, torch.Tensor], None]


def to_network(images: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` images to the networks' ``[-1, 1]`` range."""
    return images * 2.0 - 1.0


def to_image(network_images: torch.Tensor) -> torch.Tensor:
    """The generator's ``[-1, 1]`` output to ``[0, 1]`` images."""
    return (network_images + 1.0) / 2.0


def _check_architecture(image_size: int, latent_dim: int, width: int, channels: int) -> None:
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES} (the DCGAN variants), got {image_size}.")
    for name, value in (("latent_dim", latent_dim), ("width", width), ("channels", channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")


class DCGANGenerator(nn.Module):
    """DCGAN generator: ``z [B, latent_dim]`` → image ``[B, channels, S, S]`` in ``[-1, 1]``.

    ``S = 64``: 4×4 → 8 → 16 → 32 → 64 with ``8w, 4w, 2w, w`` channels (the DCGAN paper's shape).
    ``S = 28``: 7×7 → 14 → 28 with ``4w, 2w`` channels (the usual MNIST variant).
    Transposed convolutions, batch norm and ReLU; tanh at the output.

    Example:
        >>> DCGANGenerator(latent_dim=16, width=8, image_size=28)(torch.randn(2, 16)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, latent_dim: int = 100, width: int = 64, image_size: int = 64, channels: int = 1) -> None:
        super().__init__()
        _check_architecture(image_size, latent_dim, width, channels)
        self.latent_dim = latent_dim
        widths = [8 * width, 4 * width, 2 * width, width] if image_size == 64 else [4 * width, 2 * width]
        first_kernel = 4 if image_size == 64 else 7  # 1×1 latent "image" -> 4×4 or 7×7
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], first_kernel, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for in_width, out_width in zip(widths[:-1], widths[1:]):
            layers += [
                nn.ConvTranspose2d(in_width, out_width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_width),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, stride=2, padding=1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        return self.layers(z)


def _conv_trunk(channels: int, widths: list[int]) -> nn.Sequential:
    """Strided 4×4 convolutions halving the size each time; no batch norm on the first (as in DCGAN)."""
    layers: list[nn.Module] = []
    for index, out_width in enumerate(widths):
        in_width = channels if index == 0 else widths[index - 1]
        layers.append(nn.Conv2d(in_width, out_width, 4, stride=2, padding=1, bias=index == 0))
        if index > 0:
            layers.append(nn.BatchNorm2d(out_width))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _trunk_widths(image_size: int, width: int) -> tuple[list[int], int]:
    """Channel widths of the strided trunk and the spatial size it ends at."""
    if image_size == 64:
        return [width, 2 * width, 4 * width, 8 * width], 4
    return [width, 2 * width], 7


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: image ``[B, channels, S, S]`` in ``[-1, 1]`` → (logit ``[B]``, features ``[B, F]``).

    The features ``f(x)`` are the output of the last convolutional block, just
    before the final real/fake convolution: the "intermediate layer" whose
    distance AnoGAN's discrimination loss measures.
    """

    def __init__(self, width: int = 64, image_size: int = 64, channels: int = 1) -> None:
        super().__init__()
        _check_architecture(image_size, 1, width, channels)
        widths, final_size = _trunk_widths(image_size, width)
        self.trunk = _conv_trunk(channels, widths)
        self.critic = nn.Conv2d(widths[-1], 1, final_size, stride=1, padding=0)
        self.feature_dim = widths[-1] * final_size * final_size

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``f(x)``: the intermediate features, flattened to ``[B, F]``."""
        return self.trunk(images).flatten(1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(images)
        return self.critic(hidden).flatten(), hidden.flatten(1)


class LatentEncoder(nn.Module):
    """f-AnoGAN's encoder: image ``[B, channels, S, S]`` in ``[-1, 1]`` → latent ``[B, latent_dim]``.

    The discriminator's convolutional trunk (its own weights) followed by a
    linear layer.  No output squashing: the GAN's latents are Gaussian.
    """

    def __init__(self, latent_dim: int = 100, width: int = 64, image_size: int = 64, channels: int = 1) -> None:
        super().__init__()
        _check_architecture(image_size, latent_dim, width, channels)
        widths, final_size = _trunk_widths(image_size, width)
        self.trunk = _conv_trunk(channels, widths)
        self.to_latent = nn.Linear(widths[-1] * final_size * final_size, latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.trunk(images).flatten(1))


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Evaluation mode and no parameter gradients inside the block; restored afterwards.

    During the latent search only ``z`` is optimised: batch norm must use its
    running statistics (so images in a batch do not influence each other) and
    weight gradients would be wasted work.
    """
    modes = [module.training for module in modules]
    flags = [[p.requires_grad for p in module.parameters()] for module in modules]
    try:
        for module in modules:
            module.eval()
            module.requires_grad_(False)
        yield
    finally:
        for module, mode, module_flags in zip(modules, modes, flags):
            module.train(mode)
            for parameter, flag in zip(module.parameters(), module_flags):
                parameter.requires_grad_(flag)


@dataclass
class AnoGANScores:
    """The AnoGAN score and its parts for a batch of ``B`` images.

    Attributes:
        score: ``[B]`` ``(1 − λ)·residual_score + λ·discrimination_score``, higher = more anomalous.
        residual_score: ``[B]`` ``R = Σ |x − G(z)|`` over pixels, in ``[0, 1]`` image units.
        discrimination_score: ``[B]`` ``D = Σ |f(x) − f(G(z))|`` over discriminator features.
        z: ``[B, latent_dim]`` the latent found for each image.
        generated: ``[B, 1, S, S]`` ``G(z)`` in ``[0, 1]``: the closest normal image found.
        residual_map: ``[B, 1, S, S]`` ``|x − G(z)|``, the anomaly map.
        loss_history: ``[steps + 1, B]`` each image's loss ``L(z)`` before each search step and
            at the end (``[1, B]`` for the encoder, which takes no step).
    """

    score: torch.Tensor
    residual_score: torch.Tensor
    discrimination_score: torch.Tensor
    z: torch.Tensor
    generated: torch.Tensor
    residual_map: torch.Tensor
    loss_history: torch.Tensor


def _score_terms(
    generator: nn.Module, discriminator: DCGANDiscriminator, images: torch.Tensor, real_features: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image residual and discrimination losses of latents ``z`` for ``images`` in ``[0, 1]``."""
    generated = generator(z)
    residual = (images - to_image(generated)).abs().flatten(1).sum(1)
    discrimination = (real_features - discriminator.features(generated)).abs().sum(1)
    return residual, discrimination, generated


def score_latents(
    generator: nn.Module,
    discriminator: DCGANDiscriminator,
    images: torch.Tensor,
    z: torch.Tensor,
    discrimination_weight: float = 0.1,
    loss_history: torch.Tensor | None = None,
) -> AnoGANScores:
    """The AnoGAN score of ``images`` ``[B, 1, S, S]`` in ``[0, 1]`` for given latents ``z`` (no search)."""
    with frozen(generator, discriminator), torch.no_grad():
        real_features = discriminator.features(to_network(images))
        residual, discrimination, generated = _score_terms(generator, discriminator, images, real_features, z)
        generated = to_image(generated)
        score = (1.0 - discrimination_weight) * residual + discrimination_weight * discrimination
    return AnoGANScores(
        score=score,
        residual_score=residual,
        discrimination_score=discrimination,
        z=z.detach(),
        generated=generated,
        residual_map=(images - generated).abs(),
        loss_history=score[None] if loss_history is None else torch.cat([loss_history, score[None]]),
    )


def initial_latents(count: int, latent_dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The search's starting points: ``[count, latent_dim]`` standard normal, drawn on the CPU from ``seed``.

    Drawn on the CPU so that a device gives the same start as any other.
    """
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(count, latent_dim, generator=generator).to(device)


def _check_search_settings(steps: int, lr: float, discrimination_weight: float) -> None:
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}.")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}.")
    if not 0.0 <= discrimination_weight <= 1.0:
        raise ValueError(f"discrimination_weight (λ) must be in [0, 1], got {discrimination_weight}.")


def _check_search_args(images: torch.Tensor, steps: int, lr: float, discrimination_weight: float) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}.")
    _check_search_settings(steps, lr, discrimination_weight)


def concat_scores(parts: list[AnoGANScores]) -> AnoGANScores:
    """Join the results of searches over consecutive parts of a batch into one."""
    return AnoGANScores(
        **{
            name: torch.cat([getattr(part, name) for part in parts], dim=1 if name == "loss_history" else 0)
            for name in AnoGANScores.__dataclass_fields__
        }
    )


def latent_search(
    generator: DCGANGenerator,
    discriminator: DCGANDiscriminator,
    images: torch.Tensor,
    *,
    steps: int = 500,
    lr: float = 0.01,
    discrimination_weight: float = 0.1,
    seed: int = 0,
    initial_z: torch.Tensor | None = None,
) -> AnoGANScores:
    """AnoGAN's latent search for all ``images`` at once.

    One latent per image, one Adam optimiser over the ``[B, latent_dim]`` tensor.
    Adam's update is element-wise and the networks run in evaluation mode, so
    each row follows exactly the path a search of that image alone would
    follow; the batch only makes it fast.

    Args:
        generator, discriminator: the trained GAN (left unchanged).
        images: ``[B, 1, S, S]`` in ``[0, 1]`` at the GAN's size, on the networks' device.
        steps: Adam steps (the paper's Γ = 500).
        lr: Adam's learning rate on ``z``.
        discrimination_weight: λ in ``(1 − λ)·R + λ·D``.
        seed: seeds the starting latents (see :func:`initial_latents`) when ``initial_z`` is not given.
        initial_z: ``[B, latent_dim]`` starting latents (e.g. an encoder's output).
    """
    _check_search_args(images, steps, lr, discrimination_weight)
    if initial_z is None:
        initial_z = initial_latents(images.shape[0], generator.latent_dim, seed, images.device)
    z = initial_z.detach().clone().to(images.device).requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    history = []
    with frozen(generator, discriminator), torch.enable_grad():  # works inside a caller's no_grad too
        with torch.no_grad():
            real_features = discriminator.features(to_network(images))  # fixed during the search: computed once
        for _ in range(steps):
            residual, discrimination, _ = _score_terms(generator, discriminator, images, real_features, z)
            loss = (1.0 - discrimination_weight) * residual + discrimination_weight * discrimination
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # image i's loss depends on z[i] only: the sum's gradient is each image's own
            optimizer.step()
            history.append(loss.detach())
    past = torch.stack(history) if history else torch.empty(0, images.shape[0], device=images.device)
    return score_latents(generator, discriminator, images, z.detach(), discrimination_weight, past)


def latent_search_per_image(
    generator: DCGANGenerator,
    discriminator: DCGANDiscriminator,
    images: torch.Tensor,
    *,
    steps: int = 500,
    lr: float = 0.01,
    discrimination_weight: float = 0.1,
    seed: int = 0,
    initial_z: torch.Tensor | None = None,
) -> AnoGANScores:
    """The reference: the same search as :func:`latent_search`, one image at a time (the original code's loop).

    Same starting latents, same optimiser, same steps; only slower.  Used by the
    benchmark and by the test that checks both give the same scores.
    """
    _check_search_args(images, steps, lr, discrimination_weight)
    if initial_z is None:
        initial_z = initial_latents(images.shape[0], generator.latent_dim, seed, images.device)
    results = [
        latent_search(
            generator,
            discriminator,
            images[index : index + 1],
            steps=steps,
            lr=lr,
            discrimination_weight=discrimination_weight,
            initial_z=initial_z[index : index + 1],
        )
        for index in range(images.shape[0])
    ]
    return concat_scores(results)


@dataclass(frozen=True)
class AnoGANConfig(DetectorConfig):
    """AnoGAN's hyper-parameters; the defaults are DCGAN's and AnoGAN's published settings.

    Attributes:
        image_size: the DCGAN variant, 28 or 64 (paper: 64, digits scaled up); inputs of another
            size are resized to it.
        latent_dim: size of ``z`` (100).
        width: base channel width ``w`` of the networks (64).
        gan_steps: GAN training steps (one discriminator and one generator update each).
        batch_size: training batch size (64).
        generator_lr, discriminator_lr: Adam learning rates (DCGAN: 2e-4).
        adam_betas: Adam's betas for the optimisers (DCGAN: ``(0.5, 0.999)``).
        encoder_steps: encoder training steps after the GAN (0 = no encoder).
        encoder_lr: Adam learning rate of the encoder.
        feature_weight: κ in the encoder loss ``MSE(x, G(E(x))) + κ·MSE(f(x), f(G(E(x))))``.
        search_steps: latent-search steps per prediction (the paper's Γ = 500).
        search_lr: Adam learning rate on ``z``.
        discrimination_weight: λ of the score ``(1 − λ)·R + λ·D`` (the paper's 0.1).
        search_batch_size: search at most this many images at once (GPU memory; ``None`` = all).
            The scores do not depend on it beyond floating-point rounding.
        scorer: ``"search"`` (AnoGAN) or ``"encoder"`` (one forward pass through ``E``).
    """

    image_size: int = 64
    latent_dim: int = 100
    width: int = 64
    gan_steps: int = 10000
    batch_size: int = 64
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    adam_betas: tuple[float, float] = (0.5, 0.999)
    encoder_steps: int = 10000
    encoder_lr: float = 1e-4
    feature_weight: float = 1.0
    search_steps: int = 500
    search_lr: float = 0.01
    discrimination_weight: float = 0.1
    search_batch_size: int | None = 2500
    scorer: str = "search"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        _check_architecture(self.image_size, self.latent_dim, self.width, 1)
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {self.scorer!r}.")
        _check_search_settings(self.search_steps, self.search_lr, self.discrimination_weight)
        for name, least in (("gan_steps", 0), ("encoder_steps", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}.")
        if self.search_batch_size is not None and (not isinstance(self.search_batch_size, int) or self.search_batch_size < 1):
            raise ValueError(f"search_batch_size must be an int >= 1 or None, got {self.search_batch_size!r}.")


@register("anogan")
class AnoGAN(Detector):
    """AnoGAN as a :class:`~adlearn.methods.base.Detector`, with an f-AnoGAN encoder as a fast scorer.

    Hyper-parameters: :class:`AnoGANConfig`. Networks: ``networks["generator"]``,
    ``["discriminator"]`` and ``["encoder"]``.

    **Training budget.** ``fit(train, steps=N)`` counts optimiser steps of both
    stages together: the GAN first (one discriminator and one generator update per
    step), then the encoder with the GAN frozen. The default ``N`` is
    ``gan_steps + encoder_steps``; another ``N`` is split in the same proportion
    (``round(N * gan_steps / (gan_steps + encoder_steps))`` GAN steps, at least one, the rest
    encoder steps).
    The seed fixes the networks' initialisation, training and the search's starting
    latents, so predictions repeat exactly, also after ``save``/``load``.

    Example:
        >>> detector = AnoGAN.from_profile("quick")
        >>> detector.fit(split.train, held_out=split.holdout)   # doctest: +SKIP
        >>> prediction = detector.predict(split.test.images)    # doctest: +SKIP
    """

    Config: ClassVar[type[AnoGANConfig]] = AnoGANConfig
    INPUT_CHANNELS: ClassVar[int] = 1
    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # seconds on 2 CPU cores: proves the code path
        "quick": dict(
            image_size=28, latent_dim=16, width=8, gan_steps=120, batch_size=32, generator_lr=2e-3,
            discriminator_lr=2e-3, encoder_steps=80, encoder_lr=3e-3, search_steps=25, search_lr=0.1,
            search_batch_size=None,
        ),
        # minutes on 2 CPU cores, on MNIST or its offline stand-in
        "book": dict(
            image_size=28, latent_dim=32, width=16, gan_steps=1500, generator_lr=1e-3, discriminator_lr=1e-3,
            encoder_steps=600, encoder_lr=1e-3, search_steps=100, search_lr=0.05, search_batch_size=None,
        ),
        # DCGAN's and AnoGAN's settings: 64×64, z of 100, width 64, Γ = 500; MNIST on a GPU
        "paper": {},
    }

    config: AnoGANConfig

    def build_networks(self) -> dict[str, nn.Module]:
        c = self.config
        self.planned_stages = (c.gan_steps, c.encoder_steps)  # set again by each fit (see split_steps)
        return {
            "generator": DCGANGenerator(c.latent_dim, c.width, c.image_size),
            "discriminator": DCGANDiscriminator(c.width, c.image_size),
            "encoder": LatentEncoder(c.latent_dim, c.width, c.image_size),
        }

    @property
    def generator(self) -> DCGANGenerator:
        return self.networks["generator"]

    @property
    def discriminator(self) -> DCGANDiscriminator:
        return self.networks["discriminator"]

    @property
    def encoder(self) -> LatentEncoder:
        return self.networks["encoder"]

    @property
    def stage_steps_done(self) -> tuple[int, int]:
        """GAN and encoder steps trained so far."""
        gan_steps = self.planned_stages[0]
        return min(self.steps_done, gan_steps), max(0, self.steps_done - gan_steps)

    @property
    def gan_fitted(self) -> bool:
        return self.stage_steps_done[0] > 0

    @property
    def encoder_fitted(self) -> bool:
        return self.stage_steps_done[1] > 0

    # ----------------------------------------------------------------- training
    def default_steps(self, num_images: int) -> int:
        return self.config.gan_steps + self.config.encoder_steps

    def split_steps(self, steps: int) -> tuple[int, int]:
        """``(gan_steps, encoder_steps)`` of a ``fit`` with ``steps`` optimiser steps (see the class docstring)."""
        c = self.config
        total = c.gan_steps + c.encoder_steps
        if steps == total or total == 0:
            return (c.gan_steps, c.encoder_steps) if total else (steps, 0)
        gan = int(round(steps * c.gan_steps / total))
        if c.gan_steps and steps:
            gan = max(gan, 1)  # scoring needs a generator: a short run trains the GAN first
        return gan, steps - gan

    def training_plan(self, images: torch.Tensor, steps: int) -> TrainingPlan:
        c = self.config
        gan_steps, encoder_steps = self.split_steps(steps)
        generator, discriminator, encoder = self.generator, self.discriminator, self.encoder
        real_images = to_network(images)
        batch_size = min(c.batch_size, real_images.shape[0])
        batches = random_batches(real_images, batch_size, torch.Generator().manual_seed(c.seed))
        noise_generator = torch.Generator(device=self.device).manual_seed(c.seed)
        optimizers = {
            "generator": torch.optim.Adam(generator.parameters(), lr=c.generator_lr, betas=c.adam_betas),
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=c.discriminator_lr, betas=c.adam_betas),
            "encoder": torch.optim.Adam(encoder.parameters(), lr=c.encoder_lr, betas=c.adam_betas),
        }

        def gan_step() -> dict[str, torch.Tensor]:
            real = next(batches)
            noise = torch.randn(batch_size, c.latent_dim, generator=noise_generator, device=self.device)
            with self.trainer.autocast():
                fake = generator(noise)
                real_logits, _ = discriminator(real)
                fake_logits, _ = discriminator(fake.detach())  # the discriminator's step must not move G
                discriminator_loss = F.binary_cross_entropy_with_logits(
                    real_logits, torch.ones_like(real_logits)
                ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            self.trainer.backward(discriminator_loss, "discriminator")
            with self.trainer.autocast():
                # the non-saturating generator loss: make the updated discriminator call the fakes real
                fooled_logits, _ = discriminator(fake)
                generator_loss = F.binary_cross_entropy_with_logits(fooled_logits, torch.ones_like(fooled_logits))
            self.trainer.backward(generator_loss, "generator")
            return {
                "discriminator_loss": discriminator_loss.detach(),
                "generator_loss": generator_loss.detach(),
                "D(real)": torch.sigmoid(real_logits.detach().float()).mean(),
                "D(fake)": torch.sigmoid(fake_logits.detach().float()).mean(),
            }

        def encoder_step() -> dict[str, torch.Tensor]:
            real = next(batches)
            with frozen(generator, discriminator), self.trainer.autocast():  # izi: the GAN is fixed, only E learns
                reconstruction = generator(encoder(real))
                image_loss = F.mse_loss(reconstruction, real)
                feature_loss = F.mse_loss(discriminator.features(reconstruction), discriminator.features(real))
                loss = image_loss + c.feature_weight * feature_loss
                self.trainer.backward(loss, "encoder")
            return {"encoder_loss": loss.detach(), "image_loss": image_loss.detach(), "feature_loss": feature_loss.detach()}

        def step(index: int) -> dict[str, torch.Tensor]:
            return gan_step() if index < gan_steps else encoder_step()

        self.planned_stages = (gan_steps, encoder_steps)
        return TrainingPlan(step, optimizers, random_state={"batches": batches, "noise": noise_generator})

    def _stage_history(self, columns: tuple[str, ...], encoder: bool) -> pd.DataFrame:
        frame = self.history.to_frame()
        if frame.empty:
            return pd.DataFrame()
        gan_steps = self.planned_stages[0]
        part = frame[frame.index >= gan_steps] if encoder else frame[frame.index < gan_steps]
        part = part[[name for name in columns if name in part.columns]]
        if encoder:
            part.index = part.index - gan_steps
        return part

    @property
    def gan_history(self) -> pd.DataFrame:
        """The GAN stage's losses, indexed by step."""
        return self._stage_history(("discriminator_loss", "generator_loss", "D(real)", "D(fake)"), encoder=False)

    @property
    def encoder_history(self) -> pd.DataFrame:
        """The encoder stage's losses, indexed by the encoder's own step (from 0)."""
        return self._stage_history(("encoder_loss", "image_loss", "feature_loss"), encoder=True)

    # ---------------------------------------------------------------- inference
    def _prepare(self, images: Any, name: str = "images") -> torch.Tensor:
        """Validate ``[B, 1, H, W]`` in ``[0, 1]`` and resize to the GAN's size, on the device."""
        images = check_images(images, self.INPUT_CHANNELS, name)
        return resize_images(images.float().to(self.device), self.config.image_size)

    def _check_fitted(self, scorer: str) -> None:
        if not self.gan_fitted:
            raise RuntimeError("AnoGAN is not trained yet: call fit(train_dataset) first (or AnoGAN.load(path)).")
        if scorer == "encoder" and not self.encoder_fitted:
            raise RuntimeError("scorer='encoder' needs a trained encoder: fit with encoder_steps > 0.")

    def sample(self, z: torch.Tensor | int, seed: int | None = None) -> torch.Tensor:
        """Generated images ``[n, 1, S, S]`` in ``[0, 1]`` from latents ``z`` (or ``n`` latents drawn from ``seed``)."""
        if isinstance(z, int):
            z = initial_latents(z, self.config.latent_dim, self.config.seed if seed is None else seed)
        with frozen(self.generator), torch.no_grad():
            return to_image(self.generator(z.to(self.device))).float()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's latents ``[B, latent_dim]`` for images ``[B, 1, H, W]`` in ``[0, 1]``."""
        self._check_fitted("encoder")
        images = self._prepare(images)
        with frozen(self.encoder):
            return self.encoder(to_network(images))

    def anomaly_scores(
        self, images: torch.Tensor, *, scorer: str | None = None, steps: int | None = None, batch_size: int | None = None
    ) -> AnoGANScores:
        """The AnoGAN score of ``images`` with all its parts (see :class:`AnoGANScores`).

        Args:
            images: ``[B, 1, H, W]`` in ``[0, 1]``; resized to the GAN's size.
            scorer: ``"search"`` or ``"encoder"``; default the ``scorer`` hyper-parameter.
            steps: search steps; default ``search_steps``.
            batch_size: search at most this many images at a time (memory); default ``search_batch_size``.
                The results do not depend on it beyond floating-point rounding.
        """
        c = self.config
        scorer = c.scorer if scorer is None else scorer
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}.")
        self._check_fitted(scorer)
        images = self._prepare(images)
        if scorer == "encoder":
            return score_latents(self.generator, self.discriminator, images, self.encode(images), c.discrimination_weight)
        steps = c.search_steps if steps is None else steps
        # one draw for the whole set, so the result does not depend on how it is chunked
        start = initial_latents(images.shape[0], c.latent_dim, c.seed, self.device)
        batch_size = c.search_batch_size if batch_size is None else batch_size
        chunk = images.shape[0] if batch_size is None else batch_size
        if chunk < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}.")
        parts = [
            latent_search(
                self.generator, self.discriminator, images[i : i + chunk], steps=steps, lr=c.search_lr,
                discrimination_weight=c.discrimination_weight, initial_z=start[i : i + chunk],
            )
            for i in range(0, images.shape[0], chunk)
        ]
        return parts[0] if len(parts) == 1 else concat_scores(parts)

    def score_batch(self, images: torch.Tensor) -> Prediction:
        result = self.anomaly_scores(images)
        return Prediction(scores=result.score, maps=result.residual_map)

    def _predict(self, images: torch.Tensor, batch_size: int | None = None, scorer: str | None = None) -> Prediction:
        # the whole set is searched from one draw of starting latents (see anomaly_scores), so
        # batching is the search's own (batch_size), not the base's
        size = tuple(images.shape[-2:]) if isinstance(images, torch.Tensor) else None
        result = self.anomaly_scores(images, scorer=scorer, batch_size=batch_size)
        return Prediction(scores=result.score.float().cpu(), maps=resize_maps(result.residual_map, size).float().cpu())

    def predict(self, images: torch.Tensor, batch_size: int | None = None, *, scorer: str | None = None) -> Prediction:
        """Scores ``[B]`` (the AnoGAN score) and maps ``[B, 1, H, W]`` (the residual ``|x − G(z)|`` at input size)."""
        self.require_fitted()
        return self._predict(images, batch_size, scorer)

    def require_fitted(self) -> None:
        # the base's fitted flag (set once calibration is done, cleared by an interrupted fit), in AnoGAN's words
        if not self.fitted:
            raise RuntimeError("AnoGAN is not trained yet: call fit(train_dataset) first (or AnoGAN.load(path)).")

    # ------------------------------------------------------------ persistence
    def extra_state(self) -> dict[str, Any]:
        return {"planned_stages": list(self.planned_stages)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.planned_stages = tuple(int(v) for v in state["planned_stages"])
