"""What every chapter notebook does first, and the tool that keeps their set-up cells in sync.

The repository address lives in one place, ``_config.yml`` (``repository.url``),
where Jupyter Book also reads it for the Colab launch buttons. Each notebook's
first code cell (which must work on Colab *before* adlearn is installed) holds
a copy generated from it::

    python -m adlearn.notebook sync      # rewrite the set-up cells from _config.yml
    python -m adlearn.notebook check     # fail if any notebook's set-up cell is stale

The test suite runs ``check``, so a stale copy cannot land.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adlearn.data.paths import default_data_root
from adlearn.profiles import ProfileSettings, current_profile, profile_settings
from adlearn.runtime import describe_run, pick_device, seed_everything

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_CELL_TEMPLATE = '''\
# Set-up: on Colab, install adlearn from the book's repository; elsewhere adlearn is already installed.
import sys
if "google.colab" in sys.modules:
    REPOSITORY = "{url}"  # kept in sync with _config.yml by adlearn.notebook
    !pip install -q "adlearn @ git+{{REPOSITORY}}"'''
SETUP_CELL_MARKER = "# Set-up: on Colab, install adlearn"


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


def repository_url(config_path: Path = REPO_ROOT / "_config.yml") -> str:
    """The repository address from ``_config.yml`` (``repository: url: ...``)."""
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; the repository address is kept there.")
    match = re.search(r"^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:\s*(\S+)", config_path.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{config_path} has no 'repository: url:' entry.")
    return match.group(1).strip("'\"")


def setup_cell_source(url: str | None = None) -> str:
    """The exact source of the first code cell of every chapter notebook."""
    return SETUP_CELL_TEMPLATE.format(url=url or repository_url())


def _first_code_cell(notebook: dict) -> dict | None:
    return next((cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"), None)


def stale_notebooks(notebooks: list[Path], url: str | None = None) -> list[Path]:
    """Notebooks whose first code cell is not the current set-up cell."""
    expected = setup_cell_source(url)
    stale = []
    for path in notebooks:
        cell = _first_code_cell(json.loads(path.read_text()))
        source = "".join(cell["source"]) if cell else ""
        if source != expected:
            stale.append(path)
    return stale


def sync_notebooks(notebooks: list[Path], url: str | None = None) -> list[Path]:
    """Rewrite the set-up cell of ``notebooks`` (only cells that are set-up cells); return the changed ones."""
    expected = setup_cell_source(url)
    changed = []
    for path in notebooks:
        notebook = json.loads(path.read_text())
        cell = _first_code_cell(notebook)
        if cell is None or not "".join(cell["source"]).startswith(SETUP_CELL_MARKER):
            raise ValueError(f"{path}: the first code cell is not a set-up cell (it must start with {SETUP_CELL_MARKER!r}).")
        if "".join(cell["source"]) != expected:
            cell["source"] = expected.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def chapter_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The chapter notebooks ``notebooks/NN_slug.ipynb`` in order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adlearn.notebook", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["sync", "check"])
    args = parser.parse_args(argv)
    notebooks = chapter_notebooks()
    if args.action == "sync":
        for path in sync_notebooks(notebooks):
            print(f"updated {path}")
        return 0
    stale = stale_notebooks(notebooks)
    for path in stale:
        print(f"stale set-up cell: {path} (run: python -m adlearn.notebook sync)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
