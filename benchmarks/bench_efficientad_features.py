"""How much can EfficientAD's teacher tell? Nearest-neighbour image AUROC of patch features, no student.

EfficientAD's local map is the student's failure to imitate the teacher, so the
teacher's features bound what it can find. This scores each test image by the
largest distance of its patch features to the nearest of 20,000 random normal
training patches (3 x 3 averaged, standardised by the training images' channel
statistics), for three kinds of features at the ``book`` size (128 px; ``--image-size``
for another):

* ``teacher PATH``: a distilled teacher file (``random``: a random PDN), on the
  unpadded teacher's grid (24 x 24 at 128 px);
* ``targets``: the EfficientNet-Lite0 features the teacher is distilled to imitate
  (``--scale 2 --strides 4,8,16``: the image at twice its side, as in distillation),
  cut to the same interior; ``--scale 1 --strides 8,16`` is FeatureKNN's view.

    ADLEARN_LOCAL_DATA=../shared/data python benchmarks/bench_efficientad_features.py teacher data/checkpoints/efficientad_teacher_fc192c21a6.pt --data magnetic-tile
    python benchmarks/bench_efficientad_features.py targets --scale 2 --strides 4,8,16 --categories grass brick gravel
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _common import add_dataset_arguments, benchmark_datasets  # noqa: E402  (benchmarks/ is on the path when run as a script)

BANK_SIZE = 20_000


def nearest_neighbour_auroc(train_features: torch.Tensor, test_features: torch.Tensor, labels: torch.Tensor) -> float:
    """Image AUROC of the max over patches of the distance to the nearest of ``BANK_SIZE`` random training patches."""
    from adlearn.metrics import image_auroc

    mean = train_features.mean((0, 2, 3), keepdim=True)
    std = train_features.std((0, 2, 3), keepdim=True)
    bank = ((train_features - mean) / std).permute(0, 2, 3, 1).reshape(-1, train_features.shape[1])
    bank = bank[torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))[:BANK_SIZE]]
    queries = ((test_features - mean) / std).permute(0, 2, 3, 1)
    count = queries.shape[0]
    queries = queries.reshape(-1, queries.shape[-1])
    distances = torch.cat([torch.cdist(chunk, bank).amin(1) for chunk in queries.split(4096)]).view(count, -1)
    return image_auroc(distances.amax(1).numpy(), labels.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("features", choices=["teacher", "targets"])
    parser.add_argument("teacher_path", nargs="?", default="random")
    add_dataset_arguments(parser)
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--strides", default="4,8,16")
    parser.add_argument("--image-size", type=int, default=128, help="side the images are resized to")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from adlearn.methods.efficientad import EfficientAD
    from adlearn.methods.efficientad_teacher import distillation_targets, load_teacher_file
    from adlearn.nn.backbones import FeatureExtractor

    if args.features == "teacher":
        detector = EfficientAD.from_profile("book", teacher="random")
        if args.teacher_path != "random":
            load_teacher_file(args.teacher_path, detector.teacher)
        teacher = detector.teacher.eval()
        describe, label = teacher, f"teacher {args.teacher_path}"
    else:
        strides = tuple(int(s) for s in args.strides.split(","))
        extractor = FeatureExtractor("efficientnet_lite0", strides=strides, weights="imagenet").eval()
        grid = args.image_size // 4

        def describe(images: torch.Tensor) -> torch.Tensor:
            if args.scale != 1:
                images = F.interpolate(images, scale_factor=args.scale, mode="bilinear", align_corners=False)
            return distillation_targets(extractor, images, grid, 128)[:, :, 4:-4, 4:-4]  # the unpadded grid

        label = f"targets, scale {args.scale}, strides {strides}"
    for name, train, test in benchmark_datasets(args.data, args.root, args.categories, args.image_size):
        def features(dataset):
            parts, labels = [], []
            with torch.no_grad():
                for batch in torch.utils.data.DataLoader(dataset, batch_size=32):
                    described = describe(batch["image"])
                    # the targets are 3 x 3 averaged already (distillation_targets); the teacher's output is not
                    parts.append(F.avg_pool2d(described, 3, 1, 1) if args.features == "teacher" else described)
                    labels.append(batch["label"])
            return torch.cat(parts), torch.cat(labels)

        train_features, _ = features(train)
        test_features, labels = features(test)
        print(f"{name} | {args.image_size} px | {label} | NN image AUROC {nearest_neighbour_auroc(train_features, test_features, labels):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
