"""FeatureKNN benchmark: the book's no-training yardstick on the built-in textures and Magnetic Tile Defects.

Per data set and seed: fit seconds (backbone features of every training image,
memory bank, coreset, calibration), image AUROC, pixel AUROC, AUPRO, and
inference time per image over the whole test split; plus the wall time of
predicting the test images of one built-in category (120 in data set v2) in one call::

    python benchmarks/bench_feature_knn.py --threads 2 --data builtin --seeds 0 1 2
    python benchmarks/bench_feature_knn.py --threads 2 --data magnetic-tile --seeds 0 1 2
    python benchmarks/bench_feature_knn.py --data magnetic-tile --root ../shared/data/magnetic-tile --set coreset_fraction=0.01

The seed moves the held-out split and the coreset's first centre (the
features themselves are deterministic). ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
from _common import (add_dataset_arguments, add_run_arguments, benchmark_datasets, machine_description, mean_and_spread,
                     write_results)  # noqa: E402  (benchmarks/ is on the path when run as a script)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--profile", default="book")
    add_run_arguments(parser)
    args = parser.parse_args(argv)

    from adlearn.evaluation import collect_predictions, compute_metrics
    from adlearn.methods import FeatureKNN
    from adlearn.profiles import parse_overrides

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    image_size = FeatureKNN.profile_config(args.profile, **overrides).image_size
    rows = []
    for name, train, test in benchmark_datasets(args.data, args.root, args.categories, image_size):
        test_images = torch.stack([test[i]["image"] for i in range(len(test))])
        for seed in args.seeds:
            detector = FeatureKNN.from_profile(args.profile, **{**overrides, "seed": seed})
            start = time.perf_counter()
            detector.fit(train, progress=False, device="cpu")
            fit_seconds = time.perf_counter() - start
            detector.predict(test_images[:4])  # warm-up
            start = time.perf_counter()
            detector.predict(test_images)
            predict_seconds = time.perf_counter() - start
            metrics = compute_metrics(collect_predictions(detector, test))
            row = {"data": name, "seed": seed, **{k: round(float(v), 4) for k, v in metrics.items()},
                   "fit_s": round(fit_seconds, 1), "test_images": len(test), "predict_s": round(predict_seconds, 2),
                   "ms_per_image": round(1000 * predict_seconds / len(test), 1),
                   "memory_bank": detector.info["memory_bank"], "backbone": detector.info["backbone_weights"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nFeatureKNN, profile {args.profile}, overrides {overrides}, {machine_description(args.threads)}\n")
    print("| data | seeds | image AUROC | pixel AUROC | AUPRO | fit s | predict s (images) | ms/image | bank |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(row["data"] for row in rows):
        group = [row for row in rows if row["data"] == name]

        def spread(key: str) -> str:
            return mean_and_spread([row[key] for row in group])

        print(f"| {name} | {len(group)} | {spread('image_auroc')} | {spread('pixel_auroc')} | {spread('aupro')} | "
              f"{statistics.mean(r['fit_s'] for r in group):.1f} | "
              f"{statistics.mean(r['predict_s'] for r in group):.2f} ({group[0]['test_images']}) | "
              f"{statistics.mean(r['ms_per_image'] for r in group):.1f} | {group[0]['memory_bank']} |")
    result = {"profile": args.profile, "overrides": overrides, "machine": machine_description(args.threads), "rows": rows}
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main()
