"""EfficientAD (Batzner, Heckler and König, WACV 2024): accurate visual anomaly detection at millisecond latencies.

Three small networks (:mod:`adlearn.nn.pdn`) and two anomaly maps:

1. **Teacher** ``T``: a patch description network (PDN) distilled from an
   ImageNet network and then frozen (:mod:`adlearn.methods.efficientad_teacher`
   says where it comes from). Its outputs are standardised with channel means
   and standard deviations measured on the training images in the setup step.
2. **Student** ``S``: a PDN with twice the channels. Its first half learns to
   imitate the teacher on normal images with the **hard-feature loss**: of the
   squared differences ``D = (T(I) - S(I))^2`` only those at or above their
   ``p_hard = 0.999`` quantile are averaged (:func:`hard_feature_loss`), so
   the student spends its capacity where it still imitates badly and does not
   learn to imitate everything (it must fail on anomalies). A **penalty**
   ``mean(S(P)^2)`` on out-of-distribution images ``P`` (ImageNet in the
   paper; a folder given in ``penalty_root``, else the DTD copy) keeps it from
   imitating the teacher on images unlike the training set.
3. **Autoencoder** ``A``: squeezes the image through 64 numbers and predicts
   the teacher's features from them (loss ``mean((T(I') - A(I'))^2)`` on a
   colour-jittered ``I'``). The student's second half learns to predict the
   autoencoder's output (``mean((A(I') - S'(I'))^2)``): both see the normal
   images' systematic reconstruction errors, so they differ only where the
   image's *layout* is wrong -- a **logical** anomaly.

The **local map** is ``mean_c (T - S)^2`` and the **global map**
``mean_c (A - S')^2``. Their scales differ, so each is mapped linearly such
that its ``q_a = 0.9`` quantile on held-out *normal training* images goes to 0
and its ``q_b = 0.995`` quantile to 0.1 (:func:`quantile_normalize`; a popular
implementation fitted these on the test images, a leak). The two are averaged,
padded back to the full grid and upsampled; the image score is the map's
maximum.

``predict`` runs the three networks in one pass, in half precision on CUDA.
The memory layout is a measured choice (:attr:`EfficientAD.memory_format`):
channels-last on CUDA; on the CPU the layout ``benchmarks/bench_efficientad.py``
measured faster for EfficientAD-S at 256 px, batch 1 (``CPU_MEMORY_FORMAT``;
the numbers in ``benchmarks/README.md``). ``torch.compile`` is left to the
user (the same script measures it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adlearn.methods.base import BufferDict, Detector, DetectorConfig, Prediction, TrainingPlan, register
from adlearn.methods.efficientad_teacher import distill_teacher, load_teacher_file, save_teacher
from adlearn.nn.backbones import BACKBONES
from adlearn.nn.pdn import PDN_WIDTHS, EfficientADAutoencoder, PatchDescriptionNetwork, pdn_output_size
from adlearn.simulation.augment import (
    _color_jitter_operations, apply_augmentation_plan, random_grayscale, sample_augmentation_plan,
)
from adlearn.train import random_batches

__all__ = ["EfficientAD", "EfficientADConfig", "hard_feature_loss", "quantile_normalize", "TEACHER_SOURCES"]

TEACHER_SOURCES = ("file", "distill", "random")
#: cells of the stride-4 grid the unpadded PDN loses on each side (16 px at any size); the maps are padded back
MAP_PADDING = 4
#: the memory layout of the networks and their inputs on the CPU: whichever ``benchmarks/bench_efficientad.py``
#: measured faster for ``predict`` (EfficientAD-S, 256 px, batch 1; benchmarks/README.md)
CPU_MEMORY_FORMAT = torch.channels_last


def hard_feature_loss(distances: torch.Tensor, p_hard: float) -> torch.Tensor:
    """Mean of the squared differences ``distances`` at or above their ``p_hard`` quantile (the paper's L_hard).

    The quantile is over every element of the batch (linear interpolation,
    as :func:`torch.quantile`), found with :func:`torch.kthvalue`, which has
    no size limit. ``p_hard = 0`` gives the plain mean squared error.
    """
    flat = distances.flatten()
    if p_hard <= 0:
        return flat.mean()
    position = p_hard * (flat.numel() - 1)
    below, above = math.floor(position), math.ceil(position)
    detached = flat.detach()
    low = detached.kthvalue(below + 1).values
    high = detached.kthvalue(above + 1).values if above != below else low
    threshold = low + (position - below) * (high - low)
    return flat[detached >= threshold].mean()


def quantile_normalize(maps: torch.Tensor, low: torch.Tensor | float, high: torch.Tensor | float) -> torch.Tensor:
    """``0.1 * (maps - low) / (high - low)``: the ``q_a`` quantile of normal maps goes to 0 and ``q_b`` to 0.1."""
    return 0.1 * (maps - low) / (high - low)


@dataclass(frozen=True)
class EfficientADConfig(DetectorConfig):
    """EfficientAD's hyper-parameters; the defaults are the paper's (EfficientAD-S).

    Attributes:
        image_size: side of the square images (paper: 256); a multiple of 32.
        model_size: ``"small"`` (EfficientAD-S, PDN-S) or ``"medium"`` (EfficientAD-M, PDN-M).
        pdn_widths: the PDNs' hidden widths (``None``: the paper's for ``model_size``); narrower ones
            are a CPU budget.
        out_channels: teacher channels (384); the student has twice as many.
        pdn_padding: zero-pad the PDNs' convolutions, so the maps cover the whole ``H/4 x W/4`` grid
            (``False``, the paper's: the maps miss a 4-cell frame, 16 px at every edge, which the map
            fills with zeros -- a blind frame; the reference code offers padding as an option too).
        teacher: where the teacher comes from: ``"file"`` (``teacher_path``: a published teacher or
            one :func:`~adlearn.methods.efficientad_teacher.save_teacher` wrote), ``"distill"``
            (distilled in ``fit``, then read from and written to ``teacher_path`` when given, so it
            is made once) or ``"random"`` (the labelled last resort).
        teacher_path: the teacher file (see ``teacher``).
        distill_backbone: the ImageNet network the teacher imitates (paper: ``wide_resnet101_2``;
            offline: ``efficientnet_lite0``).
        distill_steps, distill_batch_size, distill_lr: the distillation (paper: 60 000 x 16, 1e-4).
        distill_view_size: side of the distillation views (``None``: ``image_size``, as the paper).
        distill_seed: seeds the distillation. It is not ``seed``: as in the paper, one teacher serves every
            category and every training seed.
        distill_root: a folder of natural images to distil on (ImageNet, Imagenette); ``None``: the
            DTD copy, else scikit-image's photographs and drawn patterns.
        distill_count: how many of those images (``None``: all).
        steps: training steps of student and autoencoder (paper: 70 000).
        batch_size: training images per step (paper: 1; any size works here).
        lr, weight_decay: Adam (paper: 1e-4, 1e-5); the rate drops tenfold after ``lr_drop_fraction``
            of the steps (paper: 95 %).
        p_hard: the hard-feature quantile (paper: 0.999).
        penalty_weight: weight of the penalty on out-of-distribution images (paper: 1; 0: none).
        penalty_root, penalty_count: the penalty images' folder (``None``: the natural images of
            ``distill_root``'s rule) and how many to load.
        use_autoencoder: train the autoencoder and add the global map (``False``: the local map alone).
        ae_jitter: strength of the autoencoder's input jitter (one of brightness, contrast, saturation).
        quantile_low, quantile_high: q_a and q_b of the map normalisation (paper: 0.9, 0.995).
        half_precision: float16 inference on CUDA.
    """

    image_size: int = 256
    model_size: str = "small"
    pdn_widths: tuple[int, ...] | None = None
    out_channels: int = 384
    pdn_padding: bool = False
    teacher: str = "distill"
    teacher_path: str | None = None
    distill_backbone: str = "wide_resnet101_2"
    distill_steps: int = 60_000
    distill_batch_size: int = 16
    distill_lr: float = 1e-4
    distill_view_size: int | None = None
    distill_seed: int = 0
    distill_root: str | None = None
    distill_count: int | None = None
    steps: int = 70_000
    batch_size: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-5
    lr_drop_fraction: float = 0.95
    p_hard: float = 0.999
    penalty_weight: float = 1.0
    penalty_root: str | None = None
    penalty_count: int | None = 512
    use_autoencoder: bool = True
    ae_jitter: float = 0.2
    quantile_low: float = 0.9
    quantile_high: float = 0.995
    half_precision: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pdn_widths is not None:
            object.__setattr__(self, "pdn_widths", tuple(int(w) for w in self.pdn_widths))
            if len(self.pdn_widths) != 3 or min(self.pdn_widths) < 1:
                raise ValueError(f"pdn_widths must be three positive widths, got {self.pdn_widths!r}.")
        if self.model_size not in PDN_WIDTHS:
            raise ValueError(f"model_size must be 'small' or 'medium', got {self.model_size!r}.")
        if self.image_size % 32 or self.image_size < 64:
            raise ValueError(f"image_size must be a multiple of 32 and at least 64 (the autoencoder halves it five "
                             f"times), got {self.image_size}.")
        if self.teacher not in TEACHER_SOURCES:
            raise ValueError(f"teacher must be one of {', '.join(TEACHER_SOURCES)}, got {self.teacher!r}.")
        if self.teacher == "file" and not self.teacher_path:
            raise ValueError("teacher='file' needs teacher_path: a published teacher_small.pth / "
                             "pretrained_teacher_small.pth, or a teacher written by save_teacher.")
        if self.distill_backbone not in BACKBONES:
            raise ValueError(f"distill_backbone must be one of {', '.join(BACKBONES)}, got {self.distill_backbone!r}.")
        for name in ("out_channels", "batch_size", "distill_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        for name in ("steps", "distill_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
        if not 0.0 <= self.p_hard < 1.0:
            raise ValueError(f"p_hard must be in [0, 1), got {self.p_hard!r}.")
        if not 0.0 < self.quantile_low < self.quantile_high < 1.0:
            raise ValueError(f"need 0 < quantile_low < quantile_high < 1, got {self.quantile_low} and "
                             f"{self.quantile_high}.")
        if self.lr <= 0 or self.distill_lr <= 0 or self.penalty_weight < 0 or self.ae_jitter < 0:
            raise ValueError("lr and distill_lr must be > 0, penalty_weight and ae_jitter >= 0.")
        if not 0.0 < self.lr_drop_fraction <= 1.0:
            raise ValueError(f"lr_drop_fraction must be in (0, 1], got {self.lr_drop_fraction!r}.")


@register("efficientad")
class EfficientAD(Detector):
    """EfficientAD-S/M: teacher, student and autoencoder (hyper-parameters: :class:`EfficientADConfig`).

    Networks: ``teacher`` (frozen PDN), ``student`` (PDN, ``2 * out_channels``),
    ``autoencoder`` (with ``use_autoencoder``) and ``teacher_statistics`` (the
    teacher's channel ``mean`` and ``std``). Calibration holds the four map
    quantiles (``local_low/high``, ``global_low/high``). ``info["teacher"]``
    says where the teacher came from.
    """

    Config: ClassVar[type[EfficientADConfig]] = EfficientADConfig
    INPUT_CHANNELS: ClassVar[int] = 3
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        # quick: tiny networks, a few steps of every part (distillation included), for the tests
        "quick": dict(
            image_size=64, pdn_widths=(16, 16, 16), out_channels=32, distill_backbone="efficientnet_lite0",
            distill_steps=4, distill_batch_size=2, distill_count=16, distill_view_size=48, steps=6, batch_size=2, lr=1e-3,
            penalty_count=8, distill_lr=1e-3,
        ),
        # book: 128-px images (the 33-px receptive field then covers a quarter of the image side, as 66 px
        # would at 256); PDN-S at half its widths with 128 output channels instead of 384 (the student's last
        # layer, the largest, shrinks threefold; a Lite0 teacher has at most 176 channels to imitate, see
        # DISTILL_STRIDES); the teacher distilled offline from the ImageNet EfficientNet-Lite0 on the DTD copy,
        # on 64-px views; batch 4 instead of 1, so 1 000 steps show the student 4 000 images (the paper: 70 000).
        "book": dict(
            image_size=128, pdn_widths=(64, 128, 128), out_channels=128, distill_backbone="efficientnet_lite0",
            distill_steps=1500, distill_batch_size=16, distill_lr=1e-3, distill_view_size=64, steps=1000,
            batch_size=4, lr=1e-3, penalty_count=512,
        ),
        "paper": {},
    }

    config: EfficientADConfig

    # ------------------------------------------------------------------ networks

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def build_networks(self) -> dict[str, nn.Module]:
        c = self.config
        teacher = PatchDescriptionNetwork(c.model_size, c.out_channels, c.pdn_widths,
                                          padding=c.pdn_padding).requires_grad_(False)
        networks: dict[str, nn.Module] = {
            "teacher": teacher,
            "student": PatchDescriptionNetwork(c.model_size, 2 * c.out_channels, c.pdn_widths, padding=c.pdn_padding),
            "teacher_statistics": BufferDict(),
        }
        if c.use_autoencoder:
            networks["autoencoder"] = EfficientADAutoencoder(c.image_size, c.out_channels,
                                                             pdn_output_size(c.image_size, c.pdn_padding))
        return networks

    @property
    def teacher(self) -> PatchDescriptionNetwork:
        return self.networks["teacher"]

    @property
    def student(self) -> PatchDescriptionNetwork:
        return self.networks["student"]

    @property
    def autoencoder(self) -> EfficientADAutoencoder | None:
        return self.networks["autoencoder"] if "autoencoder" in self.networks else None

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout the networks compute in: ``CPU_MEMORY_FORMAT`` on the CPU (measured), channels-last elsewhere."""
        return CPU_MEMORY_FORMAT if self.device.type == "cpu" else torch.channels_last

    def to(self, device: str | torch.device) -> EfficientAD:
        super().to(device)
        if self.device.type == "cpu":  # the weights in the inputs' layout, so no convolution converts either
            self.networks.to(memory_format=self.memory_format)
        return self

    # ------------------------------------------------------------------ the teacher

    def teacher_settings(self) -> dict[str, Any]:
        """The settings a distilled teacher depends on (a cached teacher file must match them).

        ``images`` says which natural images the distillation would use: the folder given in
        ``distill_root``, else ``"dtd"`` when a DTD copy is found, else ``"stand-in"`` -- so a
        teacher distilled on the stand-ins is not reused once DTD is there, nor the reverse.
        """
        from adlearn.data.textures import natural_image_kind

        c = self.config
        return {"model_size": c.model_size, "pdn_widths": list(self.teacher.widths), "out_channels": c.out_channels,
                "image_size": c.image_size, "backbone": c.distill_backbone, "steps": c.distill_steps,
                "batch_size": c.distill_batch_size, "lr": c.distill_lr, "view_size": c.distill_view_size,
                "images": c.distill_root if c.distill_root is not None else natural_image_kind(),
                "count": c.distill_count, "seed": c.distill_seed}

    @classmethod
    def cached_teacher_path(cls, config: EfficientADConfig, folder: str | Path) -> Path:
        """Where to keep the teacher ``config`` distils: ``folder/efficientad_teacher_<digest>.pt``.

        The digest covers :meth:`teacher_settings`, so a change of settings distils into a new file
        instead of stopping at an old one (pass the result as ``teacher_path``).
        """
        probe = cls(dataclasses.replace(config, teacher="random", teacher_path=None), _restoring=True)
        text = json.dumps(probe.teacher_settings(), sort_keys=True, default=str)
        return Path(folder).expanduser() / f"efficientad_teacher_{hashlib.sha256(text.encode()).hexdigest()[:10]}.pt"

    def natural_images(self, root: str | None, count: int | None, size: int, seed: int) -> tuple[torch.Tensor, str]:
        from adlearn.data.textures import load_natural_images  # reads images with OpenCV: not at import time

        return load_natural_images(root, size, count, seed=seed, verbose=False)

    def prepare_teacher(self, progress: bool = True) -> None:
        """Load, distil or keep random the teacher, as ``config.teacher`` says; records it in :attr:`info`.

        Done once per detector: ``fit`` calls it in ``setup`` unless it was called before (a chapter
        calls it first to show the teacher). :attr:`teacher_history` holds the distillation loss, from
        this run or from the teacher file, or ``None`` (random or published teacher).
        """
        c = self.config
        self.teacher_history = None
        path = Path(c.teacher_path).expanduser() if c.teacher_path else None
        if c.teacher == "random":
            self.info.update(teacher="random initialisation (last resort: its features describe nothing learnt)")
        elif c.teacher == "file" or (path is not None and path.is_file()):
            found, self.teacher_history = load_teacher_file(path, self.teacher)
            settings, expected = found.get("teacher_settings"), self.teacher_settings()
            if c.teacher == "distill" and settings is not None and settings != expected:
                raise ValueError(f"the distilled teacher in {path} was made with other settings ({settings}); this "
                                 f"model asks for {expected}. Give another teacher_path, or delete "
                                 "the file to distil again.")
            self.info.update(found)
        else:
            # loaded at twice the view side: the views (50-100 % crops) are then never shrunk by grid sampling
            view = c.distill_view_size or c.image_size
            images, source = self.natural_images(c.distill_root, c.distill_count, 2 * view, c.distill_seed)
            distilled = distill_teacher(
                images, size=c.model_size, widths=self.teacher.widths, out_channels=c.out_channels,
                image_size=c.image_size, view_size=c.distill_view_size, backbone=c.distill_backbone, steps=c.distill_steps,
                batch_size=c.distill_batch_size, lr=c.distill_lr, seed=c.distill_seed, device=self.device,
                progress=progress, source=source,
            )
            self.teacher.load_state_dict(distilled.network.state_dict())
            self.info.update(distilled.info)
            self.teacher_history = distilled.history
            if path is not None:
                save_teacher(distilled, path, self.teacher_settings())
                self.info["teacher_path"] = str(path)
        self.teacher.requires_grad_(False).eval()
        self.teacher_ready = True

    @torch.no_grad()
    def teacher_features(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's standardised features ``[B, C, h, w]`` of ``images`` (after ``setup``)."""
        statistics = self.networks["teacher_statistics"]
        return (self.teacher(images) - statistics["mean"]) / statistics["std"]

    def setup(self, images: torch.Tensor) -> None:
        """Get the teacher, then its channel mean and standard deviation over the training images."""
        if not getattr(self, "teacher_ready", False):
            self.prepare_teacher(progress=getattr(self, "_progress", True))
        total = total_squares = None
        count = 0
        with torch.no_grad():
            for chunk in images.split(self.config.predict_batch_size):
                features = self.teacher(chunk).double()
                sums, squares = features.sum(dim=(0, 2, 3)), features.square().sum(dim=(0, 2, 3))
                total = sums if total is None else total + sums
                total_squares = squares if total_squares is None else total_squares + squares
                count += features.shape[0] * features.shape[2] * features.shape[3]
        mean = total / count
        std = (total_squares / count - mean.square()).clamp_min(1e-12).sqrt()
        statistics = self.networks["teacher_statistics"]
        statistics["mean"] = mean.float().view(1, -1, 1, 1)
        statistics["std"] = std.float().view(1, -1, 1, 1)
        if self.config.penalty_weight > 0:
            c = self.config
            self._penalty_images, source = self.natural_images(c.penalty_root, c.penalty_count, c.image_size,
                                                               c.seed + 3)
            self.info["penalty_images"] = source

    # ------------------------------------------------------------------ training

    def fit(self, train_dataset: Any, **options: Any) -> EfficientAD:
        self._progress = options.get("progress", True)
        return super().fit(train_dataset, **options)

    def default_steps(self, num_images: int) -> int:
        return int(self.config.steps)

    def autoencoder_inputs(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The autoencoder's jittered input: one of brightness, contrast or saturation changed by up to ``ae_jitter``."""
        if self.config.ae_jitter <= 0:
            return images
        operations = _color_jitter_operations(self.config.ae_jitter)[:3]  # brightness, contrast, saturation
        plan = sample_augmentation_plan(images.shape[0], operations, count=1, generator=generator)
        return apply_augmentation_plan(images, plan).clamp(0, 1)

    def training_plan(self, images: torch.Tensor, steps: int) -> TrainingPlan:
        c = self.config
        modules = {"student": self.student}
        if self.autoencoder is not None:
            modules["autoencoder"] = self.autoencoder
        parameters = [p for module in modules.values() for p in module.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=c.lr, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, int(c.lr_drop_fraction * steps)),
                                                    gamma=0.1)
        batches = random_batches(images, c.batch_size, torch.Generator().manual_seed(c.seed))
        generator = torch.Generator().manual_seed(c.seed + 1)
        random_state: dict[str, Any] = {"batches": batches, "augment": generator}
        penalty = None
        if c.penalty_weight > 0:
            penalty_images = self._penalty_images.to(self.device)
            penalty = random_batches(penalty_images, c.batch_size, torch.Generator().manual_seed(c.seed + 2))
            random_state["penalty"] = penalty
        channels = self.out_channels
        self.teacher.eval()

        def step(index: int) -> dict[str, Any]:
            normal = next(batches)
            count = normal.shape[0]
            parts = [normal]
            if self.autoencoder is not None:
                jittered = self.autoencoder_inputs(normal, generator)
                parts.append(jittered)
            if penalty is not None:
                # the reference grey-scales 30 % of the ImageNet penalty images
                parts.append(random_grayscale(next(penalty).float() / 255.0, 0.3, generator))
            inputs = torch.cat(parts).contiguous(memory_format=self.memory_format)
            # the autoencoder's dropout draws from the global generator: seed it by the step index, so a
            # resumed run draws the same masks as an uninterrupted one
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), self.trainer.autocast():
                torch.manual_seed(c.seed * 1_000_003 + index)
                # the teacher sees the normal and the jittered images, the student every image: one pass each
                targets = self.teacher_features(inputs[: count * (2 if self.autoencoder is not None else 1)])
                predicted = self.student(inputs)
                local = (targets[:count] - predicted[:count, :channels]).float().square()
                hard = hard_feature_loss(local, c.p_hard)
                total = hard
                logged = {"hard": hard.detach()}
                if penalty is not None:
                    penalty_loss = predicted[-count:, :channels].float().square().mean()
                    total = total + c.penalty_weight * penalty_loss
                    logged["penalty"] = penalty_loss.detach()
                if self.autoencoder is not None:
                    reconstructed = self.autoencoder(inputs[count : 2 * count]).float()
                    ae_loss = (targets[count : 2 * count].float() - reconstructed).square().mean()
                    stae_loss = (reconstructed - predicted[count : 2 * count, channels:].float()).square().mean()
                    total = total + ae_loss + stae_loss
                    logged.update(autoencoder=ae_loss.detach(), student_autoencoder=stae_loss.detach())
            self.trainer.backward(total)
            logged["loss"] = total.detach()
            logged["lr"] = optimizer.param_groups[0]["lr"]
            return logged

        return TrainingPlan(step, {"adam": optimizer}, schedulers={"step": scheduler}, random_state=random_state,
                            modules=modules)

    # ------------------------------------------------------------------ maps

    @torch.no_grad()
    def raw_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Local ``mean_c (T - S)^2`` and global ``mean_c (A - S')^2`` maps ``[B, 1, h, w]`` at the PDN's grid.

        The three networks run in one pass over the batch, in :attr:`memory_format`,
        and in float16 on CUDA when ``half_precision``.
        """
        images = images.contiguous(memory_format=self.memory_format)
        use_half = self.device.type == "cuda" and self.config.half_precision
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_half):
            teacher = self.teacher_features(images)
            student = self.student(images)
            channels = self.out_channels
            local = (teacher - student[:, :channels]).float().square().mean(dim=1, keepdim=True)
            if self.autoencoder is None:
                return local, None
            reconstructed = self.autoencoder(images)
            global_ = (reconstructed - student[:, channels:]).float().square().mean(dim=1, keepdim=True)
        return local, global_

    def normalized_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`raw_maps` after quantile normalisation (0 at the normal q_a quantile, 0.1 at q_b)."""
        local, global_ = self.raw_maps(images)
        cal = self.calibration
        local = quantile_normalize(local, cal["local_low"], cal["local_high"])
        if global_ is not None:
            global_ = quantile_normalize(global_, cal["global_low"], cal["global_high"])
        return local, global_

    def full_size(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps at the PDN's grid on the full stride-4 grid (an unpadded PDN's: zero-padded back), upsampled to ``image_size``."""
        padded = maps if self.config.pdn_padding else F.pad(maps, (MAP_PADDING,) * 4)
        size = self.config.image_size
        return F.interpolate(padded, size=(size, size), mode="bilinear", align_corners=False)

    def branch_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The normalised local and global maps at ``image_size`` (``[B, 1, S, S]`` each), for the chapter's pictures."""
        local, global_ = self.normalized_maps(images)
        maps = {"local": self.full_size(local)}
        if global_ is not None:
            maps["global"] = self.full_size(global_)
        return maps

    @staticmethod
    def combined_map(local: torch.Tensor, global_: torch.Tensor | None) -> torch.Tensor:
        """The map ``predict`` scores: the mean of the normalised local and global maps (the local one alone
        without an autoencoder). Linear, so it can be taken at the PDN's grid or at ``image_size`` alike."""
        return local if global_ is None else 0.5 * local + 0.5 * global_

    def score_batch(self, images: torch.Tensor) -> Prediction:
        maps = self.full_size(self.combined_map(*self.normalized_maps(images)))
        return Prediction(scores=maps.flatten(1).amax(dim=1), maps=maps)

    def calibrate(self, held_out: torch.Tensor) -> None:
        """The map quantiles q_a and q_b on held-out normal training images, then the base's display quantiles."""
        c = self.config
        levels = torch.tensor([c.quantile_low, c.quantile_high])
        local_parts, global_parts = [], []
        for chunk in held_out.split(c.predict_batch_size):
            local, global_ = self.raw_maps(chunk)
            local_parts.append(local.flatten().cpu())
            if global_ is not None:
                global_parts.append(global_.flatten().cpu())
        local_low, local_high = torch.quantile(torch.cat(local_parts), levels).to(self.device)
        self.calibration["local_low"], self.calibration["local_high"] = local_low, local_high
        if global_parts:
            global_low, global_high = torch.quantile(torch.cat(global_parts), levels).to(self.device)
            self.calibration["global_low"], self.calibration["global_high"] = global_low, global_high
        self._penalty_images = None  # not part of the model
        super().calibrate(held_out)
