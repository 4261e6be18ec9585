"""MemSeg benchmark: the batched memory selection against the per-sample loop, CPU latency, training speed.

1. **Memory selection** (``selection``): batch 8, 30 memory samples, the
   features of 256 x 256 images at MemSeg's three levels (ResNet18 layer1-3:
   64 x 64 x 64, 128 x 32 x 32, 256 x 16 x 16; random weights, which changes
   the values, not the work). :meth:`adlearn.methods.memseg.MemoryModule.select`
   (one matrix product per level for the whole batch and memory) against
   :func:`adlearn.methods.memseg.select_memory_per_sample` (the public
   re-implementation's loop), in the same process and run, alternating
   (``--repeats`` pairs after a warm-up; best times, and the speed-up as the
   median of the per-pair ratios). Two timings: choosing the best match
   (distances and argmin, the part the public code loops over) and the whole
   module (plus the chosen sample's differences and the concatenation, the
   same code in both). The chosen indices and the features passed on must be
   identical, the distances equal to float32 rounding.
2. **Latency** (``latency``): ``predict`` on 256 x 256 inputs, per image, at
   batch 1 and batch 8, for each ``--profiles`` entry (the network runs at
   the profile's ``image_size``; inputs are resized to it).
3. **Training speed** (``train``): optimiser steps per second of ``fit`` for
   each profile (its batch size and image size; the first step is left out),
   timed between the step callbacks.

Commands::

    python benchmarks/bench_memseg.py --threads 1
    python benchmarks/bench_memseg.py --threads 2 --parts selection --repeats 10 --json memseg.json

The ``paper`` profile's ResNet18 gets random weights when torchvision cannot
download them (a warning says so): the speed is the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import torch
from _common import machine_description, write_results  # noqa: E402  (benchmarks/ is on the path when run as a script)


def _paired(batched, loop, repeats: int) -> tuple[float, float, float, Any, Any]:
    """Best times of ``batched()`` and ``loop()`` run alternately, and the median of the per-pair ratios.

    Alternating keeps both under the same load when other work shares the machine.
    """
    batched_result, loop_result = batched(), loop()  # warm-up
    pairs = []
    for _ in range(repeats):
        start = time.perf_counter()
        batched_result = batched()
        middle = time.perf_counter()
        loop_result = loop()
        pairs.append((middle - start, time.perf_counter() - middle))
    ratio = statistics.median(l / b for b, l in pairs)
    return min(b for b, _ in pairs), min(l for _, l in pairs), ratio, batched_result, loop_result


def _best(function, repeats: int) -> tuple[float, Any]:
    result = function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench_selection(args: argparse.Namespace) -> dict[str, Any]:
    from adlearn.methods.memseg import (
        MemoryModule, MemSegEncoder, memory_distances_per_sample, select_memory_per_sample,
    )

    generator = torch.Generator().manual_seed(0)
    encoder = MemSegEncoder("resnet18", "random").eval()
    with torch.no_grad():
        memory_features = [f.float() for f in encoder(torch.rand(args.memory, 3, 256, 256, generator=generator)).levels]
        features = [f.float() for f in encoder(torch.rand(args.batch, 3, 256, 256, generator=generator)).levels]
    memory = MemoryModule()
    memory.store(memory_features)
    with torch.no_grad():
        # the choice of the best-matching sample: what the public code loops over (its _calc_diff + argmin)
        choice_s, choice_loop_s, choice_ratio, batched_indices, loop_indices = _paired(
            lambda: memory.distances(features).argmin(dim=1),
            lambda: memory_distances_per_sample(features, memory_features).argmin(dim=1), args.repeats)
        # the whole memory module: the choice, then the differences and concatenations (the same code in both)
        batched_s, loop_s, module_ratio, batched, loop = _paired(
            lambda: memory.select(features), lambda: select_memory_per_sample(features, memory_features), args.repeats)
    identical = (bool(torch.equal(batched_indices, loop_indices)) and bool(torch.equal(batched.indices, loop.indices))
                 and all(torch.equal(b, r) for b, r in zip(batched.concatenated, loop.concatenated)))
    distance_error = float((batched.distances - loop.distances).abs().max() / loop.distances.abs().max())
    row = {"part": "selection", "batch": args.batch, "memory": args.memory,
           "level_shapes": [list(f.shape[1:]) for f in features],
           "choice_batched_ms": round(1000 * choice_s, 2), "choice_loop_ms": round(1000 * choice_loop_s, 2),
           "choice_speedup": round(choice_ratio, 1),
           "module_batched_ms": round(1000 * batched_s, 2), "module_loop_ms": round(1000 * loop_s, 2),
           "module_speedup": round(module_ratio, 1), "identical_indices_and_features": identical,
           "max_relative_distance_difference": distance_error}
    print(json.dumps(row), flush=True)
    if not identical:
        raise SystemExit("batched and loop selections differ")
    return row


def _detector(profile: str, texture_count: int):
    from adlearn.methods import MemSeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper profile's ResNet18 without a network: random weights, warned
        return MemSeg.from_profile(profile, texture_count=texture_count)


def bench_latency_and_training(args: argparse.Namespace, parts: list[str]) -> list[dict[str, Any]]:
    rows = []
    generator = torch.Generator().manual_seed(1)
    for profile in args.profiles:
        detector = _detector(profile, args.texture_count)
        size = detector.config.image_size
        # the memory holds up to memory_size of these (less the held-out tenth): --train-images sets how large
        train = torch.rand(args.train_images, 3, size, size, generator=generator)
        stamps: list[float] = []
        steps = args.train_steps.get(profile, 6)
        start = time.perf_counter()
        detector.fit(train, steps=steps if "train" in parts else 0, progress=False, device="cpu",
                     callback=lambda step, history: stamps.append(time.perf_counter()))
        fit_s = time.perf_counter() - start
        row: dict[str, Any] = {"part": "profile", "profile": profile, "image_size": size,
                               "memory_images": len(detector.memory),
                               "backbone": detector.config.backbone,
                               "backbone_weights": detector.info["backbone_weights"],
                               "batch_size": detector.config.batch_size, "fit_s": round(fit_s, 1)}
        if "train" in parts and len(stamps) >= 3:
            row["train_steps_timed"] = len(stamps) - 1
            row["train_steps_per_s"] = round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 3)
        if "latency" in parts:
            images = torch.rand(8, 3, 256, 256, generator=generator)
            one_s, _ = _best(lambda: detector.predict(images[:1], batch_size=1), args.repeats)
            eight_s, _ = _best(lambda: detector.predict(images, batch_size=8), args.repeats)
            row.update(input_px=256, latency_ms_batch1=round(1000 * one_s, 1),
                       latency_ms_per_image_batch8=round(1000 * eight_s / 8, 1))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=["selection", "latency", "train"],
                        default=["selection", "latency", "train"])
    parser.add_argument("--profiles", nargs="+", default=["paper", "book"])
    parser.add_argument("--batch", type=int, default=8, help="inputs per memory selection")
    parser.add_argument("--memory", type=int, default=30, help="memory samples")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=40,
                        help="random training images for the latency and training parts (the memory is filled from them)")
    parser.add_argument("--texture-count", type=int, default=16, help="anomaly-source textures to load (speed only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    args.train_steps = {"paper": 4, "book": 12, "quick": 12}

    torch.set_num_threads(args.threads)
    rows = []
    if "selection" in args.parts:
        rows.append(bench_selection(args))
    if {"latency", "train"} & set(args.parts):
        rows.extend(bench_latency_and_training(args, args.parts))

    print(f"\nMemSeg, {machine_description(args.threads)}\n")
    for row in rows:
        if row["part"] == "selection":
            print(f"memory selection, batch {row['batch']}, {row['memory']} memory samples, 256 px features; best "
                  f"times of {args.repeats} alternating runs, speed-up = median of the per-run ratios:\n"
                  f"  choosing the best match (distances + argmin): batched {row['choice_batched_ms']} ms, "
                  f"per-sample loop {row['choice_loop_ms']} ms = **{row['choice_speedup']}x**\n"
                  f"  whole memory module (+ differences and concatenation, shared code): batched "
                  f"{row['module_batched_ms']} ms, loop {row['module_loop_ms']} ms = **{row['module_speedup']}x**\n"
                  f"  identical indices and features: {row['identical_indices_and_features']}; "
                  f"max relative distance difference {row['max_relative_distance_difference']:.1e}")
    profile_rows = [row for row in rows if row["part"] == "profile"]
    if profile_rows:
        print("\n| profile | backbone | network px | memory images | latency ms (256 px, batch 1) | ms/image (batch 8) "
              "| train steps/s (batch) |")
        print("|---|---|---|---|---|---|---|")
        for row in profile_rows:
            print(f"| {row['profile']} | {row['backbone']} | {row['image_size']} | {row['memory_images']} | "
                  f"{row.get('latency_ms_batch1', '')} | "
                  f"{row.get('latency_ms_per_image_batch8', '')} | {row.get('train_steps_per_s', '')} "
                  f"({row['batch_size']}) |")
    result = {"machine": machine_description(args.threads), "rows": rows}
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main()
