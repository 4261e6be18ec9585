"""Accuracy of any registered method over seeds: the book's built-in textures or Magnetic Tile Defects.

Per data set and seed: ``fit`` on the training folder (a seeded tenth held out for
calibration, as always), then image AUROC, pixel AUROC, AUPRO and the image AUROC of
the good images against each defect type; a Markdown table of mean ± standard
deviation over the seeds at the end, and ``--json PATH`` for the rows::

    python benchmarks/bench_accuracy.py memseg --data builtin --seeds 0 1 2 --threads 2
    ADLEARN_LOCAL_DATA=../shared/data python benchmarks/bench_accuracy.py memseg --data magnetic-tile --seeds 0 1 2
    python benchmarks/bench_accuracy.py memseg --categories grass --set pretrained=false   # random weights

The seed is the detector's ``seed`` hyper-parameter (it seeds the held-out split,
the synthetic anomalies, the batches and the initial weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
from _common import (add_dataset_arguments, add_run_arguments, benchmark_datasets, builtin_version_of, machine_description,
                     mean_and_spread, write_results)  # noqa: E402  (benchmarks/ is on the path)


def image_auroc_by_score(detector: Any, predictions: Any) -> dict[str, float]:
    """The image AUROC of each of ``detector.image_score_variants`` on the test images (one trained model)."""
    from adlearn.metrics import image_auroc

    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for chunk in detector.prepared_batches(torch.from_numpy(predictions.images)):
            for name, scores in detector.image_score_variants(chunk).items():
                parts.setdefault(name, []).append(scores.float().cpu())
    return {name: round(image_auroc(torch.cat(values).numpy(), predictions.labels), 4) for name, values in parts.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", help="a registered method (python -m adlearn methods)")
    add_dataset_arguments(parser)
    parser.add_argument("--profile", default="book")
    parser.add_argument("--device", default=None)
    add_run_arguments(parser)
    args = parser.parse_args(argv)

    from adlearn import methods
    from adlearn.evaluation import collect_predictions, compute_metrics
    from adlearn.metrics import image_auroc, image_auroc_by_defect_type
    from adlearn.notebook import configuration
    from adlearn.profiles import parse_overrides

    torch.set_num_threads(args.threads)
    method = methods.get(args.method)
    overrides = parse_overrides(args.set)
    config = method.profile_config(args.profile, **overrides)
    # every hyper-parameter but the seed, so a chapter can tell which results share its configuration
    hparams = configuration(config)
    rows = []
    for name, train, test in benchmark_datasets(args.data, args.root, args.categories, config.image_size):
        for seed in args.seeds:
            detector = method.from_profile(args.profile, **{**overrides, "seed": seed})
            start = time.perf_counter()
            detector.fit(train, device=args.device, progress=False)
            fit_seconds = time.perf_counter() - start
            several_scores = hasattr(detector, "image_score_variants")  # then each score's AUROC, from the kept images
            predictions = collect_predictions(detector, test, device=args.device, keep_images=several_scores)
            row = {"data": name, "seed": seed, **{k: round(float(v), 4) for k, v in compute_metrics(predictions).items()},
                   # the same maps scored by their maximum: does the method's own image score beat it?
                   "image_auroc_map_max": round(image_auroc(predictions.maps.reshape(len(predictions), -1).max(1),
                                                            predictions.labels), 4),
                   "image_auroc_by_type": {k: round(v, 3) for k, v in image_auroc_by_defect_type(predictions).items()},
                   "fit_s": round(fit_seconds, 1), "test_images": len(test)}
            if several_scores:
                row["image_auroc_by_score"] = image_auroc_by_score(detector, predictions)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.method}, profile {args.profile}, overrides {overrides}, {machine_description(args.threads)}\n")
    print("| data | seeds | image AUROC | pixel AUROC | AUPRO | image AUROC per defect type (mean) | fit s |")
    print("|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(row["data"] for row in rows):
        group = [row for row in rows if row["data"] == name]
        types = group[0]["image_auroc_by_type"]
        by_type = ", ".join(f"{t} {statistics.mean(r['image_auroc_by_type'][t] for r in group):.2f}" for t in types)
        print(f"| {name} | {len(group)} | {mean_and_spread([r['image_auroc'] for r in group])} | "
              f"{mean_and_spread([r['pixel_auroc'] for r in group])} | {mean_and_spread([r['aupro'] for r in group])} | "
              f"{by_type} | {statistics.mean(r['fit_s'] for r in group):.0f} |")
    result = {"method": args.method, "profile": args.profile, "overrides": overrides, "hparams": hparams,
              "builtin_version": builtin_version_of(args.data, args.root),
              "machine": machine_description(args.threads), "rows": rows}
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main()
