"""Does DRÆM's reconstructive network learn to repair? Its repair measured during training.

Trains the reconstructive sub-network alone (L2 + SSIM on DRÆM's synthetic
anomalies: ``reconstruction_warmup_steps = steps``) and every ``--every``
steps measures, as chapter 3's ``measure_repair`` does, inside each synthetic
mask the L1 and SSIM of the corrupted input and of its reconstruction against
the clean image, plus the reconstruction's SSIM outside the masks. It does so
twice: on the held-out normal training images (unseen, as test images are)
and on as many images the network trains on, so the gap between the two says
how much of the sharpness is memorised.

    ADLEARN_LOCAL_DATA=../shared/data OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_draem_repair.py \\
        --category grass --steps 1000 --every 250 --threads 1 --json benchmarks/results/draem_repair_curve_w16.json

The paper's reconstructive width (128) at 256 px is a GPU's job (not run here yet)::

    python benchmarks/bench_draem_repair.py --category grass --steps 20000 --every 2000 --device cuda \
        --set image_size=256 --set reconstructive_width=128 --json benchmarks/results/draem_repair_curve_grass_paper_width.json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from _common import machine_description, write_results  # noqa: E402  (benchmarks/ is on the path when run as a script)


def repair_row(network: torch.nn.Module, clean: torch.Tensor, synthesizer: Any, seed: int) -> dict[str, float]:
    """``repair_report`` of ``network``'s reconstruction (it is still training, so the detector's ``inspect``
    cannot be used)."""
    from adlearn.methods.draem import repair_report

    synthetic = synthesizer(clean, torch.Generator().manual_seed(seed))
    keep = synthetic.masks.flatten(1).sum(dim=1) > 0
    corrupted, masks, clean = synthetic.images[keep], synthetic.masks[keep], clean[keep]
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    with torch.no_grad():
        reconstruction = torch.cat([network(chunk.to(device)).float().clamp(0, 1).cpu() for chunk in corrupted.split(16)])
    network.train(was_training)
    report = repair_report(clean, corrupted, reconstruction, masks)
    return {
        "l1_input": report.l1_input.mean().item(),
        "l1_reconstruction": report.l1_reconstruction.mean().item(),
        "ssim_input": report.ssim_input.mean().item(),
        "ssim_reconstruction": report.ssim_reconstruction.mean().item(),
        "share_repaired_ssim": (report.ssim_reconstruction > report.ssim_input).float().mean().item(),
        "ssim_outside": report.ssim_outside.mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--category", default="grass")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--draws", type=int, default=4, help="synthetic anomalies per image")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="where to train (default: CUDA if available, else CPU)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a DRÆM hyper-parameter")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from adlearn.data import MVTecAD, builtin_dataset_root
    from adlearn.methods.base import held_out_split
    from adlearn.methods.draem import DRAEM
    from adlearn.profiles import parse_overrides

    overrides = parse_overrides(args.set)
    detector = DRAEM.from_profile("book", **{**overrides, "reconstruction_warmup_steps": args.steps, "steps": args.steps})
    c = detector.config
    train = MVTecAD(builtin_dataset_root(), args.category, "train", image_size=c.image_size)
    trained_on, held_out = held_out_split(len(train), c.held_out_fraction, seed=c.seed)
    unseen = torch.stack([train[int(i)]["image"] for i in held_out])
    seen = torch.stack([train[int(i)]["image"] for i in trained_on[: len(unseen)]])
    unseen, seen = unseen.repeat(args.draws, 1, 1, 1), seen.repeat(args.draws, 1, 1, 1)
    synthesizer = detector.build_synthesizer(verbose=False, anomaly_probability=1.0)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()

    def measure(done: int, history: Any) -> None:
        if done % args.every and done != args.steps:
            return
        row: dict[str, Any] = {"step": done, "seconds": round(time.perf_counter() - start, 1),
                               "training_loss": round(float(history.to_frame().tail(20)["loss"].mean()), 4)}
        for name, images in (("held_out", unseen), ("trained_on", seen)):
            row[name] = {k: round(v, 4) for k, v in repair_row(detector.reconstructive_net, images, synthesizer, c.seed + 7).items()}
        rows.append(row)
        print(json.dumps(row), flush=True)

    detector.fit(train, device=args.device, progress=False, callback=measure)
    result = {"category": args.category, "overrides": overrides, "config": {"reconstructive_width": c.reconstructive_width,
              "image_size": c.image_size, "train_crop": c.train_crop, "batch_size": c.batch_size, "lr": c.lr},
              "machine": machine_description(torch.get_num_threads()), "rows": rows}
    print(f"\n{result['machine']}\n| step | SSIM in mask: input | reconstruction (held out) | (trained on) | "
          "SSIM outside (held out) | (trained on) | L1 in mask: input | reconstruction |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        h, t = row["held_out"], row["trained_on"]
        print(f"| {row['step']} | {h['ssim_input']:.3f} | {h['ssim_reconstruction']:.3f} | {t['ssim_reconstruction']:.3f} | "
              f"{h['ssim_outside']:.3f} | {t['ssim_outside']:.3f} | {h['l1_input']:.3f} | {h['l1_reconstruction']:.3f} |")
    if args.json:
        write_results(args.json, result)


if __name__ == "__main__":
    main()
