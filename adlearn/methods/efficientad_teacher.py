"""EfficientAD's teacher: a PDN distilled from an ImageNet network, loaded from a file, or (last resort) random.

The paper distils its teacher once, on ImageNet, from the features a
PatchCore-style extractor reads off a Wide-ResNet-101 (layers 2 and 3, each
location averaged with its 3 x 3 neighbours, the 1536 channels averaged down
to 384), with a mean squared error on channel-normalised targets: 60 000
steps of batch 16 on a GPU. A detector then only trains the student and the
autoencoder against this frozen teacher. Three ways to get one here:

* **a file** (``teacher="file"``): the published teachers
  (``teacher_small.pth``/``teacher_medium.pth`` of the reference
  re-implementation, anomalib's ``pretrained_teacher_*.pth``) or one this
  module distilled and saved (:func:`save_teacher`);
* **distil one** (``teacher="distill"``, :func:`distill_teacher`): from
  torchvision's ImageNet Wide-ResNet-101 where it can be downloaded, and
  offline from the ImageNet EfficientNet-Lite0 of
  :mod:`adlearn.nn.backbones`, on whatever natural images are at hand (a
  folder such as ImageNet or Imagenette, else the DTD copy, else scikit-image's
  photographs) -- on a CPU budget a chapter can afford;
* **random** (``teacher="random"``): the labelled last resort. A random PDN
  still gives features a student can fail to imitate, but they describe
  nothing the teacher learnt from natural images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from adlearn.nn.backbones import FeatureExtractor
from adlearn.nn.pdn import PatchDescriptionNetwork, convert_pdn_state_dict
from adlearn.simulation.augment import random_grayscale
from adlearn.train import History

__all__ = [
    "DISTILL_STRIDES", "DistilledTeacher", "distill_teacher", "distillation_targets", "load_teacher_file",
    "save_teacher", "TEACHER_FILE_FORMAT",
]

TEACHER_FILE_FORMAT = "adlearn-efficientad-teacher-1"
#: the feature maps distilled from each backbone, by stride. Wide-ResNet-101: layers 2 and 3 as in the paper
#: (512 + 1024 channels). EfficientNet-Lite0: strides 4, 8 and 16 (24 + 40 + 112 = 176 channels), so a Lite0
#: teacher has at most 176 outputs (the `book` profile: 128). Measured on the built-in brick (nearest-neighbour
#: image AUROC of the teacher's own features after 400 distillation steps): 0.90 with strides 4-16 and 128
#: outputs, 0.78 with strides 4-8 and 64, 0.75 with strides 4-32 and 384 -- the stride-32 features describe
#: more than a 33-px patch shows, and a PDN imitating them learns little about the patch
DISTILL_STRIDES = {"wide_resnet101_2": (8, 16), "wide_resnet50_2": (8, 16), "resnet18": (8, 16),
                   "efficientnet_lite0": (4, 8, 16)}


@dataclass
class DistilledTeacher:
    """What :func:`distill_teacher` returns.

    Attributes:
        network: the teacher (unpadded, ready for anomaly detection), in eval mode, frozen.
        history: the distillation loss per step.
        info: facts to print and save: backbone, weights, image source, steps, target channels.
    """

    network: PatchDescriptionNetwork
    history: History = field(default_factory=History)
    info: dict[str, Any] = field(default_factory=dict)


def distillation_targets(extractor: FeatureExtractor, images: torch.Tensor, grid: int, channels: int) -> torch.Tensor:
    """The PatchCore-style features the teacher learns to reproduce: ``[B, channels, grid, grid]``.

    Each of the extractor's maps is brought to the ``grid`` (area averaging for
    finer maps, bilinear for coarser ones), averaged over each location's 3 x 3
    neighbourhood, and the maps are stacked; the stacked channels are then
    averaged in ``channels`` contiguous groups (PatchCore's and the reference
    teacher's ``adaptive_avg_pool1d``).
    """
    maps = []
    for feature in extractor(images):
        if feature.shape[-1] >= grid:
            feature = F.adaptive_avg_pool2d(feature, grid)
        else:
            feature = F.interpolate(feature, size=(grid, grid), mode="bilinear", align_corners=False)
        maps.append(F.avg_pool2d(feature, 3, stride=1, padding=1, count_include_pad=False))
    stacked = torch.cat(maps, dim=1)
    if stacked.shape[1] < channels:
        raise ValueError(f"{extractor.name} gives {stacked.shape[1]} channels at strides {extractor.strides}, fewer "
                         f"than the {channels} the teacher outputs; use more strides or fewer out_channels.")
    batch = stacked.shape[0]
    flat = stacked.permute(0, 2, 3, 1).reshape(-1, 1, stacked.shape[1])
    pooled = F.adaptive_avg_pool1d(flat, channels)
    return pooled.view(batch, grid, grid, channels).permute(0, 3, 1, 2).contiguous()


def _random_views(images: torch.Tensor, count: int, size: int, generator: torch.Generator,
                  grey_probability: float) -> torch.Tensor:
    """``count`` random crops (side 50-100 % of the image), flipped at random, resized to ``size``; some turned grey.

    One affine grid per view and one ``grid_sample`` for the whole batch.
    """
    picks = torch.randint(0, images.shape[0], (count,), generator=generator)
    chosen = images[picks.to(images.device)].float()
    if images.dtype == torch.uint8:
        chosen = chosen / 255.0
    scale = 0.5 + 0.5 * torch.rand(count, generator=generator)
    shift = (torch.rand(count, 2, generator=generator) * 2 - 1) * (1 - scale)[:, None]
    flip = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(chosen.device), [count, 3, size, size], align_corners=False)
    batch = F.grid_sample(chosen, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return random_grayscale(batch, grey_probability, generator).clamp(0, 1)


def distill_teacher(
    images: torch.Tensor,
    *,
    size: str = "small",
    widths: tuple[int, ...] | None = None,
    out_channels: int = 384,
    image_size: int = 256,
    view_size: int | None = None,
    backbone: str = "wide_resnet101_2",
    steps: int = 60_000,
    batch_size: int = 16,
    lr: float = 1e-4,
    weight_decay: float = 1e-5,
    statistics_batches: int = 8,
    seed: int = 0,
    device: Any = "cpu",
    progress: bool = True,
    callback: Callable[[int, History], None] | None = None,
    source: str = "",
) -> DistilledTeacher:
    """Distil a PDN teacher from ``backbone``'s ImageNet features on natural ``images`` (the paper's recipe).

    Args:
        images: natural images ``[N, 3, H, W]`` (uint8 or float in ``[0, 1]``, any square size
            at least ``image_size``); random crops of them are the training views.
        size, widths, out_channels: the PDN (see :class:`PatchDescriptionNetwork`).
        image_size: the side of the images the teacher will describe (saved in ``info``).
        view_size: the side of the training views the PDN sees (default ``image_size``); the backbone
            sees the same view at twice that side, as in the reference (256 and 512), so its stride-8
            map lands on the PDN's stride-4 grid. The PDN is fully convolutional and each output sees
            33 x 33 pixels, so smaller views teach the same function at a fraction of the cost (the
            ``book`` profile distils on 64-px views: 16 x 16 targets each, 5x faster per view than 128).
        backbone: ``wide_resnet101_2`` (the paper; downloaded by torchvision) or
            ``efficientnet_lite0`` (offline). With no ImageNet weights it falls back to random
            features with :class:`~adlearn.nn.BackboneWeightsWarning`; ``info`` records it.
        steps, batch_size, lr, weight_decay: Adam on the MSE (paper: 60 000 x 16, 1e-4, 1e-5).
        statistics_batches: batches of targets whose channel mean and std normalise every target.
        seed: seeds the PDN's initial weights and the views.
        device: where to train.
        callback: ``callback(step, history)`` after every step (live loss plots).
        source: words saying where ``images`` came from (saved in ``info``).
    """
    from tqdm.auto import tqdm

    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise ValueError(f"images must be [N, 3, H, W] natural images, got shape {tuple(images.shape)}.")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}.")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = PatchDescriptionNetwork(size, out_channels, widths, padding=True).to(device)
    network = network.to(memory_format=torch.channels_last)  # measured faster on the CPU, no slower on CUDA
    extractor = FeatureExtractor(backbone, strides=DISTILL_STRIDES.get(backbone, (8, 16)), weights="imagenet").to(device)
    view_size = image_size if view_size is None else int(view_size)
    if view_size % 4 or view_size < 36:
        raise ValueError(f"view_size must be a multiple of 4 of at least 36 (the 33-px receptive field), got {view_size}.")
    grid = view_size // 4

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        views = _random_views(images, batch_size, 2 * view_size, generator, grey_probability=0.1).to(device)
        with torch.no_grad():
            targets = distillation_targets(extractor, views, grid, out_channels)
        small = F.interpolate(views, size=(view_size, view_size), mode="bilinear", align_corners=False,
                              antialias=True)
        return small.contiguous(memory_format=torch.channels_last), targets

    with torch.no_grad():  # channel statistics of the targets, as the reference computes them before training
        sample = torch.cat([batch()[1] for _ in range(max(1, statistics_batches))])
        mean = sample.mean(dim=(0, 2, 3), keepdim=True)
        std = sample.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=weight_decay)
    history = History()
    network.train()
    for step in tqdm(range(steps), desc="distilling the teacher", disable=not progress):
        inputs, targets = batch()
        loss = F.mse_loss(network(inputs), (targets - mean) / std)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(step + 1, {"loss": loss.detach()})
        if callback is not None:
            callback(step + 1, history)
    teacher = PatchDescriptionNetwork(size, out_channels, widths, padding=False)
    teacher.load_state_dict(network.state_dict())
    teacher.requires_grad_(False).eval()
    info = {"teacher": "distilled", "teacher_backbone": backbone, "teacher_backbone_pretrained": extractor.pretrained,
            "teacher_backbone_weights": extractor.weights_source, "teacher_distill_steps": steps,
            "teacher_distill_batch_size": batch_size, "teacher_distill_images": int(images.shape[0]),
            "teacher_distill_source": source, "teacher_distill_view_size": view_size,
            "teacher_final_loss": float(history.records[-1]["loss"]) if history.records else float("nan")}
    return DistilledTeacher(teacher, history, info)


def save_teacher(teacher: DistilledTeacher, path: str | Path, settings: dict[str, Any], *,
                 overwrite: bool = False) -> Path:
    """Write a distilled teacher with the settings it was made with; an existing file is kept unless ``overwrite``."""
    from adlearn.methods.base import check_save_path

    path = check_save_path(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": TEACHER_FILE_FORMAT, "settings": dict(settings), "info": dict(teacher.info),
                "history": teacher.history.records,
                "state_dict": {k: v.detach().cpu() for k, v in teacher.network.state_dict().items()}}, partial)
    partial.replace(path)
    return path


def load_teacher_file(path: str | Path, network: PatchDescriptionNetwork) -> tuple[dict[str, Any], History | None]:
    """Load the teacher weights at ``path`` into ``network``; returns what the file says about them.

    ``path`` is a file written by :func:`save_teacher` (its ``info`` and
    ``settings`` are returned, with its distillation loss history) or a
    published teacher in any layout :func:`~adlearn.nn.pdn.convert_pdn_state_dict`
    reads (no history: ``None``).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a PDN state dict, or its shapes do not fit ``network`` (e.g. a medium
            teacher for a small network, or other widths); the message names both.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no teacher file at {path}; give the teacher_small.pth / pretrained_teacher_small.pth "
                                "of a published EfficientAD, or a teacher written by save_teacher.")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    ours = isinstance(payload, dict) and payload.get("format") == TEACHER_FILE_FORMAT
    state = convert_pdn_state_dict(payload["state_dict"] if ours else payload)
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise ValueError(f"the teacher in {path} does not fit a {network.size} PDN with widths {network.widths} and "
                         f"{network.out_channels} outputs: expected {expected}, the file holds {found}.")
    network.load_state_dict(state)
    if ours:
        info = {**payload["info"], "teacher": "file (distilled by adlearn)", "teacher_path": str(path),
                "teacher_settings": payload["settings"]}
        return info, History(list(payload["history"]))
    return {"teacher": "file (published weights)", "teacher_path": str(path)}, None
