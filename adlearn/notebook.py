"""What every chapter notebook does first: :func:`start_chapter` and :func:`trained_model_path`.

The tool that keeps the notebooks' set-up cells in sync with ``_config.yml``
lives in :mod:`adlearn.notebook_cells` (``python -m adlearn.notebook_cells sync|check``).
Its names are still importable from here, and ``python -m adlearn.notebook sync|check``
still runs it, for instructions written before the split.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adlearn.data.paths import default_data_root
from adlearn.profiles import ProfileSettings, current_profile, profile_settings
from adlearn.runtime import describe_run, pick_device, seed_everything

# Kept for old imports and `python -m adlearn.notebook sync|check`; the tool lives in adlearn.notebook_cells.
from adlearn.notebook_cells import (  # noqa: F401
    REPO_ROOT,
    SETUP_CELL_MARKER,
    SETUP_CELL_TEMPLATE,
    chapter_notebooks,
    main,
    repository_url,
    setup_cell_source,
    stale_notebooks,
    sync_notebooks,
)

__all__ = ["ChapterRun", "start_chapter", "trained_model_path"]


@dataclass(frozen=True)
class ChapterRun:
    """What a chapter runs with: profile, its settings, device and a seeded generator."""

    profile: str
    settings: ProfileSettings
    device: torch.device
    generator: torch.Generator
    seed: int


def start_chapter(seed: int = 0, profile: str | None = None, device: str | None = None, dataset: str | None = None) -> ChapterRun:
    """Seed everything, pick the profile and device, print them, and return them.

    Args:
        seed: the seed of every random number in the chapter.
        profile: ``quick``/``book``/``paper``; default ``$ADLEARN_PROFILE`` or ``book``.
        device: force a device; default CUDA when available, else CPU.
        dataset: what the chapter runs on, for the printed line; default from the profile.
    """
    name = current_profile(profile)
    settings = profile_settings(name)
    chosen = pick_device(device)
    generator = seed_everything(seed)
    if dataset is None:
        dataset = (
            "built-in MVTec-layout data (generated offline)" if settings.dataset == "builtin" else "MVTec AD"
        )
    print(describe_run(name, chosen, dataset))
    return ChapterRun(profile=name, settings=settings, device=chosen, generator=generator, seed=seed)


def trained_model_path(detector: Any, name: str, root: str | Path | None = None) -> Path:
    """Where a chapter keeps a model it trained: ``<root>/checkpoints/<name>_<digest>.pt``.

    The digest covers the detector's class and hyper-parameters, so a model
    trained with other settings (an older profile, an override) is never loaded
    in place of the one the notebook asks for, and never overwritten: a change
    of settings trains into a new file. Data and anomaly-source textures are not
    part of the digest; delete the file to retrain after changing those.

    Args:
        detector: the (untrained) detector the chapter built.
        name: a readable prefix, e.g. ``"draem_book_grass"``.
        root: the data root; default :func:`adlearn.data.default_data_root`.
    """
    settings = json.dumps({"class": type(detector).__name__, "hparams": detector.hparams}, sort_keys=True, default=str)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
    folder = (Path(root).expanduser() if root is not None else default_data_root()) / "checkpoints"
    return folder / f"{name}_{digest}.pt"


if __name__ == "__main__":  # python -m adlearn.notebook sync|check: kept for old instructions
    sys.exit(main())
