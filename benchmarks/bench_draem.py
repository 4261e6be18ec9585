"""DRÆM benchmarks: accuracy per category, training throughput with synthesis, inference latency.

Accuracy (train + evaluate each category of a profile's data set)::

    python benchmarks/bench_draem.py accuracy --profile book --threads 2
    python benchmarks/bench_draem.py accuracy --profile book --categories grass --set steps=800 --set lr=2e-3
    ADLEARN_LOCAL_DATA=../shared/data python benchmarks/bench_draem.py accuracy --profile book --data magnetic-tile

Speed (training images per second at 256x256 including anomaly synthesis, the
batched on-device synthesis of adlearn against the original design: per-sample
imgaug synthesis in DataLoader workers; and inference latency per image)::

    python benchmarks/bench_draem.py speed --threads 2 --workers 2

Results are printed as a Markdown table and, with ``--json PATH``, written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from _common import machine_description, write_results  # noqa: E402  (benchmarks/ is on the path when run as a script)


# --------------------------------------------------------------------------- accuracy


def run_accuracy(args: argparse.Namespace) -> dict[str, Any]:
    from adlearn.data import MagneticTile, MVTecAD, builtin_dataset_root, builtin_version
    from adlearn.methods.draem import DRAEM
    from adlearn.evaluation import collect_predictions, compute_metrics
    from adlearn.metrics import image_auroc_by_defect_type
    from adlearn.notebook import configuration
    from adlearn.profiles import parse_overrides, profile_settings

    settings = profile_settings(args.profile)
    overrides = parse_overrides(args.set)
    # the size the networks train at, merged as DRAEM.from_profile merges it (without building the networks)
    config = DRAEM.profile_config(args.profile, **overrides)
    image_size = config.image_size
    if args.data == "magnetic-tile":  # real photographs; a local copy (ADLEARN_LOCAL_DATA, data import) or --data-root
        root = args.data_root
    elif settings.dataset == "builtin":
        root = builtin_dataset_root()
    else:
        root = Path(args.data_root or os.environ.get("ADLEARN_MVTEC_ROOT", "data/mvtec_anomaly_detection"))
    categories = ["magnetic_tile"] if args.data == "magnetic-tile" else args.categories or list(settings.categories)
    save_paths = {c: Path(args.save_dir) / f"draem_{args.profile}_{c}.pt" for c in categories} if args.save_dir else {}
    taken = [str(path) for path in save_paths.values() if path.exists()]
    if taken:  # say so before hours of training, not after
        raise SystemExit(f"--save-dir would replace {', '.join(taken)}; choose another folder or move them.")
    rows = []
    for category in categories:
        eval_size = settings.image_size if args.eval_size is None else args.eval_size
        if args.data == "magnetic-tile":
            train = MagneticTile(root, "train", image_size=image_size)
            test = MagneticTile(root, "test", image_size=eval_size)
        else:
            train = MVTecAD(root, category, "train", image_size=image_size)
            test = MVTecAD(root, category, "test", image_size=eval_size)
        detector = DRAEM.from_profile(args.profile, **overrides)
        start = time.perf_counter()
        detector.fit(train, device=args.device, progress=args.progress)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        predictions = collect_predictions(detector, test)
        metrics = compute_metrics(predictions)
        eval_seconds = time.perf_counter() - start
        if args.save_dir:
            detector.save(save_paths[category])
        if args.repair and detector.reconstructive_net is not None:
            repair = measure_repair_of(detector, train)
        else:
            repair = {}
        final = detector.history.to_frame().tail(20).mean()
        row = {
            "category": category,
            # "data" and "seed" as bench_accuracy.py names them, so a chapter finds this run (other_seed_runs)
            "data": category,
            "seed": detector.config.seed,
            **{k: round(float(v), 4) for k, v in metrics.items()},
            "train_s": round(train_seconds, 1),
            "eval_s": round(eval_seconds, 1),
            "steps": len(detector.history),
            "final_focal": round(float(final.get("focal", float("nan"))), 4),
            "final_l2": round(float(final.get("l2", float("nan"))), 4),
            "image_auroc_by_type": {k: round(v, 3) for k, v in image_auroc_by_defect_type(predictions).items()},
            **({"repair": repair} if repair else {}),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    header = "| category | image AUROC | pixel AUROC | AUPRO | pixel AP | image AUROC per defect type | train s |"
    print(f"\nDRAEM, profile {args.profile}, overrides {overrides}, {machine_description(torch.get_num_threads())}\n")
    print(header)
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        by_type = ", ".join(f"{name} {value:.2f}" for name, value in row["image_auroc_by_type"].items())
        print(f"| {row['category']} | {row['image_auroc']:.3f} | {row['pixel_auroc']:.3f} | {row['aupro']:.3f} | "
              f"{row['pixel_ap']:.3f} | {by_type} | {row['train_s']:.0f} |")
    # every hyper-parameter but the seed, so a chapter can tell which results share its configuration
    return {"method": DRAEM.name, "profile": args.profile, "overrides": overrides, "hparams": configuration(config),
            "builtin_version": builtin_version(root) if args.data != "magnetic-tile" and settings.dataset == "builtin" else None,
            "machine": machine_description(torch.get_num_threads()), "rows": rows}


def measure_repair_of(detector: Any, train: Any) -> dict[str, float]:
    """Does the reconstruction repair? ``measure_repair`` on the held-out normal training images (4 draws each),
    as chapter 3 measures it (its summary includes the reconstruction's SSIM outside the masks: how well it
    reproduces normal appearance at all)."""
    from adlearn.methods.base import held_out_split
    from adlearn.methods.draem import measure_repair

    _, held_out = held_out_split(len(train), detector.config.held_out_fraction, seed=detector.config.seed)
    clean = torch.stack([train[int(i)]["image"] for i in held_out]).repeat(4, 1, 1, 1)
    synthesizer = detector.build_synthesizer(verbose=False, anomaly_probability=1.0)
    report = measure_repair(detector, clean, synthesizer, torch.Generator().manual_seed(detector.config.seed + 7))
    return {**{k: round(v, 4) for k, v in report.summary().items()}, "repairs": report.repairs}


# --------------------------------------------------------------------------- speed


class OriginalDesignDataset(Dataset):
    """The reference code's training data path: read files, rotate, synthesise one sample at a time.

    Per item (as ``MVTecDRAEMTrainDataset.__getitem__``): read a training image
    and a texture file with OpenCV and resize them, rotate the image by up to
    90 degrees with probability 0.3 (imgaug), then run the per-sample imgaug
    anomaly simulator (:func:`adlearn.simulation.reference.draem_reference`).
    """

    def __init__(self, image_paths: list[Path], texture_paths: list[Path], size: int, length: int) -> None:
        self.image_paths = image_paths
        self.texture_paths = texture_paths
        self.size = size
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from adlearn.compat import import_imgaug
        from adlearn.simulation.reference import draem_reference

        iaa = import_imgaug()
        rng = np.random.default_rng([index, os.getpid()])
        image = cv2.resize(cv2.imread(str(self.image_paths[rng.integers(len(self.image_paths))])), (self.size, self.size))
        if rng.random() > 0.7:
            image = iaa.Affine(rotate=(-90, 90), seed=int(rng.integers(2**31 - 1)))(image=image)
        texture = cv2.resize(cv2.imread(str(self.texture_paths[rng.integers(len(self.texture_paths))])), (self.size, self.size))
        sample = draem_reference(image[..., ::-1].astype(np.float32) / 255.0, texture[..., ::-1].copy(), rng)
        return {
            "image": torch.from_numpy(image[..., ::-1].astype(np.float32) / 255.0).permute(2, 0, 1),
            "augmented_image": torch.from_numpy(sample.image).permute(2, 0, 1),
            "anomaly_mask": torch.from_numpy(sample.mask)[None],
        }


def _write_texture_files(folder: Path, count: int, size: int) -> list[Path]:
    from adlearn.data.textures import load_texture_images

    textures = load_texture_images(image_size=size, count=count, dtype=torch.uint8, verbose=False)
    paths = []
    for index, texture in enumerate(textures):
        path = folder / f"texture_{index:03d}.jpg"
        cv2.imwrite(str(path), texture.permute(1, 2, 0).numpy()[..., ::-1])
        paths.append(path)
    return paths


def _time_loop(step, warmup: int, repeats: int, device: torch.device) -> float:
    """Seconds per call of ``step`` (after ``warmup`` calls), synchronising CUDA."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def run_speed(args: argparse.Namespace) -> dict[str, Any]:
    from adlearn.data import MVTecAD, builtin_dataset_root
    from adlearn.data.textures import load_texture_images
    from adlearn.methods.draem import DRAEM
    from adlearn.simulation import DraemSynthesizer

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size, batch_size = args.size, 8
    widths_of = {name: (DRAEM.PROFILES[name]["reconstructive_width"], DRAEM.PROFILES[name]["discriminative_width"])
                 for name in ("paper", "book")}
    train_widths = (args.reconstructive_width or widths_of["book"][0], args.discriminative_width or widths_of["book"][1])
    root = builtin_dataset_root()
    image_paths = [Path(p) for p in MVTecAD(root, "grass", "train", image_size=size).paths]
    results: dict[str, Any] = {"machine": machine_description(torch.get_num_threads()), "device": str(device), "size": size}

    # 1. synthesis alone: batched on the device vs. the original per-sample design in workers
    train = MVTecAD(root, "grass", "train", image_size=size)
    images = torch.stack([train[i]["image"] for i in range(len(train))]).to(device)
    synthesizer = DraemSynthesizer(load_texture_images(image_size=size, count=48, dtype=torch.uint8, verbose=False))
    generator = torch.Generator().manual_seed(0)
    order = torch.Generator().manual_seed(1)

    def batched_synthesis() -> Any:
        batch = images[torch.randint(len(images), (batch_size,), generator=order).to(device)]
        return synthesizer(batch, generator)

    seconds = _time_loop(batched_synthesis, 2, args.repeats, device)
    results["synthesis_batched_images_per_s"] = batch_size / seconds

    with tempfile.TemporaryDirectory() as folder:
        texture_paths = _write_texture_files(Path(folder), 48, size)
        dataset = OriginalDesignDataset(image_paths, texture_paths, size, length=batch_size * (args.repeats + 2))
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=args.workers,
                            persistent_workers=False, pin_memory=device.type == "cuda")
        start = None
        for index, batch in enumerate(loader):
            if index == 2:  # workers started, first batches out
                start = time.perf_counter()
            batch["augmented_image"].to(device)
        results["synthesis_original_images_per_s"] = batch_size * args.repeats / (time.perf_counter() - start)

        # 2. training steps (synthesis + forward + backward + Adam) at the chosen widths, timed after a warm-up
        warmup, timed = 2, args.train_steps
        detector = DRAEM(image_size=size, reconstructive_width=train_widths[0],
                         discriminative_width=train_widths[1], steps=warmup + timed, batch_size=batch_size)
        stamps: list[float] = []

        def stamp(step: int, history: Any) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

        detector.synthesizer = synthesizer
        detector.fit(images, device=device, progress=False, callback=stamp)
        results["train_batched_images_per_s"] = batch_size * timed / (stamps[-1] - stamps[warmup - 1])

        # the same networks and losses fed by the original data path (DataLoader workers, per-sample synthesis)
        from adlearn.nn import SSIMLoss, focal_loss

        reconstructive = detector.reconstructive_net.to(device).train()
        discriminative = detector.discriminative_net.to(device).train()
        optimizer = torch.optim.Adam(list(reconstructive.parameters()) + list(discriminative.parameters()), lr=1e-4)
        ssim_loss = SSIMLoss()
        dataset = OriginalDesignDataset(image_paths, texture_paths, size, length=batch_size * (warmup + timed))
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=args.workers, pin_memory=device.type == "cuda")
        start = None
        for index, batch in enumerate(loader):
            if index == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            clean = batch["image"].to(device, non_blocking=True)
            augmented = batch["augmented_image"].to(device, non_blocking=True)
            mask = batch["anomaly_mask"].to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
                reconstruction = reconstructive(augmented)
                logits = discriminative(torch.cat((reconstruction, augmented), dim=1))
            reconstruction = reconstruction.float()
            loss = torch.nn.functional.mse_loss(reconstruction, clean) + ssim_loss(reconstruction, clean) + focal_loss(logits, mask)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            float(loss.detach())  # the reference loop logs the losses, which waits for the step
        if device.type == "cuda":
            torch.cuda.synchronize()
        results["train_original_images_per_s"] = batch_size * timed / (time.perf_counter() - start)
        results["train_widths"] = list(train_widths)

    # 3. inference latency per image (batch of one) at the paper's widths and at the book profile's
    image = images[:1].to(device)
    for name, widths in widths_of.items():
        model = DRAEM(image_size=size, reconstructive_width=widths[0], discriminative_width=widths[1]).to(device)
        seconds = _time_loop(lambda: model.predict(image), 1, args.latency_repeats, device)
        results[f"latency_ms_per_image_{name}_widths"] = 1000 * seconds
        results[f"latency_{name}_widths"] = list(widths)

    print(f"\nDRAEM speed, {results['machine']}, device {device}, {size}x{size}, batch {batch_size}\n")
    print(f"synthesis only, batched on {device}:                 {results['synthesis_batched_images_per_s']:.1f} images/s")
    print(f"synthesis only, original (per sample, {args.workers} workers):  {results['synthesis_original_images_per_s']:.1f} images/s")
    print(f"training incl. synthesis, batched (widths {train_widths[0]}/{train_widths[1]}): "
          f"{results['train_batched_images_per_s']:.2f} images/s")
    print(f"training incl. synthesis, original design:            {results['train_original_images_per_s']:.2f} images/s")
    for name in ("paper", "book"):
        widths = "/".join(map(str, results[f"latency_{name}_widths"]))
        print(f"inference latency, {name} widths {widths}, batch 1:       {results[f'latency_ms_per_image_{name}_widths']:.1f} ms/image")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    accuracy = sub.add_parser("accuracy", help="train and evaluate per category")
    accuracy.add_argument("--profile", default="book")
    accuracy.add_argument("--categories", nargs="*")
    accuracy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyper-parameter")
    accuracy.add_argument("--eval-size", type=int, default=None, help="test image size (default: the profile's)")
    accuracy.add_argument("--data-root", default=None, help="MVTec AD root for the paper profile, or the MTD folder")
    accuracy.add_argument("--data", choices=["profile", "magnetic-tile"], default="profile",
                          help="the profile's data set, or Magnetic Tile Defects")
    accuracy.add_argument("--progress", action="store_true")
    accuracy.add_argument("--save-dir", default=None, help="save each trained detector here")
    accuracy.add_argument("--repair", action="store_true",
                          help="also measure whether the reconstruction repairs synthetic anomalies (chapter 3)")
    speed = sub.add_parser("speed", help="training throughput and inference latency")
    speed.add_argument("--size", type=int, default=256)
    speed.add_argument("--workers", type=int, default=2, help="DataLoader workers of the original design")
    speed.add_argument("--repeats", type=int, default=10, help="batches timed for synthesis alone")
    speed.add_argument("--train-steps", type=int, default=3, help="training steps timed per design")
    speed.add_argument("--reconstructive-width", type=int, default=None, help="default: the book profile's")
    speed.add_argument("--discriminative-width", type=int, default=None, help="default: the book profile's")
    speed.add_argument("--latency-repeats", type=int, default=3)
    for sub_parser in (accuracy, speed):
        sub_parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
        sub_parser.add_argument("--device", default=None)
        sub_parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = run_accuracy(args) if args.mode == "accuracy" else run_speed(args)
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
