"""Do a built-in category's good test images come from the same distribution as its training images?

A one-class benchmark assumes they do: only the defects should make a test image
stand out. This script asks a detector that needs no training (FeatureKNN, the
``book`` profile's frozen ImageNet features) three questions per category:

* **shift**: AUROC of the good *test* images against training images the
  detector never saw (the last ``--held-out`` of the training folder). 0.5: the
  good test images look like more training images; near 1: they look different.
* **defects vs unseen training images**: AUROC of the defective test images
  against those held-out training images: what the detector would reach if the
  good test images were drawn like the training images.
* **the benchmark's AUROC**: good test images against defective ones.

::

    python benchmarks/bench_builtin_shift.py                                     # the current built-in data set
    python benchmarks/bench_builtin_shift.py --root data/builtin_v2 --json benchmarks/results/builtin_shift_v2.json

Built-in version 2 held out the bottom rows of the grass and gravel photographs
for the test views; version 3 draws them from the whole photograph
(:mod:`adlearn.data.builtin`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch
from _common import machine_description, write_results  # noqa: E402  (benchmarks/ is on the path)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    from adlearn.metrics import image_auroc

    return float(image_auroc(np.concatenate([negatives, positives]),
                             np.concatenate([np.zeros(len(negatives)), np.ones(len(positives))])))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="a built-in data set folder (default: the current one)")
    parser.add_argument("--categories", nargs="+", default=["brick", "grass", "gravel", "washer"])
    parser.add_argument("--held-out", type=int, default=20, help="training images kept out of the memory bank")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from torch.utils.data import Subset

    from adlearn.data import MVTecAD, builtin_dataset_root, builtin_version
    from adlearn.evaluation import collect_predictions
    from adlearn.methods import get

    torch.set_num_threads(args.threads)
    root = args.root or builtin_dataset_root()
    rows = []
    for category in args.categories:
        detector = get("feature_knn").from_profile("book")
        size = detector.config.image_size
        train = MVTecAD(root, category, "train", image_size=size)
        test = MVTecAD(root, category, "test", image_size=size)
        split = len(train) - args.held_out
        detector.fit(Subset(train, range(split)), progress=False)
        unseen = collect_predictions(detector, Subset(train, range(split, len(train)))).scores
        tested = collect_predictions(detector, test)
        good, defective = tested.scores[tested.labels == 0], tested.scores[tested.labels == 1]
        row = {"data": category, "training_images": split, "held_out_training_images": len(unseen),
               "shift_auroc": round(auroc(unseen, good), 4),
               "defects_vs_unseen_training_auroc": round(auroc(unseen, defective), 4),
               "benchmark_image_auroc": round(auroc(good, defective), 4),
               "median_score": {"unseen_training": round(float(np.median(unseen)), 3),
                                "good_test": round(float(np.median(good)), 3),
                                "defective_test": round(float(np.median(defective)), 3)}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    version = builtin_version(root)
    print(f"\nbuilt-in data set version {version} ({root}), FeatureKNN book, {machine_description(args.threads)}\n")
    print("| category | good test vs unseen training (shift) | defective vs unseen training | good vs defective test |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['data']} | {row['shift_auroc']:.3f} | {row['defects_vs_unseen_training_auroc']:.3f} | "
              f"{row['benchmark_image_auroc']:.3f} |")
    result = {"method": "feature_knn", "profile": "book", "builtin_version": version,
              "machine": machine_description(args.threads), "rows": rows}
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main()
