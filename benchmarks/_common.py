"""Pieces every benchmark script shares (run the scripts from the repository root:
``python benchmarks/bench_x.py``; Python puts this folder on the import path)."""

from __future__ import annotations

import platform

import torch


def machine_description(threads: int) -> str:
    """The line each benchmark prints and records: CPU, thread count, GPU (if any) and torch version."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {threads} CPU thread(s), {device}, torch {torch.__version__}"
