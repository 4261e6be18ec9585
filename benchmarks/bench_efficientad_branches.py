"""EfficientAD: what each branch contributes. One fit per data set, three scorings of the same model.

EfficientAD's map is the mean of two quantile-normalised maps: the *local* one
(teacher against the student's first half: local anomalies) and the *global*
one (the autoencoder against the student's second half: logical anomalies).
This fits the ``book`` profile once per data set and seed and scores the test
split three ways from the same networks: local map alone, global map alone,
and their mean (what ``predict`` returns). Image score = max of the map, as
in ``predict``. The distilled teacher is made once and kept in
``data/checkpoints`` (named by its settings), so only the first run pays for it::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_efficientad_branches.py --categories grass --threads 1
    ADLEARN_LOCAL_DATA=../shared/data python benchmarks/bench_efficientad_branches.py --data magnetic-tile --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from _common import add_dataset_arguments, add_run_arguments, benchmark_datasets, machine_description, write_results  # noqa: E402  (benchmarks/ is on the path)


def branch_metrics(detector: Any, test: Any, batch_size: int = 32) -> dict[str, dict[str, float]]:
    """Image AUROC, pixel AUROC and AUPRO of the local, global and combined maps of a fitted ``detector``."""
    from adlearn.metrics import aupro, image_auroc, pixel_auroc

    loader = torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False, num_workers=0)
    maps: dict[str, list[torch.Tensor]] = {}
    labels, masks = [], []
    for batch in loader:
        branches = detector.branch_maps(batch["image"].to(detector.device))
        if "global" in branches:
            branches["combined"] = detector.combined_map(branches["local"], branches["global"])
        for name, value in branches.items():
            maps.setdefault(name, []).append(value[:, 0].cpu())
        labels.append(batch["label"])
        masks.append(batch["mask"][:, 0])
    label, mask = torch.cat(labels).numpy(), (torch.cat(masks) > 0.5).numpy()
    result = {}
    for name, parts in maps.items():
        stacked = torch.cat(parts)
        result[name] = {"image_auroc": round(image_auroc(stacked.flatten(1).amax(1).numpy(), label), 4),
                        "pixel_auroc": round(pixel_auroc(stacked.numpy(), mask), 4),
                        "aupro": round(aupro(stacked.numpy(), mask), 4)}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    add_run_arguments(parser)
    args = parser.parse_args(argv)

    from adlearn.data.paths import default_data_root
    from adlearn.methods.efficientad import EfficientAD
    from adlearn.profiles import parse_overrides

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    config = EfficientAD.profile_config("book", **overrides)
    teacher_path = overrides.get("teacher_path") or str(EfficientAD.cached_teacher_path(config, default_data_root() / "checkpoints"))
    rows = []
    for name, train, test in benchmark_datasets(args.data, args.root, args.categories, config.image_size):
        for seed in args.seeds:
            detector = EfficientAD.from_profile("book", **{**overrides, "seed": seed, "teacher_path": teacher_path})
            start = time.perf_counter()
            detector.fit(train, progress=False)
            row = {"data": name, "seed": seed, "fit_s": round(time.perf_counter() - start, 1),
                   **branch_metrics(detector, test)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nEfficientAD book, overrides {overrides}, {machine_description(args.threads)}\n")
    print("| data | seed | map | image AUROC | pixel AUROC | AUPRO |")
    print("|---|---|---|---:|---:|---:|")
    for row in rows:
        for branch in ("local", "global", "combined"):
            if branch in row:
                m = row[branch]
                print(f"| {row['data']} | {row['seed']} | {branch} | {m['image_auroc']:.3f} | {m['pixel_auroc']:.3f} | {m['aupro']:.3f} |")
    result = {"method": "efficientad", "profile": "book", "overrides": overrides, "machine": machine_description(args.threads),
              "rows": rows}
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main()
