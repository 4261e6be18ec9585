"""Time adlearn's AUPRO against anomalib's on 200 anomaly maps of 256 x 256.

The same script runs in two environments:

* the book's (``/work/venv`` or any environment with adlearn) generates the maps
  and masks into an ``.npz``, times ``adlearn.metrics.aupro``, then starts
* anomalib's own environment (``benchmarks/.venv-anomalib``; anomalib is not a
  dependency of the book) on the same file to time ``anomalib.metrics.AUPRO``,

and prints a Markdown table row with both values, both times and the ratio.

Usage::

    python -m venv benchmarks/.venv-anomalib      # git-ignored; about 6 GB (anomalib pulls a CUDA torch)
    benchmarks/.venv-anomalib/bin/pip install anomalib
    python benchmarks/bench_aupro.py                       # the whole comparison
    python benchmarks/bench_aupro.py --measure ours --data maps.npz   # one side only

Both sides run single-threaded by default (``--threads``), each timed as the best
of ``--repeats`` runs after a warm-up on the last four maps. The synthetic test set looks
like a real one: 30 % good images; defective ones carry one to three defects
(blobs, scratches, irregular stains) of very different sizes; the maps are
smooth noise in ``[0, 1]`` with responses of random strength and spread over the
defects, so some defects are found well and some badly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_ANOMALIB_PYTHON = HERE / ".venv-anomalib" / "bin" / "python"


# --------------------------------------------------------------------------- data


def make_maps_and_masks(count: int = 200, size: int = 256, good_fraction: float = 0.3, seed: int = 0):
    """Synthetic anomaly maps (float32 in [0, 1]) and masks (uint8 0/1), both ``[count, size, size]``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    masks = np.zeros((count, size, size), dtype=bool)
    response = np.zeros((count, size, size), dtype=np.float32)
    for index in range(int(round(good_fraction * count)), count):
        for _ in range(rng.integers(1, 4)):
            kind = rng.choice(["blob", "scratch", "stain"])
            center = rng.uniform(0.1, 0.9, 2) * size
            if kind == "blob":  # rotated ellipse, radii 2..40 px
                radii = rng.uniform(2, 40, 2)
                angle = rng.uniform(0, np.pi)
                dy, dx = rows - center[0], cols - center[1]
                u = dx * np.cos(angle) + dy * np.sin(angle)
                v = -dx * np.sin(angle) + dy * np.cos(angle)
                defect = (u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1
            elif kind == "scratch":  # thin line, 20..150 px long, 1..4 px wide
                length, width = rng.uniform(20, 150), rng.uniform(1, 4)
                angle = rng.uniform(0, np.pi)
                dy, dx = rows - center[0], cols - center[1]
                along = dx * np.cos(angle) + dy * np.sin(angle)
                across = -dx * np.sin(angle) + dy * np.cos(angle)
                defect = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
            else:  # irregular stain: thresholded smooth noise inside a box
                half = int(rng.integers(6, 35))
                noise = ndimage.gaussian_filter(rng.random((2 * half, 2 * half)), half / 4)
                patch = noise > np.quantile(noise, 0.55)
                top = int(np.clip(center[0] - half, 0, size - 2 * half))
                left = int(np.clip(center[1] - half, 0, size - 2 * half))
                defect = np.zeros((size, size), dtype=bool)
                defect[top : top + 2 * half, left : left + 2 * half] = patch
            masks[index] |= defect
            # the detector finds this defect with a random strength and blurs it a little
            strength = rng.uniform(0.05, 0.6)
            blurred = ndimage.gaussian_filter(defect.astype(np.float32), rng.uniform(1, 4))
            response[index] = np.maximum(response[index], strength * blurred / max(blurred.max(), 1e-6))
    background = ndimage.gaussian_filter(rng.random((count, size, size)).astype(np.float32), (0, 2, 2))
    background = (background - background.min()) / (background.max() - background.min())
    maps = np.clip(0.5 * background + response, 0, 1).astype(np.float32)
    return maps, masks.astype(np.uint8)


# --------------------------------------------------------------------------- the two implementations


def aupro_adlearn(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    from adlearn.metrics import aupro

    return aupro(maps, masks, fpr_limit=fpr_limit)


def aupro_anomalib(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    from types import SimpleNamespace

    import torch
    from anomalib.metrics import AUPRO

    # AUPRO is an AnomalibMetric: it reads the named fields of a batch object
    metric = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=fpr_limit)
    metric.update(SimpleNamespace(anomaly_map=torch.from_numpy(maps), gt_mask=torch.from_numpy(masks).long()))
    return float(metric.compute())


def measure(name: str, data: Path, fpr_limit: float, repeats: int, threads: int) -> dict:
    """Value and best-of-``repeats`` wall time of one implementation on the maps in ``data``."""
    import torch

    torch.set_num_threads(threads)
    implementation: Callable = {"ours": aupro_adlearn, "anomalib": aupro_anomalib}[name]
    arrays = np.load(data)
    maps, masks = arrays["maps"], arrays["masks"]
    implementation(maps[-4:], masks[-4:], fpr_limit)  # warm-up (defective maps): imports, first calls
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = implementation(maps, masks, fpr_limit)
        times.append(time.perf_counter() - start)
    version = "adlearn"
    if name == "anomalib":
        import anomalib

        version = f"anomalib {anomalib.__version__}"
    return {
        "name": name, "version": version, "value": value, "best_s": min(times), "times_s": times,
        "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
    }  # fmt: skip


def run_side(python: Path, name: str, data: Path, args: argparse.Namespace) -> dict:
    """Run :func:`measure` in another interpreter (another environment) and read its JSON line."""
    command = [
        str(python), str(Path(__file__).resolve()), "--measure", name, "--data", str(data),
        "--fpr-limit", str(args.fpr_limit), "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]  # fmt: skip
    environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{name} side failed ({' '.join(command)}):\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measure", choices=["ours", "anomalib"], help="time one side only and print JSON")
    parser.add_argument("--data", type=Path, help=".npz with 'maps' and 'masks' (generated when absent)")
    parser.add_argument("--anomalib-python", type=Path, default=DEFAULT_ANOMALIB_PYTHON)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fpr-limit", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    if args.measure:
        print(json.dumps(measure(args.measure, args.data, args.fpr_limit, args.repeats, args.threads)))
        return

    with tempfile.TemporaryDirectory() as folder:
        data = args.data or Path(folder) / "aupro_maps.npz"
        if not data.exists():
            maps, masks = make_maps_and_masks(args.count, args.size)
            np.savez(data, maps=maps, masks=masks)
        arrays = np.load(data)
        from scipy import ndimage

        regions = sum(ndimage.label(mask, np.ones((3, 3)))[1] for mask in arrays["masks"])
        print(
            f"data: {arrays['maps'].shape[0]} maps of {arrays['maps'].shape[1]}x{arrays['maps'].shape[2]}, "
            f"{regions} defect regions, {arrays['masks'].mean():.2%} defect pixels; machine: {machine()}; "
            f"threads: {args.threads}; fpr_limit: {args.fpr_limit}",
            file=sys.stderr,
        )
        ours = run_side(Path(sys.executable), "ours", data, args)
        theirs = run_side(args.anomalib_python, "anomalib", data, args)
    print(json.dumps({"ours": ours, "anomalib": theirs}), file=sys.stderr)
    print("| maps | adlearn AUPRO | anomalib AUPRO | |difference| | adlearn time (s) | anomalib time (s) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.count} x {args.size}x{args.size} | {ours['value']:.6f} | {theirs['value']:.6f} "
        f"| {abs(ours['value'] - theirs['value']):.1e} | {ours['best_s']:.3f} | {theirs['best_s']:.2f} "
        f"| {theirs['best_s'] / ours['best_s']:.1f}x |"
    )


if __name__ == "__main__":
    main()
