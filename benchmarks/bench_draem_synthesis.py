"""Training samples per second: the batched anomaly makers vs the papers' per-sample pipelines.

For DRÆM (the benchmark of record), MemSeg and CutPaste 3-way: the batched
torch maker of :mod:`adlearn.simulation` on a whole batch, against the
reference pipeline of :mod:`adlearn.simulation.reference` (imgaug / OpenCV / PIL,
one image at a time, as the original data loaders run). Both sides start from
images and textures already in memory (no disk reads) at the same size; a
second DRÆM row lets the reference read and decode one texture file per sample,
as DRÆM's data loader does (the batched maker keeps its textures in memory).

Usage::

    python benchmarks/bench_draem_synthesis.py                  # 256 x 256, batch 8, 2 threads
    python benchmarks/bench_draem_synthesis.py --device cuda    # batched path on a GPU

Each measurement averages one pass of the per-image loop over the batch, or
``--calls`` calls of the batched maker (so the batched figure covers batches
with few and many anomalies); the table gives the median and the best of
``--repeats`` measurements, after a warm-up.
Prints a Markdown table; DTD is used when present, else the offline stand-in textures.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch


def timed(
    run: Callable[[], object], repeats: int, synchronize: Callable[[], None] = lambda: None, calls: int = 1
) -> tuple[float, float]:
    """Median and best time per call of ``run``, each measurement averaging ``calls`` calls (after a warm-up)."""
    run()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        synchronize()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--textures", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="measurements per path")
    parser.add_argument("--calls", type=int, default=20, help="batched calls averaged in one measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--makers", default="draem,memseg,cutpaste")
    args = parser.parse_args()

    from adlearn.data.textures import fallback_textures, load_texture_images
    from adlearn.simulation import DraemSynthesizer, MemSegSynthesizer, cutpaste_3way
    from adlearn.simulation.reference import (
        cutpaste_reference,
        cutpaste_scar_reference,
        draem_reference,
        memseg_reference,
    )

    from bench_perlin import cpu_name

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    textures = load_texture_images(image_size=args.size, count=args.textures, seed=0)
    images = fallback_textures(args.batch, args.size, seed=123)  # stand-in "normal" images
    images_device, textures_device = images.to(device), textures.to(device)

    # The reference side works on uint8 HWC arrays, as the original loaders hold them.
    image_arrays = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    texture_arrays = (textures.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    rng = np.random.default_rng(0)

    def draem_loop() -> None:
        for image in image_arrays:
            draem_reference(image.astype(np.float32) / 255.0, texture_arrays[rng.integers(len(texture_arrays))], rng)

    # DRÆM's loader also reads and decodes one texture file per sample (cv2.imread of a
    # DTD JPEG, then resize); a second reference row includes that, with the textures
    # written as 512 x 384 JPEG files (a typical DTD size).
    texture_folder = Path(tempfile.mkdtemp(prefix="bench_textures_"))
    texture_files = []
    for index, array in enumerate(texture_arrays):
        path = texture_folder / f"texture_{index:03d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(array, (512, 384)), cv2.COLOR_RGB2BGR))
        texture_files.append(str(path))

    def draem_loop_from_files() -> None:
        for image in image_arrays:
            texture = cv2.imread(texture_files[rng.integers(len(texture_files))])
            texture = cv2.resize(cv2.cvtColor(texture, cv2.COLOR_BGR2RGB), (args.size, args.size))
            draem_reference(image.astype(np.float32) / 255.0, texture, rng)

    def memseg_loop() -> None:
        for image in image_arrays:
            memseg_reference(image, texture_arrays[rng.integers(len(texture_arrays))], rng)

    def cutpaste_loop() -> None:
        for image in image_arrays:  # 3-way: the image itself, a cut-paste and a scar version
            cutpaste_reference(image, rng)
            cutpaste_scar_reference(image, rng)

    generator = torch.Generator().manual_seed(0)
    draem = DraemSynthesizer(textures_device)
    memseg = MemSegSynthesizer(textures_device)
    makers = {
        "draem": ("DRÆM", draem_loop, lambda: draem(images_device, generator=generator), 1),
        "memseg": ("MemSeg", memseg_loop, lambda: memseg(images_device, generator=generator), 1),
        "cutpaste": ("CutPaste 3-way", cutpaste_loop, lambda: cutpaste_3way(images_device, generator=generator), 3),
    }
    where = f"{cpu_name()}, {args.threads} torch thread(s)" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"# {args.size}x{args.size}, batch {args.batch}; batched path on {device.type} ({where}); torch {torch.__version__}\n")
    print("| maker | reference samples/s (median, best) | batched samples/s (median, best) | speed-up (median) |")
    print("|---|---|---|---|")
    rows = []
    for key in args.makers.split(","):
        name, loop, batched, per_image = makers[key]
        rows.append((name, loop, batched, per_image))
        if key == "draem":
            rows.append(("DRÆM, reference reading texture files", draem_loop_from_files, batched, per_image))
    for name, loop, batched, per_image in rows:
        samples = args.batch * per_image
        ref_median, ref_best = timed(loop, args.repeats)
        bat_median, bat_best = timed(batched, args.repeats, synchronize, calls=args.calls)
        print(
            f"| {name} | {samples / ref_median:.1f}, {samples / ref_best:.1f} | "
            f"{samples / bat_median:.1f}, {samples / bat_best:.1f} | {ref_median / bat_median:.1f}× |"
        )
    shutil.rmtree(texture_folder)


if __name__ == "__main__":
    main()
