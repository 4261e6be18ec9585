"""The Detector contract that every method in :mod:`adlearn.methods` follows.

A chapter, the comparison chapter, the command line and outside scripts drive
any method the same way::

    detector = DRAEM.from_profile("book", image_size=128)
    detector.fit(train_dataset)
    prediction = detector.predict(images)   # images: float [B, C, H, W] in [0, 1]
    prediction.scores                       # [B], higher = more anomalous
    prediction.maps                         # [B, 1, H, W] at input resolution
    detector.save("draem.pt"); DRAEM.load("draem.pt")

Subclasses set ``PROFILES`` (hyper-parameters per run profile) and
``INPUT_CHANNELS``, and implement ``fit``, ``predict``, ``_get_state`` and
``_set_state``.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import torch

from adlearn.profiles import resolve_hparams
from adlearn.simulation._validation import check_unit_images

D = TypeVar("D", bound="Detector")

SAVE_FORMAT_VERSION = 1


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
        TypeError: not a tensor, or not floating point (e.g. ``uint8``).
        ValueError: wrong number of dimensions or channels, empty, or values outside ``[0, 1]``.
    """
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


class Detector(abc.ABC):
    """Base class of every anomaly detector in the book."""

    #: hyper-parameters per run profile: ``{"quick": {...}, "book": {...}, "paper": {...}}``
    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: 3 for the surface-inspection methods, 1 for AnoGAN's digits
    INPUT_CHANNELS: ClassVar[int] = 3

    def __init__(self, **hparams: Any) -> None:
        self.hparams: dict[str, Any] = dict(hparams)
        self.device = torch.device("cpu")

    @classmethod
    def from_profile(cls: type[D], name: str | None = None, **overrides: Any) -> D:
        """Build the detector with a profile's hyper-parameters; ``overrides`` replace any of them."""
        return cls(**resolve_hparams(cls.PROFILES, name, owner=cls.__name__, **overrides))

    @abc.abstractmethod
    def fit(self: D, train_dataset: Any, *, device: Any = None, progress: bool = True, **budget: Any) -> D:
        """Train on anomaly-free images only; return ``self``."""

    @abc.abstractmethod
    def predict(self, images: torch.Tensor) -> Prediction:
        """Score a batch ``[B, C, H, W]`` in ``[0, 1]``."""

    @abc.abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """Everything (beyond ``hparams``) needed to predict, as tensors / plain Python."""

    @abc.abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_get_state`, called on a freshly constructed instance."""

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write hyper-parameters and trained state to ``path`` (parent folders are created).

        An existing file is never replaced unless ``overwrite=True`` (it may be a
        model that took hours to train). The file is written next to ``path`` first
        and moved into place, so an interrupted save leaves no half-written model.
        """
        path = check_save_path(path, overwrite=overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(
            {
                "format": SAVE_FORMAT_VERSION,
                "class": type(self).__name__,
                "hparams": self.hparams,
                "state": self._get_state(),
            },
            partial,
        )
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls: type[D], path: str | Path, map_location: Any = "cpu") -> D:
        """Rebuild a detector written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No saved {cls.__name__} at {path}.")
        payload = torch.load(path, map_location=map_location, weights_only=False)
        if not isinstance(payload, dict) or payload.get("format") != SAVE_FORMAT_VERSION:
            raise ValueError(f"{path} is not a file written by adlearn's Detector.save.")
        if payload["class"] != cls.__name__:
            raise ValueError(f"{path} holds a {payload['class']}, not a {cls.__name__}; use {payload['class']}.load.")
        detector = cls(**payload["hparams"])
        detector._set_state(payload["state"])
        detector.device = torch.device(map_location) if isinstance(map_location, str) else detector.device
        return detector

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({params})"
