"""CutPaste (Li, Sohn, Yoon and Pfister, CVPR 2021), with the SSPCAB option (Ristea et al., CVPR 2022).

CutPaste learns what normal looks like by telling normal images from
normal images with a little damage done to them, then models the normal
images' representations with a Gaussian:

1. **A 3-way proxy task.** Every normal image yields three versions
   (:func:`adlearn.simulation.cutpaste_3way`): itself (class 0), a *cut-paste*
   (a rectangle of 2-15 % of the image cut at one place, colour-jittered and
   pasted at another; class 1) and a *scar* (a thin jittered rectangle, rotated
   and pasted; class 2). A classifier -- an ImageNet backbone, an MLP
   projection head, a linear layer -- learns to name the version, with cross
   entropy. The backbone is frozen for the first steps (the reference code:
   20 of 256), so the freshly initialised head does not wreck the pretrained
   features before it has learnt anything.
2. **Gaussian density estimation (GDE).** The classifier is never used as a
   detector. The backbone's pooled features of the *normal* training images,
   L2-normalised as in the reference code, are modelled by one Gaussian whose
   covariance is estimated with Ledoit-Wolf shrinkage (scikit-learn's
   :class:`~sklearn.covariance.LedoitWolf`: with a few hundred images and 512
   dimensions the sample covariance is singular); the anomaly score of an
   embedding ``x`` is its Mahalanobis distance
   ``sqrt((x - mu)^T Sigma^-1 (x - mu))`` (:func:`fit_gaussian_density`,
   :func:`mahalanobis_distance`). Mean and precision are fitted in the
   calibration step and saved with the model.
3. **Patch-level localisation** (the paper's Section 4.3). A *patch model*,
   the same classifier trained on random ``patch_size`` crops (64 x 64 at
   256 px), has its own Gaussian over normal patch embeddings. At test time
   every patch of a dense grid (stride ``patch_stride``, 4 px in the paper) is
   scored; each pixel's value is the mean score of the patches that cover it,
   then the map is smoothed by a Gaussian (sigma 4 px at 256 px). All patches
   of a batch go through the network in a few large forward passes
   (:func:`dense_patch_scores`, an ``unfold`` view indexed in chunks);
   :func:`dense_patch_scores_loop` is the one-patch-per-call reference the
   tests and ``benchmarks/bench_cutpaste.py`` compare it with.

**One model or two.** The paper trains an image-level model for detection and
separate patch models for localisation. ``image_model=True`` (the ``paper``
profile) does the same: two classifiers trained side by side, the image score
from the image model's Gaussian, the map from the patch model's. With
``image_model=False`` (the ``book`` and ``quick`` profiles) only the patch
model is trained and the image score is the largest patch score -- the
paper's own "max-pooled for detection" use of the patch map. On a 2-core CPU
that halves the training (one classifier instead of two, and a 32-px patch
costs a sixteenth of a 128-px image), small defects are seen at the scale the
model was trained on, and the score and the heat map can never disagree.
The two train side by side with their own optimisers and synthesis streams,
so the patch model (and its patch-maximum score) is exactly what a patch-only
run trains. ``image_score="fused"`` takes both: each score is standardised by its mean
and standard deviation on the held-out normal training images (fitted in
``calibrate``), and the image score is the larger, so a defect that either
model sees raises it; :meth:`CutPaste.image_score_variants` gives all three
scores of one trained model, which ``benchmarks/bench_accuracy.py`` records.

**SSPCAB** (``sspcab=True``): the self-supervised predictive block
(:class:`adlearn.nn.SSPCAB`) is inserted at the entry of the backbone's last
stage -- between ResNet-18's ``layer3`` and ``layer4`` as in the SSPCAB
authors' CutPaste code; in EfficientNet-Lite0, whose stage outputs are linear
(negative values the block's ReLU cannot produce), on the ReLU6 output of the
stride-32 stage's first expansion -- and the mean squared error between its
input and output is added to the loss with
weight ``sspcab_weight`` (the paper's lambda = 0.1; the article's Paddle
reproduction used 0.01). The block is new, so it trains from the first step,
frozen backbone or not.

Example::

    detector = CutPaste.from_profile("book")
    detector.fit(MVTecAD(root, "grass", "train", image_size=128))
    prediction = detector.predict(images)      # .scores [B], .maps [B, 1, H, W]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adlearn.methods.base import (Detector, DetectorConfig, Prediction, TrainingPlan, fused_score, register,
                                  score_statistics)
from adlearn.methods.draem import random_crops
from adlearn.methods.feature_knn import gaussian_blur
from adlearn.nn import SSPCAB, sspcab_loss
from adlearn.nn.backbones import BACKBONES, FeatureExtractor, MBConv
from adlearn.simulation import cutpaste_3way
from adlearn.simulation.augment import color_jitter
from adlearn.train import random_batches

__all__ = [
    "CutPaste", "CutPasteConfig", "CutPasteNet", "CutPasteOutput", "dense_patch_scores", "dense_patch_scores_loop",
    "extract_patches", "fit_gaussian_density", "mahalanobis_distance", "patch_scores_to_map",
]

#: the size the reference code's scar sizes (in pixels) were chosen for
REFERENCE_SIZE = 256
#: the upper bound of ReLU6, EfficientNet-Lite0's activation (SSPCAB's input there is scaled by it)
RELU6_BOUND = 6.0

# --------------------------------------------------------------------------- Gaussian density estimation


def fit_gaussian_density(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[D]`` and precision ``[D, D]`` of a Gaussian fitted to ``embeddings`` ``[N, D]`` (float32, on their device).

    The covariance is scikit-learn's :class:`~sklearn.covariance.LedoitWolf`
    estimate: the sample covariance shrunk towards a multiple of the identity
    by the amount that minimises the expected squared error, which keeps it
    invertible when there are fewer embeddings than dimensions. The fit runs in
    float64 on the CPU; its ``location_`` (the mean) and ``precision_`` (the
    inverse covariance) are returned.
    """
    from sklearn.covariance import LedoitWolf

    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"embeddings must be [N, D] with N >= 2, got shape {tuple(embeddings.shape)}.")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("some embeddings are NaN or infinite: the training diverged. Lower the learning rate "
                         "(lr), or check the training images.")
    estimator = LedoitWolf().fit(embeddings.detach().double().cpu().numpy())
    device = embeddings.device
    mean = torch.from_numpy(estimator.location_).float().to(device)
    precision = torch.from_numpy(np.asarray(estimator.precision_)).float().to(device)
    return mean, precision


def mahalanobis_distance(embeddings: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``sqrt((x - mean)^T precision (x - mean))`` for every row ``x`` of ``embeddings`` ``[N, D]``: ``[N]``."""
    centred = embeddings.float() - mean
    squared = ((centred @ precision) * centred).sum(dim=1)
    return squared.clamp_min(0).sqrt()  # rounding can make a tiny distance negative


# --------------------------------------------------------------------------- the classifier


@dataclass
class CutPasteOutput:
    """What :class:`CutPasteNet` computes for a batch.

    Attributes:
        embeddings: ``[N, D]`` the backbone's pooled features (what the Gaussian models), not normalised.
        logits: ``[N, 3]`` normal / cut-paste / scar.
        sspcab_loss: SSPCAB's reconstruction loss (a scalar), ``None`` without the block.
    """

    embeddings: torch.Tensor
    logits: torch.Tensor
    sspcab_loss: torch.Tensor | None


class CutPasteNet(nn.Module):
    """ImageNet backbone, optional SSPCAB before its last stage, MLP projection head, 3-way classifier.

    The head follows the reference code (``ProjectionNet`` of the PyTorch
    re-implementation the SSPCAB authors built on): for each width ``w`` of
    ``head_widths`` a ``Linear -> BatchNorm1d -> ReLU`` layer, then a linear
    classifier.

    Args:
        backbone: a name of :data:`adlearn.nn.backbones.BACKBONES`; it is used up to stride 32.
        head_widths: widths of the projection head's layers (reference: eight of 512, then 128).
        num_classes: 3 (normal, cut-paste, scar).
        sspcab: insert an :class:`~adlearn.nn.SSPCAB` block at the entry of the backbone's last stage.
        weights: ``"imagenet"``, ``"random"`` or ``"none"`` (see :class:`FeatureExtractor`).
        frozen_norm: keep the backbone's batch-norm layers in eval mode during training (their
            running statistics stay ImageNet's; their scales and shifts still learn).
    """

    def __init__(self, backbone: str = "resnet18", head_widths: tuple[int, ...] = (512,) * 8 + (128,),
                 num_classes: int = 3, sspcab: bool = False, weights: str = "imagenet",
                 frozen_norm: bool = False) -> None:
        super().__init__()
        self.frozen_norm = frozen_norm
        # trainable: the backbone is fine-tuned after the frozen warm-up (see CutPaste.training_plan)
        self.backbone = FeatureExtractor(backbone, strides=(16, 32), weights=weights, trainable=True)
        before_last, self.embedding_dim = self.backbone.channels
        # SSPCAB can only output non-negative values (a ReLU, then a sigmoid gate), so it must sit on a
        # non-negative tensor or its loss can never reach zero. ResNet's stage outputs end in a ReLU: the
        # block goes between the last two stages, as in the SSPCAB authors' code. EfficientNet-Lite0's stage
        # outputs are linear projections (values down to about -33): there the block goes one step later,
        # on the ReLU6 output of the last stage's first expansion (6x the channels, still at stride 16).
        # On the stage output itself the block's loss (about 14.7 against a cross entropy of 1.1) pulled
        # the features towards zero and every image got the same score (benchmarks/README.md). On the expansion
        # the block works in units of ReLU6's range, its output clipped to it (see embed).
        first_block = self.backbone.stages[-1][0]
        self.sspcab_site = "expansion" if isinstance(first_block, MBConv) else "stage_input"
        block_channels = first_block.expanded_channels if self.sspcab_site == "expansion" else before_last
        self.sspcab = SSPCAB(block_channels) if sspcab else None
        layers: list[nn.Module] = []
        width = self.embedding_dim
        for out in head_widths:
            layers += [nn.Linear(width, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
            width = out
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled features ``[N, D]`` of ``images`` ``[N, 3, h, w]`` in ``[0, 1]``, and SSPCAB's loss (or ``None``)."""
        backbone = self.backbone
        # channels-last: a CPU's convolutions run it 1.4-2x faster here (training and scoring alike)
        images = images.contiguous(memory_format=torch.channels_last)
        x = backbone.last_stage_input(images)
        last_stage = backbone.stages[-1]
        if self.sspcab is None:
            return last_stage(x).mean(dim=(2, 3)), None
        if self.sspcab_site == "stage_input":
            predicted = self.sspcab(x)
            block_loss = sspcab_loss(x, predicted)
            x = last_stage(predicted)
        else:  # inside the last stage's first MBConv block, after its expansion
            first_block = last_stage[0]
            # The block works in units of ReLU6's range, [0, 1], as a ResNet's post-ReLU features roughly are:
            # on the raw [0, 6] values (672 channels) its 1x1 convolutions' regression was 36x stiffer, and with
            # CutPaste's SGD its output grew to 1e5 and the embeddings went NaN (book, grass, step 483 of 800).
            # Its output is clipped to the same range, which the next layers' pretrained weights expect.
            expanded = first_block.expand(x) / RELU6_BOUND
            predicted = self.sspcab(expanded).clamp(0.0, 1.0)
            block_loss = sspcab_loss(expanded, predicted)
            x = first_block.finish(predicted * RELU6_BOUND, x)
            for block in last_stage[1:]:
                x = block(x)
        return x.mean(dim=(2, 3)), block_loss

    def train(self, mode: bool = True) -> CutPasteNet:
        super().train(mode)
        if self.frozen_norm:
            self.backbone.eval()  # the backbone has no dropout: eval mode only fixes the batch-norm statistics
        return self

    def forward(self, images: torch.Tensor) -> CutPasteOutput:
        embeddings, block_loss = self.embed(images)
        return CutPasteOutput(embeddings, self.classifier(self.head(embeddings)), block_loss)

    def freeze_backbone(self, frozen: bool) -> None:
        """Stop (``True``) or restart (``False``) gradients into the pretrained backbone; head and SSPCAB always learn."""
        self.backbone.requires_grad_(not frozen)


# --------------------------------------------------------------------------- dense patch scoring

PatchScorer = Callable[[torch.Tensor], torch.Tensor]


def _check_grid(images: torch.Tensor, patch_size: int, stride: int) -> tuple[int, int]:
    height, width = images.shape[-2:]
    if patch_size > min(height, width) or (height - patch_size) % stride or (width - patch_size) % stride:
        raise ValueError(f"a {height}x{width} image is not tiled by {patch_size}-px patches at stride {stride}: "
                         "the image size minus the patch size must be a multiple of the stride.")
    return (height - patch_size) // stride + 1, (width - patch_size) // stride + 1


def extract_patches(images: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Every ``patch_size`` square of ``images`` ``[B, C, H, W]`` at ``stride``: a view ``[B, rows, cols, C, p, p]``.

    Nothing is copied (``unfold`` views overlap in memory); indexing a chunk
    of positions copies just those patches.
    """
    _check_grid(images, patch_size, stride)
    return images.unfold(2, patch_size, stride).unfold(3, patch_size, stride).permute(0, 2, 3, 1, 4, 5)


def dense_patch_scores(score_patches: PatchScorer, images: torch.Tensor, patch_size: int, stride: int,
                       batch_size: int = 128) -> torch.Tensor:
    """Scores ``[B, rows, cols]`` of every patch of ``images``, ``batch_size`` patches per forward pass.

    ``score_patches`` maps patches ``[N, C, p, p]`` to scores ``[N]``. The
    patches of all images of the batch are scored together; each chunk is
    gathered from the :func:`extract_patches` view in one indexing operation,
    already in the channels-last layout :class:`CutPasteNet` computes in.
    """
    view = extract_patches(images, patch_size, stride)
    batch, rows, cols = view.shape[:3]
    channels_last = view.permute(0, 1, 2, 4, 5, 3)  # [B, rows, cols, p, p, C]: a gathered chunk is NHWC-contiguous
    positions = torch.arange(batch * rows * cols, device=images.device)
    scores = torch.empty(batch * rows * cols, device=images.device)
    for chunk in positions.split(batch_size):
        sample, cell = chunk // (rows * cols), chunk % (rows * cols)
        patches = channels_last[sample, cell // cols, cell % cols].permute(0, 3, 1, 2)  # [N, C, p, p], NHWC in memory
        scores[chunk] = score_patches(patches).float()
    return scores.view(batch, rows, cols)


def dense_patch_scores_loop(score_patches: PatchScorer, images: torch.Tensor, patch_size: int,
                            stride: int) -> torch.Tensor:
    """:func:`dense_patch_scores` the slow, obvious way: one forward pass per patch (the reference for tests and benchmarks)."""
    rows, cols = _check_grid(images, patch_size, stride)
    scores = torch.empty(images.shape[0], rows, cols, device=images.device)
    for sample in range(images.shape[0]):
        for row in range(rows):
            for col in range(cols):
                top, left = row * stride, col * stride
                patch = images[sample : sample + 1, :, top : top + patch_size, left : left + patch_size]
                scores[sample, row, col] = score_patches(patch)[0].float()
    return scores


def patch_scores_to_map(scores: torch.Tensor, patch_size: int, stride: int, sigma: float = 0.0) -> torch.Tensor:
    """Patch scores ``[B, rows, cols]`` spread back to pixels: ``[B, 1, H, W]``.

    Each pixel gets the mean score of the patches that cover it (a transposed
    convolution with a ``patch_size`` box sums them, a second one counts
    them); the map is then smoothed by a Gaussian of standard deviation
    ``sigma`` pixels (0: none). This is the paper's "receptive field
    upsampling" with Gaussian smoothing.
    """
    grid = scores.float().unsqueeze(1)
    box = torch.ones(1, 1, patch_size, patch_size, device=grid.device)
    summed = F.conv_transpose2d(grid, box, stride=stride)
    covering = F.conv_transpose2d(torch.ones_like(grid[:1]), box, stride=stride)
    return gaussian_blur(summed / covering, sigma)


# --------------------------------------------------------------------------- detector


IMAGE_SCORES = ("patch_max", "image_model", "fused")  # CutPasteConfig.image_score's choices
FUSED_SCORES = ("patch_max", "image_model")  # what "fused" standardises and takes the larger of (in this order)


@dataclass(frozen=True)
class CutPasteConfig(DetectorConfig):
    """CutPaste's hyper-parameters; the defaults are the paper's and its reference code's values.

    Attributes:
        image_size: side of the square images (paper: 256).
        backbone: a name of :data:`adlearn.nn.backbones.BACKBONES` (paper: ImageNet ``resnet18``).
        head_widths: the projection head's layer widths (reference ``ProjectionNet``: eight of 512, then 128).
        sspcab: insert SSPCAB at the entry of the backbone's last stage (see the module docstring).
        sspcab_weight: weight ``lambda`` of SSPCAB's loss (SSPCAB paper: 0.1).
        batch_size: normal images (or patches) per step; each yields three versions, so the
            classifier sees ``3 * batch_size`` per step. 32: the paper's batch of 96 read as 32 images
            x 3 versions (the PyTorch reference code draws 64 images, the article's Paddle
            reproduction 96, i.e. 192 and 288 per step).
        steps: optimiser steps (the reference code's 256; the Paddle reproduction trains 500).
        lr: SGD learning rate, decayed to 0 by one cosine cycle (paper: 0.03).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (reference: 3e-5).
        freeze_fraction: share of the steps in which the pretrained backbone is frozen and only the
            head (and SSPCAB) learn (reference: 20 of 256 steps); ignored for a randomly initialised backbone.
        freeze_backbone_norm: keep the backbone's batch-norm running statistics at their ImageNet
            values while fine-tuning (reference: ``False``, they update). With EfficientNet-Lite0's
            TensorFlow momentum (0.01) and small CPU batches of small patches the statistics lag the
            changing weights, so the features the Gaussian models at test time are not the ones
            that were trained; on the tests' tiny built-in sets this cost up to 0.3 image AUROC.
        jitter: strength of the colour jitter applied to every normal image (or patch) before the
            three versions are made (reference: ``ColorJitter(0.1, 0.1, 0.1, 0.1)``).
        synthesis: keyword arguments for :func:`adlearn.simulation.cutpaste_3way`
            (``{"cutpaste": {...}, "scar": {...}}``). The scar's width and length default to the
            reference's pixels at 256 px (2-16 x 10-25) scaled by ``image_size / 256``.
        image_model: also train an image-level classifier and take the image score from its
            Gaussian (the paper); ``False``: the image score is the largest patch score.
        image_batch_size: normal images per step for the image model (``None``: ``batch_size``, as
            the paper): the first ``image_batch_size`` images of each step's random batch. Whole
            images cost far more than patches (a 128-px image has 7x the pixels of a 48-px patch),
            so a smaller batch here is how a CPU can afford the image model.
        image_score: what the image score is (``None``: ``"image_model"`` with an image model, else
            ``"patch_max"``): ``"patch_max"``, the largest patch score; ``"image_model"``, the image
            model's Mahalanobis distance (the paper); ``"fused"``, the larger of the two after each is
            standardised by the mean and standard deviation of its scores on the held-out normal
            training images (so a defect either model sees raises the score). The last two need
            ``image_model=True``.
        patch_size: side of the patch model's patches (paper: 64 at 256 px).
        patch_stride: stride of the dense patch grid at test time (paper: 4).
        map_blur_sigma: standard deviation in pixels of the Gaussian that smooths the map (paper: 4 at 256 px).
        density_patches_per_image: training patches per image, drawn at random from the dense grid,
            that the patch Gaussian is fitted on (``None``: all of them). 256 per image give
            50-100 k patches on an MVTec AD category, plenty for a 512-d Gaussian.
        normalize_embeddings: L2-normalise embeddings before the Gaussian (the reference evaluation does).
        patch_batch_size: patches per forward pass when scoring densely (memory, not results).
        grad_clip: clip the gradient norm before each SGD step (``None``: no clipping, as the reference).
    """

    image_size: int = 256
    backbone: str = "resnet18"
    head_widths: tuple[int, ...] = (512,) * 8 + (128,)
    sspcab: bool = False
    sspcab_weight: float = 0.1
    batch_size: int = 32
    steps: int = 256
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 3e-5
    freeze_fraction: float = 20 / 256
    freeze_backbone_norm: bool = False
    jitter: float = 0.1
    synthesis: dict[str, Any] = field(default_factory=dict)
    image_model: bool = True
    image_batch_size: int | None = None
    image_score: str | None = None
    patch_size: int = 64
    patch_stride: int = 4
    map_blur_sigma: float = 4.0
    density_patches_per_image: int | None = 256
    normalize_embeddings: bool = True
    patch_batch_size: int = 128
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "head_widths", tuple(int(w) for w in self.head_widths))
        object.__setattr__(self, "synthesis", dict(self.synthesis or {}))
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}.")
        if not self.head_widths or min(self.head_widths) < 1:
            raise ValueError(f"head_widths must be one or more positive widths, got {self.head_widths!r}.")
        for name in ("batch_size", "patch_size", "patch_stride", "patch_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative int, got {self.steps!r}.")
        if self.patch_size < 16 or self.patch_size > self.image_size:
            raise ValueError(f"patch_size must be between 16 and image_size={self.image_size}, got {self.patch_size}.")
        if (self.image_size - self.patch_size) % self.patch_stride:
            raise ValueError(f"image_size - patch_size ({self.image_size} - {self.patch_size}) must be a multiple of "
                             f"patch_stride ({self.patch_stride}), so the patches tile the image.")
        if not 0.0 <= self.freeze_fraction <= 1.0:
            raise ValueError(f"freeze_fraction must be in [0, 1], got {self.freeze_fraction!r}.")
        if self.sspcab_weight < 0 or self.lr <= 0 or self.map_blur_sigma < 0 or self.jitter < 0:
            raise ValueError("sspcab_weight, map_blur_sigma and jitter must be >= 0 and lr > 0; got "
                             f"{self.sspcab_weight}, {self.map_blur_sigma}, {self.jitter} and {self.lr}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be None or > 0, got {self.grad_clip!r}.")
        if self.image_batch_size is not None and (
                not isinstance(self.image_batch_size, int) or isinstance(self.image_batch_size, bool)
                or not 1 <= self.image_batch_size <= self.batch_size):
            raise ValueError(f"image_batch_size must be None or an int from 1 to batch_size={self.batch_size} "
                             f"(its images are taken from each step's batch), got {self.image_batch_size!r}.")
        if self.image_score not in (None,) + IMAGE_SCORES:
            raise ValueError(f"image_score must be None or one of {', '.join(IMAGE_SCORES)}, got {self.image_score!r}.")
        if self.image_score in ("image_model", "fused") and not self.image_model:
            raise ValueError(f"image_score={self.image_score!r} needs the image model; set image_model=True "
                             "or image_score='patch_max'.")
        if self.density_patches_per_image is not None and self.density_patches_per_image < 1:
            raise ValueError(f"density_patches_per_image must be None or >= 1, got {self.density_patches_per_image}.")
        unknown = set(self.synthesis) - {"cutpaste", "scar"}
        if unknown:
            raise ValueError(f"synthesis takes the keys 'cutpaste' and 'scar', got {sorted(unknown)}.")


@register("cutpaste")
class CutPaste(Detector):
    """CutPaste 3-way with Gaussian density estimation and patch-level maps (hyper-parameters: :class:`CutPasteConfig`).

    Networks: ``networks["patch_model"]`` (always) and ``networks["image_model"]``
    (with ``image_model=True``), both :class:`CutPasteNet`. Calibration holds
    each model's Gaussian (``patch_density_mean`` / ``patch_density_precision``,
    ``image_density_*``) besides the base's map quantiles.
    """

    Config: ClassVar[type[CutPasteConfig]] = CutPasteConfig
    INPUT_CHANNELS: ClassVar[int] = 3
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(
            image_size=64, backbone="efficientnet_lite0", head_widths=(64,), batch_size=4, steps=8, lr=0.01,
            freeze_backbone_norm=True, image_model=False, patch_size=32, patch_stride=8, map_blur_sigma=1.0,
            density_patches_per_image=None,
        ),
        # book: the offline ImageNet EfficientNet-Lite0 and one patch model (see the module docstring): 48-px
        # patches of 128-px images (the paper's 64 of 256 would be 32; 48 measured better, below) scored at
        # stride 8, the map blur scaled to 128 px, every grid patch of the training images in the Gaussian.
        # Batch-norm statistics frozen and the learning rate a third of the paper's (0.03 made the embeddings
        # NaN with 48-px patches). Chosen on grass, seed 0, unclipped (benchmarks/README.md): 600 steps of
        # 32-px patches gave 0.78 image AUROC, 800 of 48-px 0.863, 500 of 64-px 0.858 with coarser maps.
        # Gradient norm clipped to 1: with SSPCAB, unclipped training went NaN at steps 480-570 of 800 on grass
        # (a lower learning rate for the block alone did not prevent it); the runs without the block are
        # clipped too, so the two differ only in the block. This profile, seeds 0-2: brick 0.996, washer 1.000,
        # grass 0.835, gravel 0.787, MTD 0.855 image AUROC (mean).
        "book": dict(
            image_size=128, backbone="efficientnet_lite0", head_widths=(512, 128), batch_size=32, steps=800,
            lr=0.01, freeze_backbone_norm=True, image_model=False, patch_size=48, patch_stride=8,
            map_blur_sigma=2.0, density_patches_per_image=None, grad_clip=1.0,
        ),
        "paper": {},
    }

    config: CutPasteConfig

    def build_networks(self) -> dict[str, nn.Module]:
        c = self.config
        weights = "none" if self.restoring else "imagenet"  # a saved model brings its own weights

        def classifier() -> CutPasteNet:
            return CutPasteNet(c.backbone, c.head_widths, num_classes=3, sspcab=c.sspcab, weights=weights,
                               frozen_norm=c.freeze_backbone_norm)

        networks: dict[str, nn.Module] = {"patch_model": classifier()}
        if c.image_model:
            networks["image_model"] = classifier()
        if not self.restoring:
            backbone = networks["patch_model"].backbone
            self.info.update(backbone=backbone.name, backbone_weights=backbone.weights_source,
                             backbone_pretrained=backbone.pretrained)
        return networks

    @property
    def patch_model(self) -> CutPasteNet:
        return self.networks["patch_model"]

    @property
    def image_model(self) -> CutPasteNet | None:
        return self.networks["image_model"] if "image_model" in self.networks else None

    # ------------------------------------------------------------------ training

    def default_steps(self, num_images: int) -> int:
        return int(self.config.steps)

    def frozen_steps(self, steps: int) -> int:
        """How many of ``steps`` train with the backbone frozen (none for a randomly initialised backbone)."""
        if not self.patch_model.backbone.pretrained:
            return 0
        return int(round(self.config.freeze_fraction * steps))

    def synthesis_options(self) -> dict[str, dict[str, Any]]:
        """Keyword arguments of :func:`cutpaste_3way`: the reference scar sizes scaled to ``image_size``, then ``synthesis``."""
        scale = self.config.image_size / REFERENCE_SIZE
        scar = {"width": (max(1.0, 2 * scale), max(1.0, 16 * scale)),
                "height": (max(1.0, 10 * scale), max(1.0, 25 * scale))}
        options = self.config.synthesis
        return {"cutpaste": dict(options.get("cutpaste", {})), "scar": {**scar, **options.get("scar", {})}}

    def setup(self, images: torch.Tensor) -> None:
        # The Gaussians model the training images' embeddings after training; calibration fits them.
        self._density_images = images

    def training_plan(self, images: torch.Tensor, steps: int) -> TrainingPlan:
        c = self.config
        models = {"patch": self.patch_model}
        if self.image_model is not None:
            models["image"] = self.image_model
        # Each model has its own optimiser (so gradient clipping bounds each model's step, not their sum) and its own
        # synthesis stream: the patch model trains exactly as it would alone, and an image model beside it only adds.
        optimizers = {name: torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
                      for name, model in models.items()}
        schedulers = {name: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
                      for name, optimizer in optimizers.items()}
        frozen = self.frozen_steps(steps)
        self.info["frozen_steps"] = frozen
        # Random numbers come from CPU generators (no GPU synchronisation); a seed means the same run everywhere.
        batches = random_batches(images, c.batch_size, torch.Generator().manual_seed(c.seed))
        generators = {"patch": torch.Generator().manual_seed(c.seed + 1), "image": torch.Generator().manual_seed(c.seed + 3)}
        options = self.synthesis_options()

        def step(index: int) -> dict[str, Any]:
            normal = next(batches)
            inputs = {"patch": random_crops((normal,), c.patch_size, generators["patch"])[0]}
            if "image" in models:
                inputs["image"] = normal[: c.image_batch_size]  # None: the whole batch
            total, logged = 0.0, {}
            for name, model in models.items():
                generator = generators[name]
                model.freeze_backbone(index < frozen)  # by the step index, so a resumed run freezes the same steps
                jittered = color_jitter(inputs[name], c.jitter, generator) if c.jitter > 0 else inputs[name]
                versions = cutpaste_3way(jittered.clamp(0, 1), generator=generator, **options)
                with self.trainer.autocast():
                    output = model(versions.images)
                logits = output.logits.float()
                cross_entropy = F.cross_entropy(logits, versions.labels)
                total = total + cross_entropy
                logged[f"{name}_ce"] = cross_entropy.detach()
                logged[f"{name}_accuracy"] = (logits.argmax(1) == versions.labels).float().mean()
                if output.sspcab_loss is not None:
                    total = total + c.sspcab_weight * output.sspcab_loss
                    logged[f"{name}_sspcab"] = output.sspcab_loss.detach()
            self.trainer.backward(total)  # the models share no parameter: each optimiser steps on its own model's loss
            logged["loss"] = total.detach()
            logged["lr"] = optimizers["patch"].param_groups[0]["lr"]  # the rate this step used
            logged["frozen"] = float(index < frozen)
            return logged

        prefix = {"patch": "", "image": "image_"}  # the patch model keeps the names a patch-only model always had
        return TrainingPlan(step, {prefix[m] + "sgd": optimizer for m, optimizer in optimizers.items()},
                            schedulers={prefix[m] + "cosine": scheduler for m, scheduler in schedulers.items()},
                            random_state={"batches": batches, **{prefix[m] + "synthesis": generators[m] for m in models}},
                            grad_clip=c.grad_clip)

    # ------------------------------------------------------------------ density and scoring

    def embed(self, images: torch.Tensor, model: str = "patch_model", batch_size: int | None = None) -> torch.Tensor:
        """The embeddings ``[N, D]`` the Gaussian models (normalised if ``normalize_embeddings``), in batches.

        ``images`` are on the device, at the size the model expects (patches for
        the patch model, whole images for the image model).
        """
        network = self.networks[model]
        size = batch_size or self.config.patch_batch_size
        parts = [network.embed(chunk)[0].float() for chunk in images.split(size)]
        embeddings = torch.cat(parts)
        return F.normalize(embeddings, dim=1) if self.config.normalize_embeddings else embeddings

    def density_patches(self, images: torch.Tensor) -> torch.Tensor:
        """The training patches the patch Gaussian is fitted on: ``density_patches_per_image`` random grid cells per image."""
        c = self.config
        view = extract_patches(images, c.patch_size, c.patch_stride)
        batch, rows, cols = view.shape[:3]
        per_image = rows * cols if c.density_patches_per_image is None else min(rows * cols, c.density_patches_per_image)
        generator = torch.Generator().manual_seed(c.seed + 2)
        cells = torch.stack([torch.randperm(rows * cols, generator=generator)[:per_image] for _ in range(batch)])
        samples = torch.arange(batch).repeat_interleave(per_image)
        cells = cells.flatten()
        return view[samples.to(view.device), (cells // cols).to(view.device), (cells % cols).to(view.device)]

    @torch.no_grad()
    def fit_densities(self, images: torch.Tensor) -> None:
        """Fit each model's Gaussian to the embeddings of normal ``images`` ``[N, 3, S, S]``; results go in :attr:`calibration`."""
        self.networks.eval()
        patches = self.density_patches(images)
        mean, precision = fit_gaussian_density(self.embed(patches, "patch_model"))
        self.calibration["patch_density_mean"], self.calibration["patch_density_precision"] = mean, precision
        self.info["density_patches"] = int(patches.shape[0])
        if self.image_model is not None:
            mean, precision = fit_gaussian_density(self.embed(images, "image_model", self.config.predict_batch_size))
            self.calibration["image_density_mean"], self.calibration["image_density_precision"] = mean, precision

    def calibrate(self, held_out: torch.Tensor) -> None:
        """Fit the Gaussians on the training images (as the paper does), then the base's map quantiles on ``held_out``."""
        images = getattr(self, "_density_images", None)
        if images is None:
            raise RuntimeError("CutPaste.calibrate runs inside fit, after setup has seen the training images.")
        self.fit_densities(images)
        self._density_images = None  # not part of the model
        if self.image_model is not None:  # the fused score's standardisation, before the base scores held_out
            with torch.no_grad():
                self.calibration["image_score_stats"] = score_statistics(
                    (self.raw_image_scores(chunk, self.patch_score_grid(chunk)) for chunk in self.prepared_batches(held_out)),
                    FUSED_SCORES)
        super().calibrate(held_out)

    def score_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distances ``[N]`` of patches ``[N, 3, p, p]`` to the normal patches' Gaussian."""
        embeddings = self.embed(patches, "patch_model", batch_size=patches.shape[0])
        return mahalanobis_distance(embeddings, self.calibration["patch_density_mean"],
                                    self.calibration["patch_density_precision"])

    def patch_score_grid(self, images: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, rows, cols]`` of every grid patch of ``images`` (on the device, at ``image_size``), batched."""
        c = self.config
        return dense_patch_scores(self.score_patches, images, c.patch_size, c.patch_stride, c.patch_batch_size)

    @property
    def image_score_name(self) -> str:
        """The image score :meth:`predict` returns (``image_score``, or its default; see :class:`CutPasteConfig`)."""
        return self.config.image_score or ("image_model" if self.image_model is not None else "patch_max")

    def raw_image_scores(self, images: torch.Tensor, grid: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"patch_max": [B], "image_model": [B]}`` (the second with an image model only), ``grid`` the patch scores."""
        scores = {"patch_max": grid.flatten(1).amax(dim=1)}  # the patch map max-pooled, as the paper detects with patches
        if self.image_model is not None:
            scores["image_model"] = mahalanobis_distance(self.embed(images, "image_model", images.shape[0]),
                                                         self.calibration["image_density_mean"],
                                                         self.calibration["image_density_precision"])
        return scores

    def image_score_variants(self, images: torch.Tensor, grid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every image score this model can give for ``images`` (on the device, at ``image_size``), by name.

        ``"patch_max"`` always; with an image model also ``"image_model"`` and ``"fused"`` (see
        ``CutPasteConfig.image_score``). A benchmark compares them on one trained model.
        """
        scores = self.raw_image_scores(images, self.patch_score_grid(images) if grid is None else grid)
        if "image_model" in scores and "image_score_stats" in self.calibration:  # (fitted before the fused score)
            scores["fused"] = fused_score(scores, FUSED_SCORES, self.calibration["image_score_stats"])
        return scores

    def score_batch(self, images: torch.Tensor) -> Prediction:
        c = self.config
        grid = self.patch_score_grid(images)
        maps = patch_scores_to_map(grid, c.patch_size, c.patch_stride, c.map_blur_sigma)
        if self.image_score_name == "patch_max":
            scores = grid.flatten(1).amax(dim=1)
        else:
            scores = self.image_score_variants(images, grid)[self.image_score_name]
        return Prediction(scores=scores, maps=maps)
