"""Pieces every benchmark script shares (run the scripts from the repository root:
``python benchmarks/bench_x.py``; Python puts this folder on the import path)."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch


def machine_description(threads: int) -> str:
    """The line each benchmark prints and records: CPU, thread count, GPU (if any) and torch version."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {threads} CPU thread(s), {device}, torch {torch.__version__}"


def benchmark_datasets(data: str, root: str | None, categories: list[str] | None, image_size: int) -> list[tuple[str, Any, Any]]:
    """``(name, train, test)`` per data set: the built-in categories (default all four), or Magnetic Tile Defects
    (``data="magnetic-tile"``; ``root`` None: a local copy through ADLEARN_LOCAL_DATA / ``data import``)."""
    from adlearn.data import MagneticTile, MVTecAD, builtin_dataset_root

    if data == "magnetic-tile":
        return [("magnetic_tile", MagneticTile(root, "train", image_size=image_size),
                 MagneticTile(root, "test", image_size=image_size))]
    root = root or builtin_dataset_root()
    return [(c, MVTecAD(root, c, "train", image_size=image_size), MVTecAD(root, c, "test", image_size=image_size))
            for c in categories or ["brick", "grass", "gravel", "washer"]]


def builtin_version_of(data: str, root: str | None) -> int | None:
    """The built-in data set's builder version a run used (None for other data): results record it, so a
    chapter never mixes results of a category's older images with the current ones."""
    from adlearn.data import builtin_dataset_root, builtin_version

    return builtin_version(root or builtin_dataset_root()) if data == "builtin" else None


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--root`` and ``--categories``: what :func:`benchmark_datasets` takes."""
    parser.add_argument("--data", choices=["builtin", "magnetic-tile"], default="builtin")
    parser.add_argument("--root", default=None, help="data folder (default: the built-in data set / a local MTD copy)")
    parser.add_argument("--categories", nargs="+", default=None, help="built-in categories (default: all four)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seeds``, ``--threads``, ``--set KEY=VALUE`` (hyper-parameter overrides) and ``--json PATH``."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyper-parameter")
    parser.add_argument("--json", default=None, help="also write the rows here")


def mean_and_spread(values: list[float]) -> str:
    """``"0.953 ± 0.012"`` (mean ± sample standard deviation), or the single value."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_results(path: str | Path | None, result: Any) -> None:
    """``--json PATH``: write ``result`` there as JSON (its folder created); nothing when ``path`` is None."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=1))
