"""The Detector contract that every method in :mod:`adlearn.methods` follows, and the base that runs it.

A chapter, the comparison chapter, the command line and outside scripts drive
any method the same way::

    detector = adlearn.methods.get("draem").from_profile("book", image_size=128)
    detector.fit(train_dataset, steps=600)   # anomaly-free images only
    prediction = detector.predict(images)    # images: float [B, C, H, W] in [0, 1]
    prediction.scores                        # [B], higher = more anomalous
    prediction.maps                          # [B, 1, H, W] at input resolution
    detector.save("draem.pt"); DRAEM.load("draem.pt", map_location="cuda")

The base owns the plumbing, once for every method: the configuration
(``Config``, a dataclass whose defaults are the paper's values, and
``PROFILES``, which list only what a run profile changes), the networks in one
:class:`torch.nn.ModuleDict` it seeds, moves, saves and restores, the fitted
flag, input checks, resizing to the training size and maps back, batching,
the loss history, resumable checkpoints, and calibration on held-out normal
images. ``fit`` runs three stages:

1. :meth:`Detector.setup` — statistics from the training images (a memory
   bank, a teacher's channel statistics); the default does nothing;
2. the training steps of :meth:`Detector.training_plan` through the one loop
   (:class:`adlearn.train.Trainer`), skipped by methods that do not train;
3. :meth:`Detector.calibrate` on held-out normal training images — a fixed,
   seeded share of them (``held_out_fraction``) — whose results live in
   :attr:`Detector.calibration` and are saved with the model.

A new method writes its ``Config``, ``PROFILES``, :meth:`build_networks`, its
training (:meth:`training_plan`) and its scoring (:meth:`score_batch`), then
registers itself with :func:`register`; :func:`available` and :func:`get` list
and find methods by name.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from adlearn.profiles import resolve_hparams
from adlearn.runtime import pick_device
from adlearn.simulation._validation import check_unit_images
from adlearn.train import History, Trainer

D = TypeVar("D", bound="Detector")

SAVE_FORMAT_VERSION = 2
#: the fewest held-out images calibration uses (when the training set has enough)
MIN_HELD_OUT = 4
#: quantiles of held-out normal map values that calibration stores (the figures' colour scale uses 0.5 and 0.999)
MAP_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)

_REGISTRY: dict[str, type["Detector"]] = {}


# --------------------------------------------------------------------------- results and checks


@dataclass
class Prediction:
    """What ``Detector.predict`` returns.

    Attributes:
        scores: ``[B]`` image anomaly scores, higher = more anomalous.
        maps: ``[B, 1, H, W]`` anomaly maps at the input resolution.
    """

    scores: torch.Tensor
    maps: torch.Tensor

    def __post_init__(self) -> None:
        if self.scores.ndim != 1:
            raise ValueError(f"Prediction.scores must be [B], got shape {tuple(self.scores.shape)}.")
        if self.maps.ndim != 4 or self.maps.shape[1] != 1 or self.maps.shape[0] != self.scores.shape[0]:
            raise ValueError(
                f"Prediction.maps must be [B, 1, H, W] with B = {self.scores.shape[0]}, "
                f"got shape {tuple(self.maps.shape)}."
            )


def check_images(images: Any, channels: int, name: str = "images") -> torch.Tensor:
    """Validate a batch for ``predict``: a float tensor ``[B, channels, H, W]`` with values in ``[0, 1]``.

    The same check guards the anomaly simulators; it lives once, in
    :func:`adlearn.simulation._validation.check_unit_images`.

    Raises:
        TypeError: not a tensor (e.g. a file path), or not floating point (e.g. ``uint8``).
        ValueError: wrong number of dimensions or channels, empty, NaN, or values outside ``[0, 1]``.
    """
    if isinstance(images, (str, Path)):
        raise TypeError(
            f"{name} must be a torch.Tensor [B, {channels}, H, W] of floats in [0, 1], got the path {str(images)!r}; "
            "load the images first (e.g. with adlearn.data.MVTecAD) and stack their 'image' entries."
        )
    return check_unit_images(images, name, channels=channels)


def check_save_path(path: str | Path, *, overwrite: bool = False) -> Path:
    """``path`` as a :class:`Path` if :meth:`Detector.save` may write there; call it before training too.

    Raises:
        FileExistsError: a file is there and ``overwrite`` is false (it may be a model
            that took hours to train).
        IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another path or pass overwrite=True to replace it.")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as {path / 'model.pt'}.")
    return path


def normal_training_images(dataset: Any, channels: int, owner: str) -> torch.Tensor:
    """Stack the images of ``dataset`` into ``[N, C, H, W]``, refusing any defective item.

    ``dataset`` is a tensor of images or a sequence of dataset items (dicts with
    ``image`` and, where known, ``label`` and ``mask``). These methods learn what
    normal looks like, so an item labelled defective or with a non-empty mask is
    an error (a test split passed by mistake), not something to skip silently.
    """
    if isinstance(dataset, torch.Tensor):
        return check_images(dataset, channels, name=f"{owner}.fit images")
    if isinstance(dataset, (str, Path)):
        raise TypeError(f"{owner}.fit needs a dataset of images, got the path {str(dataset)!r}; "
                        "open it first, e.g. adlearn.data.MVTecAD(root, category, 'train').")
    if len(dataset) == 0:
        raise ValueError(f"{owner}.fit got an empty training dataset; expected at least two anomaly-free images.")
    images = []
    for index in range(len(dataset)):
        item = dataset[index]
        label, mask = item.get("label", 0), item.get("mask")
        if int(label) != 0 or (mask is not None and bool(torch.as_tensor(mask).any())):
            where = item.get("path") or f"item {index}"
            kind = item.get("defect_type", "defective")
            raise ValueError(
                f"{owner}.fit got a defective image ({kind}: {where}); it trains on anomaly-free images only. "
                "Pass the training split (train/good), not the test split."
            )
        images.append(item["image"])
    return check_images(torch.stack(images), channels, name=f"{owner}.fit images")


def resize_images(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Images resized to ``size`` (antialiased bilinear, clipped to ``[0, 1]``); unchanged when already that size."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Anomaly maps ``[B, 1, h, w]`` resized to ``size`` (bilinear, no clipping: maps are not images)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def held_out_split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train_indices, held_out_indices)`` of ``count`` training images, as :meth:`Detector.fit` splits them.

    ``max(MIN_HELD_OUT, floor(count * fraction))`` images, at most half, are held
    out; the order is one seeded permutation, so the split is the same on every
    run and machine. A chapter calls this to show which images were held out.
    """
    held = min(max(MIN_HELD_OUT, int(count * fraction)), count // 2)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[held:], order[:held]


# --------------------------------------------------------------------------- combining two image scores


def score_statistics(batches: Iterable[dict[str, torch.Tensor]], names: Sequence[str]) -> torch.Tensor:
    """``[len(names), 2]``: each named score's mean and standard deviation (at least 1e-6) on held-out normal images.

    ``batches``: the scores of the held-out images, one ``{name: [B]}`` dict per batch. What :func:`fused_score`
    standardises with; a method fits it in ``calibrate`` and keeps it in ``calibration``.
    """
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for scores in batches:
        for name in names:
            collected[name].append(scores[name].float())
    values = [torch.cat(collected[name]) for name in names]
    return torch.stack([torch.stack([v.mean(), v.std().clamp_min(1e-6)]) for v in values]).cpu()


def fused_score(scores: dict[str, torch.Tensor], names: Sequence[str], statistics: torch.Tensor) -> torch.Tensor:
    """The larger of the named scores, each standardised by its held-out normal images' mean and std.

    Two scores on different scales become comparable in units of their normal spread, and an image counts as
    anomalous when either finds it far outside what normal images give.
    """
    statistics = statistics.to(scores[names[0]].device)
    standardised = [(scores[name].float() - statistics[row, 0]) / statistics[row, 1] for row, name in enumerate(names)]
    return torch.stack(standardised).amax(dim=0)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DetectorConfig:
    """Settings every detector has. A method's ``Config`` subclasses this; defaults are the paper's values.

    Attributes:
        image_size: side of the square images the networks see; other inputs are resized to it
            and the maps resized back.
        held_out_fraction: share of the training images kept out of training for calibration
            (at least :data:`MIN_HELD_OUT` images, at most half); chosen with ``seed``.
        predict_batch_size: images per forward pass in :meth:`Detector.predict`.
        seed: seeds the initial weights, the held-out split, the batches and any synthesis.
    """

    image_size: int = 256
    held_out_fraction: float = 0.1
    predict_batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {self.image_size!r}.")
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {self.held_out_fraction!r}.")
        if not isinstance(self.predict_batch_size, int) or self.predict_batch_size < 1:
            raise ValueError(f"predict_batch_size must be an int >= 1, got {self.predict_batch_size!r}.")


def config_fields(config_class: type) -> list[str]:
    """The hyper-parameter names of a ``Config`` dataclass, in declaration order."""
    return [f.name for f in dataclasses.fields(config_class)]


# --------------------------------------------------------------------------- state helpers


class BufferDict(nn.Module):
    """Named tensors that move and save with a model and may change shape (a memory bank, calibration results).

    ``detector.calibration["map_quantiles"] = values`` registers a buffer; loading
    a state dict creates the buffers it holds whatever their shapes, so a model
    whose memory bank size is only known after ``fit`` restores exactly.
    """

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        if name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value)

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._buffers[name]
        except KeyError:
            raise KeyError(f"no tensor {name!r}; this holds {sorted(self._buffers)}.") from None

    def __contains__(self, name: object) -> bool:
        return name in self._buffers

    def keys(self) -> list[str]:
        return list(self._buffers)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):  # noqa: D401, ANN001
        for key, value in state_dict.items():
            if key.startswith(prefix) and "." not in key[len(prefix):]:
                self[key[len(prefix):]] = value.detach().clone()


@dataclass
class TrainingPlan:
    """What a method hands the base to train: its step and everything a checkpoint must hold.

    Attributes:
        step: ``step(i) -> {"loss": ..., ...}``; computes the losses under
            ``detector.trainer.autocast()`` and calls ``detector.trainer.backward(loss)``.
        optimizers: by name.
        schedulers: learning-rate schedulers stepped once per step, by name.
        random_state: every random generator the step draws from (``torch.Generator``,
            :class:`adlearn.train.BatchSampler`), so a resumed run draws the same numbers.
        modules: the networks being trained (default: all of :attr:`Detector.networks`).
        grad_clip: clip each optimiser's gradient norm to this value before it steps (``None``: no clipping).
    """

    step: Callable[[int], Mapping[str, Any]]
    optimizers: Mapping[str, torch.optim.Optimizer]
    schedulers: Mapping[str, Any] = field(default_factory=dict)
    random_state: Mapping[str, Any] = field(default_factory=dict)
    modules: Mapping[str, nn.Module] | None = None
    grad_clip: float | None = None


# --------------------------------------------------------------------------- registry


def register(name: str) -> Callable[[type[D]], type[D]]:
    """Class decorator: make a detector available as ``adlearn.methods.get(name)``."""

    def decorate(cls: type[D]) -> type[D]:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"a method named {key!r} is already registered ({_REGISTRY[key].__name__}).")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return decorate


def available() -> list[str]:
    """The names of every registered method, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type["Detector"]:
    """The detector class registered as ``name`` (case-insensitive).

    Raises:
        KeyError: no such method; the message lists the available ones.
    """
    key = str(name).lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(available())}.")
    return _REGISTRY[key]


# --------------------------------------------------------------------------- the base


class Detector(abc.ABC):
    """Base class of every anomaly detector in the book (see the module docstring)."""

    #: the method's hyper-parameters: a frozen dataclass whose defaults are the paper's values
    Config: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: what each run profile changes: ``{"quick": {...}, "book": {...}, "paper": {}}``
    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {"quick": {}, "book": {}, "paper": {}}
    #: 3 for the surface-inspection methods, 1 for AnoGAN's digits
    INPUT_CHANNELS: ClassVar[int] = 3
    #: the registry name (set by :func:`register`)
    name: ClassVar[str] = ""

    def __init__(self, config: DetectorConfig | None = None, /, *, _restoring: bool = False, **values: Any) -> None:
        if config is None:
            config = self.make_config(**values)
        elif values:
            raise TypeError(f"give {type(self).__name__} either a config or keyword hyper-parameters, not both.")
        elif not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}.")
        self.config = config
        #: ``True`` while :meth:`load` rebuilds the detector: networks need no pretrained weights then
        self.restoring = _restoring
        self.fitted = False
        #: optimiser steps trained so far
        self.steps_done = 0
        self.history = History()
        #: plain facts saved with the model and printed by the chapters (backbone weights, image counts)
        self.info: dict[str, Any] = {}
        self.device = torch.device("cpu")
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's random state untouched
            torch.manual_seed(config.seed)
            self.networks = nn.ModuleDict(self.build_networks())
        self.networks.eval()
        self.calibration = BufferDict()

    # ------------------------------------------------------------------ configuration

    @classmethod
    def make_config(cls, **values: Any) -> DetectorConfig:
        """The method's ``Config`` from keyword values; an unknown name is refused with the known ones listed."""
        known = config_fields(cls.Config)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__} got unknown hyper-parameter(s) {unknown}; known ones are {sorted(known)}.")
        return cls.Config(**values)

    @classmethod
    def profile_config(cls, name: str | None = None, **overrides: Any) -> DetectorConfig:
        """The ``Config`` of a run profile (paper defaults, then the profile's changes, then ``overrides``)."""
        defaults = {f.name: getattr(cls.Config(), f.name) for f in dataclasses.fields(cls.Config)}
        values = resolve_hparams(cls.PROFILES, name, owner=cls.__name__, defaults=defaults, **overrides)
        return cls.Config(**values)

    @classmethod
    def from_profile(cls: type[D], name: str | None = None, **overrides: Any) -> D:
        """Build the detector with a profile's hyper-parameters; ``overrides`` replace any of them."""
        return cls(cls.profile_config(name, **overrides))

    @property
    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters as a plain dict (read-only view of :attr:`config`)."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}

    def fingerprint(self) -> str:
        """Class and hyper-parameters in one short string (names checkpoints and cached models)."""
        text = json.dumps({"class": type(self).__name__, "hparams": self.hparams}, sort_keys=True, default=str)
        return f"{type(self).__name__}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    # ------------------------------------------------------------------ what a method writes

    @abc.abstractmethod
    def build_networks(self) -> dict[str, nn.Module]:
        """The method's networks (and buffers, e.g. a :class:`BufferDict` memory bank), by name."""

    def setup(self, images: torch.Tensor) -> None:
        """Statistics computed from the training images ``[N, C, S, S]`` before training (default: none)."""

    def default_steps(self, num_images: int) -> int:
        """Optimiser steps of a training run on ``num_images`` images when ``fit`` is given no ``steps``."""
        return 0

    def training_plan(self, images: torch.Tensor, steps: int) -> TrainingPlan | None:
        """The training step and its optimisers for ``steps`` steps on ``images`` (on :attr:`device`).

        ``None``: nothing to train. The step runs its forward pass under
        ``self.trainer.autocast()`` and calls ``self.trainer.backward(loss)``; the
        base creates :attr:`trainer` from the plan before the first step.
        """
        return None

    @abc.abstractmethod
    def score_batch(self, images: torch.Tensor) -> Prediction:
        """Scores ``[B]`` and maps ``[B, 1, S, S]`` of a batch already checked, on the device, at ``image_size``."""

    def calibrate(self, held_out: torch.Tensor) -> None:
        """Measure held-out normal images ``[M, C, S, S]`` (never test images); results go in :attr:`calibration`.

        The default stores quantiles of the normal map values (:data:`MAP_QUANTILES`,
        the heat maps' colour scale) and the held-out image scores (a threshold can
        be read from them). Methods with more to fit (density, quantile
        normalisation) extend it.
        """
        prediction = self._predict(held_out)
        values = prediction.maps.flatten().float()
        if values.numel() > 4_000_000:  # torch.quantile's limit is 16 M; a fixed subsample is plenty
            values = values[torch.linspace(0, values.numel() - 1, 4_000_000).long()]
        levels = torch.tensor(MAP_QUANTILES, dtype=torch.float32)
        self.calibration["map_quantile_levels"] = levels
        self.calibration["map_quantiles"] = torch.quantile(values.cpu(), levels)
        self.calibration["held_out_scores"] = prediction.scores.float().sort().values.cpu()

    # ------------------------------------------------------------------ training

    def split_held_out(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(train, held_out)`` images: the share ``held_out_fraction`` kept out of training (see :func:`held_out_split`)."""
        if images.shape[0] < 2:
            raise ValueError(f"{type(self).__name__}.fit needs at least 2 normal images (one to train on, one to "
                             f"calibrate on), got {images.shape[0]}.")
        train_index, held_index = held_out_split(images.shape[0], self.config.held_out_fraction, self.config.seed)
        return images[train_index], images[held_index]

    def fit(
        self: D,
        train_dataset: Any,
        *,
        steps: int | None = None,
        device: Any = None,
        progress: bool = True,
        callback: Callable[[int, History], None] | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        held_out: Any = None,
    ) -> D:
        """Train on anomaly-free images: setup, training steps, calibration. Returns ``self``.

        Args:
            train_dataset: the training split (items with ``image``; no defective item), or a
                tensor ``[N, C, H, W]`` in ``[0, 1]``. Images are resized to ``image_size``.
            steps: optimiser steps (default: the method's budget, :meth:`default_steps`).
            device: where to train (default: CUDA if available, else CPU); the model stays there.
            progress: show a progress bar.
            callback: called as ``callback(steps_done, history)`` after every training step
                (live loss plots; keep it cheap or act every n-th step).
            checkpoint_dir: keep a training checkpoint in this folder (``<method>_training.ckpt``).
            checkpoint_every: save it every this many steps (default: a tenth of the steps).
            resume: continue from the checkpoint in ``checkpoint_dir``; without ``resume`` an
                existing checkpoint is refused rather than overwritten.
            held_out: normal images to calibrate on instead of a share of ``train_dataset``
                (then all of ``train_dataset`` is trained on).
        """
        owner = type(self).__name__
        images = resize_images(normal_training_images(train_dataset, self.INPUT_CHANNELS, owner).float(),
                               self.config.image_size)
        if held_out is None:
            train_images, held_out_images = self.split_held_out(images)
        else:
            train_images = images
            held_out_images = resize_images(normal_training_images(held_out, self.INPUT_CHANNELS, owner).float(),
                                            self.config.image_size)
        total = self.default_steps(train_images.shape[0]) if steps is None else steps
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}.")
        checkpoint = self._checkpoint_path(checkpoint_dir, resume)
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive int or None, got {checkpoint_every!r}.")

        self.fitted = False  # until calibration is done: an interrupted fit leaves no half-fitted model in use
        self.to(pick_device(device))
        train_images = train_images.to(self.device)
        self.info.update(train_images=int(train_images.shape[0]), held_out_images=int(held_out_images.shape[0]))
        self.setup(train_images)
        plan = self.training_plan(train_images, total) if total > 0 else None
        if plan is not None:
            self._trainer = Trainer(
                dict(plan.modules) if plan.modules is not None else dict(self.networks.items()), plan.optimizers,
                schedulers=plan.schedulers, device=self.device, checkpoint_path=checkpoint,
                checkpoint_every=checkpoint_every or max(1, total // 10), random_state=plan.random_state,
                fingerprint=self.fingerprint(), grad_clip=plan.grad_clip,
            )
            self.history = self._trainer.fit(plan.step, total, progress=progress, desc=owner, callback=callback,
                                       callback_every=1 if callback is not None else 0, resume=resume)
            self.steps_done = self._trainer.step_index
            self._trainer = None  # optimiser state is not part of the model
        self.networks.eval()
        with torch.no_grad():
            self.calibrate(held_out_images.to(self.device))
        self.fitted = True
        return self

    @property
    def trainer(self) -> Trainer:
        """The trainer of the current ``fit`` (a method's step uses its ``autocast`` and ``backward``)."""
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            raise RuntimeError(f"{type(self).__name__}.trainer exists only while fit runs its training steps.")
        return trainer

    def _checkpoint_path(self, checkpoint_dir: str | Path | None, resume: bool) -> Path | None:
        if checkpoint_dir is None:
            if resume:
                raise ValueError("resume=True needs the checkpoint_dir to resume from.")
            return None
        folder = Path(checkpoint_dir)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"checkpoint_dir {folder} is a file; give a folder.")
        path = folder / f"{type(self).__name__.lower()}_training.ckpt"
        if path.exists() and not resume:
            raise FileExistsError(f"{path} holds an earlier training run; pass resume=True to continue it, "
                                  "or choose another checkpoint_dir.")
        return path

    # ------------------------------------------------------------------ inference

    def require_fitted(self) -> None:
        """Raise a clear error when the detector has not been trained or loaded."""
        if not self.fitted:
            name = type(self).__name__
            raise RuntimeError(f"{name} is not fitted yet: call fit(train_dataset) first, or {name}.load(path).")

    def prepared_batches(self, images: Any, batch_size: int | None = None):  # -> Iterator[torch.Tensor]
        """Check ``images`` once, then yield batches on the device at ``image_size`` (for ``predict``-like methods)."""
        images = check_images(images, self.INPUT_CHANNELS)
        size = self.config.predict_batch_size if batch_size is None else batch_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        for chunk in images.split(size):
            yield resize_images(chunk.float().to(self.device), self.config.image_size)

    def predict(self, images: torch.Tensor, batch_size: int | None = None) -> Prediction:
        """Image scores ``[B]`` and anomaly maps ``[B, 1, H, W]`` (at the input size, on the CPU).

        Args:
            images: float ``[B, C, H, W]`` in ``[0, 1]``; resized to ``image_size`` for the networks.
            batch_size: images per forward pass (default ``predict_batch_size``).
        """
        self.require_fitted()
        return self._predict(images, batch_size)

    @torch.no_grad()
    def _predict(self, images: torch.Tensor, batch_size: int | None = None) -> Prediction:
        """:meth:`predict` without the fitted check (calibration runs it before the model is fitted)."""
        size = tuple(images.shape[-2:]) if isinstance(images, torch.Tensor) else None
        self.networks.eval()
        scores, maps = [], []
        for chunk in self.prepared_batches(images, batch_size):
            part = self.score_batch(chunk)
            scores.append(part.scores.float().cpu())
            maps.append(resize_maps(part.maps.float(), size).cpu())
        return Prediction(scores=torch.cat(scores), maps=torch.cat(maps))

    def map_normalizer(self) -> Any:
        """The heat-map colour scale fitted at calibration (:class:`adlearn.calibration.MapNormalizer`)."""
        from adlearn.calibration import MapNormalizer

        self.require_fitted()
        levels = self.calibration["map_quantile_levels"].tolist()
        values = self.calibration["map_quantiles"].tolist()
        by_level = {round(level, 6): value for level, value in zip(levels, values)}
        return MapNormalizer.from_bounds(by_level[0.5], by_level[0.999])

    # ------------------------------------------------------------------ device and persistence

    def to(self: D, device: str | torch.device) -> D:
        """Move networks and calibration to ``device``; :meth:`predict` runs there."""
        self.device = torch.device(device)
        self.networks.to(self.device)
        self.calibration.to(self.device)
        return self

    def extra_state(self) -> dict[str, Any]:
        """Plain values (beyond networks, calibration, history, info) a method needs to predict; default none."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write configuration, networks, calibration and history to ``path`` (parent folders are created).

        An existing file is never replaced unless ``overwrite=True`` (it may be a
        model that took hours to train). The file is written next to ``path`` first
        and moved into place, so an interrupted save leaves no half-written model.
        """
        self.require_fitted()
        path = check_save_path(path, overwrite=overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        cpu = lambda module: {k: v.detach().cpu() for k, v in module.state_dict().items()}  # noqa: E731
        torch.save(
            {
                "format": SAVE_FORMAT_VERSION,
                "class": type(self).__name__,
                "config": self.hparams,
                "networks": cpu(self.networks),
                "calibration": cpu(self.calibration),
                "history": self.history.records,
                "steps_done": self.steps_done,
                "info": dict(self.info),
                "extra": self.extra_state(),
            },
            partial,
        )
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls: type[D], path: str | Path, map_location: Any = "cpu") -> D:
        """Rebuild a detector written by :meth:`save`, on ``map_location`` (``"cpu"``, ``"cuda"``, a device)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No saved {cls.__name__} at {path}.")
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(payload, dict) or "format" not in payload or "class" not in payload:
            raise ValueError(f"{path} is not a file written by adlearn's Detector.save.")
        if payload["class"] != cls.__name__:
            raise ValueError(f"{path} holds a {payload['class']}, not a {cls.__name__}; use {payload['class']}.load.")
        if payload["format"] != SAVE_FORMAT_VERSION:
            raise ValueError(f"{path} was written by another version of adlearn (format {payload['format']}, this "
                             f"one reads {SAVE_FORMAT_VERSION}); retrain and save it again.")
        # torch.save pickles the settings, so tuples come back as tuples
        detector = cls(cls.make_config(**payload["config"]), _restoring=True)
        detector.networks.load_state_dict(payload["networks"])
        detector.calibration.load_state_dict(payload["calibration"])
        detector.history = History(list(payload["history"]))
        detector.info = dict(payload["info"])
        detector.steps_done = int(payload["steps_done"])
        detector.load_extra_state(payload["extra"])
        detector.restoring = False
        detector.fitted = True
        return detector.to(map_location)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({params})"
