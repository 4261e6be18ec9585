"""AnoGAN benchmarks: the batched latent search, the encoder, and the one-class protocol.

Three measurements, each printed as a Markdown table (and optionally saved as JSON):

``speed``
    The batched latent search (all images as one batch, one Adam over a
    ``[B, latent_dim]`` tensor) against the per-image loop of the original code
    (one image, one optimiser at a time): same trained GAN, same images, same
    starting latents, same number of steps (the GAN gets a short training
    first: the search's cost does not depend on how well it is trained).
    Reports images per second and the speed-up in wall-clock time and in CPU
    (process) time, which is what the code itself costs when the machine is
    shared, and the largest score difference between the two (they compute the
    same thing).
``protocol``
    The one-class protocol: for each normal digit, train AnoGAN on that digit's
    training images, then score the test split (that digit normal, every other
    digit anomalous) with the latent search and with the encoder.  Reports image
    AUROC per digit for both scorers, and their scoring times.
``all``
    Both.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/bench_anogan.py speed --profile book
    OMP_NUM_THREADS=1 python benchmarks/bench_anogan.py protocol --profile book --digits 0 1 2 3 4 5 6 7 8 9
    python benchmarks/bench_anogan.py protocol --profile paper --source mnist --allow-download   # on a GPU

Without MNIST files under the data root (and no ``--allow-download``), the data
is scikit-learn's offline stand-in; the script says so and the tables name it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_results  # noqa: E402  (benchmarks/ is on the path when run as a script)

from adlearn.data.mnist import one_class_split
from adlearn.methods.anogan import AnoGAN, latent_search, latent_search_per_image
from adlearn.metrics import image_auroc
from adlearn.runtime import describe_device, pick_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function: Any, device: torch.device) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    result = function()
    _sync(device)
    return result, time.perf_counter() - start


def _timed_cpu(function: Any, device: torch.device) -> tuple[Any, float, float]:
    """Wall-clock and CPU (process) seconds: on a shared machine, CPU time is what the code itself costs."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    _sync(device)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure_speed(detector: AnoGAN, images: torch.Tensor, steps: int, device: torch.device, repeats: int = 3) -> dict[str, float]:
    """Batched search vs the per-image loop on the same images, starts and steps (best of ``repeats`` runs each)."""
    images = detector._prepare(images).to(device)
    common = dict(steps=steps, lr=detector.hparams["search_lr"], discrimination_weight=detector.hparams["discrimination_weight"], seed=0)
    args = (detector.generator, detector.discriminator)
    latent_search(*args, images[:2], **{**common, "steps": 2})  # warm-up (allocators, kernels)
    batched_runs = [_timed_cpu(lambda: latent_search(*args, images, **common), device) for _ in range(repeats)]
    looped_runs = [_timed_cpu(lambda: latent_search_per_image(*args, images, **common), device) for _ in range(repeats)]
    batched, looped = batched_runs[0][0], looped_runs[0][0]
    batched_seconds, looped_seconds = min(run[1] for run in batched_runs), min(run[1] for run in looped_runs)
    batched_cpu, looped_cpu = min(run[2] for run in batched_runs), min(run[2] for run in looped_runs)
    count = images.shape[0]
    return {
        "batched_cpu_seconds": batched_cpu,
        "loop_cpu_seconds": looped_cpu,
        "cpu_speedup": looped_cpu / batched_cpu,
        "images": count,
        "steps": steps,
        "repeats": repeats,
        "batched_seconds": batched_seconds,
        "loop_seconds": looped_seconds,
        "batched_images_per_second": count / batched_seconds,
        "loop_images_per_second": count / looped_seconds,
        "speedup": looped_seconds / batched_seconds,
        "max_abs_score_difference": float((batched.score - looped.score).abs().max()),
        "max_relative_score_difference": float(((batched.score - looped.score).abs() / looped.score.abs()).max()),
    }


def measure_protocol_digit(args: argparse.Namespace, digit: int, device: torch.device) -> dict[str, Any]:
    """Train on one normal digit, score the test split with both scorers."""
    split = one_class_split((digit,), root=args.root, source=args.source, allow_download=args.allow_download, seed=args.seed, verbose=False)
    detector = AnoGAN.from_profile(args.profile, seed=args.seed)
    _, fit_seconds = _timed(lambda: detector.fit(split.train, held_out=split.holdout, device=device, progress=args.progress), device)
    labels = split.test.labels
    row: dict[str, Any] = {"digit": digit, "source": split.source, "train": len(split.train), "test": len(split.test), "fit_seconds": fit_seconds}
    for scorer in ("search", "encoder"):
        result, seconds = _timed(lambda: detector.anomaly_scores(split.test.images, scorer=scorer, batch_size=args.search_batch), device)
        row[f"{scorer}_auroc"] = image_auroc(result.score.cpu(), labels)
        row[f"{scorer}_residual_auroc"] = image_auroc(result.residual_score.cpu(), labels)
        row[f"{scorer}_seconds"] = seconds
    return row


def _speed_table(result: dict[str, float], context: str) -> str:
    return "\n".join(
        [
            f"Latent search, {result['images']} images × {result['steps']} steps, best of {result['repeats']} ({context})",
            "",
            "| search | wall s | images/s | speed-up (wall) | CPU s | speed-up (CPU time) | max score difference |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| per-image loop | {result['loop_seconds']:.2f} | {result['loop_images_per_second']:.2f} | 1× | "
            f"{result['loop_cpu_seconds']:.2f} | 1× | |",
            f"| batched | {result['batched_seconds']:.2f} | {result['batched_images_per_second']:.1f} | "
            f"{result['speedup']:.1f}× | {result['batched_cpu_seconds']:.2f} | {result['cpu_speedup']:.1f}× | "
            f"{result['max_abs_score_difference']:.2g} ({result['max_relative_score_difference']:.1e} relative) |",
        ]
    )


def _protocol_table(rows: list[dict[str, Any]], context: str) -> str:
    lines = [
        f"One-class protocol ({context})",
        "",
        "| normal digit | train / test images | AUROC search | AUROC encoder | search s | encoder s | speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['digit']} | {row['train']} / {row['test']} | {row['search_auroc']:.3f} | {row['encoder_auroc']:.3f} | "
            f"{row['search_seconds']:.1f} | {row['encoder_seconds']:.2f} | {row['search_seconds'] / row['encoder_seconds']:.0f}× |"
        )
    if rows:
        mean = lambda key: sum(row[key] for row in rows) / len(rows)  # noqa: E731
        lines.append(
            f"| mean | | {mean('search_auroc'):.3f} | {mean('encoder_auroc'):.3f} | {mean('search_seconds'):.1f} | "
            f"{mean('encoder_seconds'):.2f} | {mean('search_seconds') / mean('encoder_seconds'):.0f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["speed", "protocol", "all"])
    parser.add_argument("--profile", default="book", choices=["quick", "book", "paper"])
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)), help="normal digits for the protocol")
    parser.add_argument("--speed-digit", type=int, default=7, help="the normal digit of the GAN timed in 'speed'")
    parser.add_argument("--speed-images", type=int, default=64, help="test images searched in 'speed'")
    parser.add_argument("--speed-steps", type=int, default=None, help="search steps in 'speed' (default: the profile's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each search in 'speed' (best is kept)")
    parser.add_argument("--speed-train-steps", type=int, default=300, help="GAN steps before timing 'speed'")
    parser.add_argument("--search-batch", type=int, default=None, help="search at most this many images at once (memory)")
    parser.add_argument("--source", default="auto", choices=["auto", "mnist", "sklearn"])
    parser.add_argument("--root", default=None, help="data root holding MNIST/raw (default: adlearn's data folder)")
    parser.add_argument("--allow-download", action="store_true", help="download MNIST if missing")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    context = f"profile {args.profile}, {describe_device(device)}, {platform.processor() or platform.machine()}"
    results: dict[str, Any] = {"profile": args.profile, "device": describe_device(device), "torch": torch.__version__}

    if args.part in ("speed", "all"):
        split = one_class_split((args.speed_digit,), root=args.root, source=args.source, allow_download=args.allow_download, seed=args.seed)
        # the search's cost does not depend on how well the GAN is trained: a short training is enough here
        detector = AnoGAN.from_profile(args.profile, seed=args.seed, gan_steps=args.speed_train_steps, encoder_steps=0)
        detector.fit(split.train, held_out=split.holdout, device=device, progress=args.progress)
        steps = detector.hparams["search_steps"] if args.speed_steps is None else args.speed_steps
        speed = measure_speed(detector, split.test.images[: args.speed_images], steps, device, args.repeats)
        results["speed"] = {**speed, "source": split.source}
        print(_speed_table(speed, f"{context}, data {split.source}"), flush=True)
        print(flush=True)

    if args.part in ("protocol", "all"):
        rows = []
        for digit in args.digits:
            rows.append(measure_protocol_digit(args, digit, device))
            print(
                f"digit {digit}: AUROC search {rows[-1]['search_auroc']:.3f}, encoder {rows[-1]['encoder_auroc']:.3f} "
                f"(fit {rows[-1]['fit_seconds']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        results["protocol"] = rows
        print(_protocol_table(rows, f"{context}, data {rows[0]['source'] if rows else '?'}"))

    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
