"""Run profiles: one notebook, three budgets.

``quick``  proves the code path in seconds on 2 CPU cores (CI, ``pytest --nbval``);
``book``   gives meaningful results on the built-in data in minutes on a laptop CPU;
``paper``  uses the papers' hyper-parameters on MVTec AD (or MNIST) on a GPU.

The profile is chosen by an explicit argument, else by the ``ADLEARN_PROFILE``
environment variable, else ``book``.  Each method keeps its own table of
hyper-parameters per profile (``Method.PROFILES``); :func:`resolve_hparams`
merges a profile's entry with user overrides and rejects unknown names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

PROFILE_NAMES: tuple[str, ...] = ("quick", "book", "paper")
DEFAULT_PROFILE = "book"
ENV_VAR = "ADLEARN_PROFILE"


@dataclass(frozen=True)
class ProfileSettings:
    """What a profile means outside any one method: which data, how big, which seed."""

    name: str
    description: str
    dataset: str  # "builtin" (generated offline) or "mvtec" (downloaded on request)
    categories: tuple[str, ...]
    image_size: int
    seed: int = 0


_SETTINGS = {
    "quick": ProfileSettings(
        name="quick",
        description="seconds per notebook on 2 CPU cores; proves the code path, not the accuracy",
        dataset="builtin",
        categories=("brick",),
        image_size=64,
    ),
    "book": ProfileSettings(
        name="book",
        description="minutes per notebook on 2 CPU cores; meaningful results on the built-in dataset",
        dataset="builtin",
        categories=("brick", "grass", "gravel", "washer"),
        image_size=128,
    ),
    "paper": ProfileSettings(
        name="paper",
        description="the papers' hyper-parameters on MVTec AD (a GPU is expected)",
        dataset="mvtec",
        categories=(
            "carpet", "grid", "leather", "tile", "wood", "bottle", "cable", "capsule",
            "hazelnut", "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper",
        ),
        image_size=256,
    ),
}


def current_profile(name: str | None = None) -> str:
    """Return the profile to use: ``name`` if given, else ``$ADLEARN_PROFILE``, else ``book``."""
    chosen = name if name is not None else os.environ.get(ENV_VAR, DEFAULT_PROFILE)
    chosen = chosen.strip().lower()
    if chosen not in PROFILE_NAMES:
        source = "argument 'name'" if name is not None else f"environment variable {ENV_VAR}"
        raise ValueError(
            f"Unknown run profile {chosen!r} from {source}; expected one of {', '.join(PROFILE_NAMES)}."
        )
    return chosen


def profile_settings(name: str | None = None) -> ProfileSettings:
    """The :class:`ProfileSettings` of a profile (see :func:`current_profile`)."""
    return _SETTINGS[current_profile(name)]


def resolve_hparams(
    table: Mapping[str, Mapping[str, Any]],
    name: str | None = None,
    owner: str = "method",
    defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Merge ``defaults``, the profile entry of ``table`` and ``overrides``, in that order.

    Args:
        table: ``{"quick": {...}, "book": {...}, "paper": {...}}``; with ``defaults`` each entry
            lists only what the profile changes.
        name: profile name (see :func:`current_profile`).
        owner: used in error messages, e.g. ``"DRAEM"``.
        defaults: every hyper-parameter with its default (a method's paper values); the known names.
        **overrides: hyper-parameters that replace the profile's values.

    Raises:
        ValueError: a profile is missing from ``table`` or an override names an
            unknown hyper-parameter.
    """
    profile = current_profile(name)
    if profile not in table:
        raise ValueError(f"{owner} has no hyper-parameters for profile {profile!r}; it has {sorted(table)}.")
    hparams = dict(defaults or {})
    if defaults is not None:
        typos = sorted(set(table[profile]) - set(defaults))
        if typos:
            raise ValueError(f"{owner}.PROFILES[{profile!r}] names unknown hyper-parameter(s) {typos}; "
                             f"known ones are {sorted(defaults)}.")
    hparams.update(table[profile])
    unknown = sorted(set(overrides) - set(hparams))
    if unknown:
        raise ValueError(
            f"{owner}.from_profile got unknown hyper-parameter(s) {unknown}; "
            f"known ones are {sorted(hparams)}."
        )
    hparams.update(overrides)
    return hparams


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Hyper-parameter overrides from command-line ``key=value`` strings.

    A value is read as JSON where it parses (numbers, ``true``/``false``/``null``,
    lists such as ``[0.8, 0.9]``, objects such as ``{"beta": [0.5, 1.0]}``), and
    as a plain string otherwise. Whether the keys exist is checked later, by
    :func:`resolve_hparams`.

    Example:
        >>> parse_overrides(["steps=1200", "train_crop=64", "texture_root=data/dtd"])
        {'steps': 1200, 'train_crop': 64, 'texture_root': 'data/dtd'}
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"an override must look like key=value, got {pair!r}.")
        try:
            overrides[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key.strip()] = text
    return overrides
