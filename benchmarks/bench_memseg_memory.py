"""How much MemSeg's memory alone separates good from defective images, by memory size (no decoder, no training).

The frozen encoder of the ``book`` profile (ImageNet EfficientNet-Lite0, 128 px) encodes the training images; a
seeded choice of N of them is the memory, as ``MemSeg.setup`` makes it. Each test image is scored by its distance
to the nearest memory image, ``min_n d_n`` with ``d_n = sum_l mean((x_l - m_{n,l})^2)`` (MemSeg's match), and by
the largest value of the difference map to that image (the three levels' channel means, upsampled and summed).
The image AUROC of both, per memory size::

    ADLEARN_LOCAL_DATA=../shared/data python benchmarks/bench_memseg_memory.py --data magnetic-tile --sizes 30 100 300 all
    python benchmarks/bench_memseg_memory.py --categories grass gravel --sizes 30 all
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn.functional as F
from _common import (add_dataset_arguments, benchmark_datasets, builtin_version_of, machine_description,  # noqa: E402
                     write_results)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--sizes", nargs="+", default=["30", "all"], help="memory sizes (an int or 'all')")
    parser.add_argument("--seed", type=int, default=0, help="the memory's seeded choice (MemSeg's seed + 2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from adlearn.methods import MemSeg
    from adlearn.methods.memseg import MemoryModule
    from adlearn.metrics import image_auroc
    from adlearn.train import stack_images

    torch.set_num_threads(args.threads)
    config = MemSeg.profile_config("book")
    model = MemSeg.from_profile("book").model.eval()

    @torch.no_grad()
    def memory_levels(dataset: Any) -> list[torch.Tensor]:
        """The three memory-level features of every image of ``dataset`` (what MemSeg.setup stores)."""
        return [torch.cat(level) for level in zip(*[model.memory_features(chunk) for chunk in stack_images(dataset).split(32)])]

    rows = []
    for name, train, test in benchmark_datasets(args.data, args.root, args.categories, config.image_size):
        start = time.perf_counter()
        train_features, test_features = memory_levels(train), memory_levels(test)
        labels = torch.tensor(test.labels).numpy()
        for size in args.sizes:
            count = len(train) if size == "all" else min(int(size), len(train))
            chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed + 2))[:count]
            memory = MemoryModule()
            memory.store([level[chosen] for level in train_features])
            with torch.no_grad():
                match = memory.select(test_features)
                difference_map = sum(F.interpolate(d.mean(dim=1, keepdim=True), size=config.image_size, mode="bilinear")
                                     for d in match.differences)
            row = {"data": name, "memory_images": count, "train_images": len(train),
                   "image_auroc_nearest_distance": round(image_auroc(match.distances.min(dim=1).values.numpy(), labels), 4),
                   "image_auroc_difference_max": round(image_auroc(difference_map.flatten(1).amax(dim=1).numpy(), labels), 4),
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(row, flush=True)

    print(f"\nMemSeg's memory alone (book encoder, {config.image_size} px), {machine_description(args.threads)}\n")
    print("| data | memory images (of) | image AUROC, nearest-memory distance | image AUROC, largest difference |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['data']} | {row['memory_images']} ({row['train_images']}) | {row['image_auroc_nearest_distance']:.3f} | "
              f"{row['image_auroc_difference_max']:.3f} |")
    result = {"machine": machine_description(args.threads), "builtin_version": builtin_version_of(args.data, args.root),
              "rows": rows}
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main()
