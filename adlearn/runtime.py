"""Seeds, device choice and the one line every notebook prints about its run."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded the same.

    Deterministic algorithms are not forced (some CUDA kernels have none); on one
    machine and one device a seeded run repeats its numbers.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """Choose the device: ``preferred`` if given (checked), else CUDA, else Apple MPS, else CPU."""
    if preferred is not None:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {str(preferred)!r} was asked for, but CUDA is not available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A human description such as ``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def describe_run(profile: str, device: torch.device | str, dataset: str) -> str:
    """The line each notebook prints so a reader never mistakes a ``book`` number for a paper number."""
    return f"profile: {profile} | device: {describe_device(torch.device(device))} | data: {dataset}"
