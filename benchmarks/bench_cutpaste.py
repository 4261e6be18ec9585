"""CutPaste benchmark: patch-level localisation of one 256x256 image, batched vs a per-patch loop, same run.

For each profile, a CutPaste detector's Gaussians are fitted on a few built-in
grass images (no training: the timing does not depend on the weights), then
the patch-score grid of one 256x256 test image is computed twice:

* **batched** -- :meth:`CutPaste.patch_score_grid`: an ``unfold`` view of all
  patches, scored ``patch_batch_size`` at a time (best of ``--repeats``);
* **loop** -- :func:`adlearn.methods.cutpaste.dense_patch_scores_loop`: one
  forward pass per patch, the same network and Gaussian.

Both grids are spread to pixel maps the same way; the script prints the
largest difference between the maps and the speed-up::

    python benchmarks/bench_cutpaste.py --threads 1
    python benchmarks/bench_cutpaste.py --threads 2 --profiles paper book --json cutpaste_speed.json
    python benchmarks/bench_cutpaste.py --profiles book --set image_size=256 --set patch_size=64

The ``paper`` profile is the paper's geometry (256 px, 64-px patches at
stride 4: 2,401 patches, ResNet-18). Offline its ImageNet weights cannot be
downloaded, so it runs with random weights and says so; that changes the
numbers in the map, not the work. ``book`` resizes the image to its 128 px
(32-px patches at stride 8: 169 patches, EfficientNet-Lite0).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import torch
from _common import machine_description, write_results  # noqa: E402  (benchmarks/ is on the path when run as a script)


def _best_of(repeats: int, function) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(profile: str, overrides: dict[str, Any], train: Any, image: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Fit one profile's Gaussians without training, then time batched and looped patch scoring of ``image``."""
    from adlearn.methods import CutPaste
    from adlearn.methods.base import resize_images
    from adlearn.methods.cutpaste import dense_patch_scores_loop, patch_scores_to_map
    from adlearn.nn import BackboneWeightsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackboneWeightsWarning)  # recorded in the row instead
        detector = CutPaste.from_profile(profile, **overrides)
    images = torch.stack([train[i]["image"] for i in range(5)])
    detector.fit(images[:4], steps=0, progress=False, device="cpu", held_out=images[4:])
    c = detector.config
    inputs = resize_images(image, c.image_size)
    with torch.no_grad():
        detector.patch_score_grid(inputs)  # warm-up
        batched_s, batched = _best_of(repeats, lambda: detector.patch_score_grid(inputs))
        loop_s, loop = _best_of(1, lambda: dense_patch_scores_loop(detector.score_patches, inputs, c.patch_size,
                                                                     c.patch_stride))
    maps = [patch_scores_to_map(grid, c.patch_size, c.patch_stride, c.map_blur_sigma) for grid in (batched, loop)]
    difference = float((maps[0] - maps[1]).abs().max())
    patches = batched.numel()
    return {
        "profile": profile, "overrides": overrides, "image_size": c.image_size, "patch_size": c.patch_size,
        "patch_stride": c.patch_stride, "patches": patches, "patch_batch_size": c.patch_batch_size,
        "backbone": c.backbone, "backbone_weights": detector.info["backbone_weights"],
        "batched_s": round(batched_s, 4), "loop_s": round(loop_s, 3),
        "batched_ms_per_patch": round(1000 * batched_s / patches, 3), "loop_ms_per_patch": round(1000 * loop_s / patches, 3),
        "speedup": round(loop_s / batched_s, 2), "max_abs_map_difference": difference,
        "relative_map_difference": difference / float(maps[1].abs().max()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["paper"], help="CutPaste profiles to measure (default: paper)")
    parser.add_argument("--root", default=None, help="built-in data set folder (default: the data root's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many batched runs (the loop runs once)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyper-parameter")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from adlearn.data import MVTecAD, builtin_dataset_root
    from adlearn.profiles import parse_overrides

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    root = args.root or builtin_dataset_root()
    train = MVTecAD(root, "grass", "train", image_size=256)
    test = MVTecAD(root, "grass", "test", image_size=256)
    image = test[len(test) - 1]["image"][None]  # one defective 256x256 image

    rows = []
    for profile in args.profiles:
        row = measure(profile, overrides, train, image, args.repeats)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nCutPaste patch-level localisation of one 256x256 image, {machine_description(args.threads)}\n")
    print("| profile | network input | patches (size, stride) | backbone | loop s | batched s | speed-up | max map difference |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['profile']} | {row['image_size']} px | {row['patches']} ({row['patch_size']}, {row['patch_stride']}) | "
              f"{row['backbone']} | {row['loop_s']:.2f} | {row['batched_s']:.3f} | **{row['speedup']:.1f}×** | "
              f"{row['max_abs_map_difference']:.2e} ({row['relative_map_difference']:.1e} of the map's maximum) |")
    result = {"machine": machine_description(args.threads), "overrides": overrides, "rows": rows}
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main()
