"""Perlin noise maps per second: adlearn's batched torch path vs the ``noise`` package's ``pnoise2`` pixel loop.

The loop is how Perlin noise is often written in Python (one ``pnoise2(x / s, y / s)``
call per pixel, the loop in Python, the noise in C). Both sides make maps of the
same lattice: ``res`` cells per axis, i.e. ``pnoise2`` at scale ``size / res``;
maps differ by ``pnoise2``'s ``base`` (its permutation table) and by torch's random
gradients. A second torch row uses DRÆM's lattices (``2^k`` cells per axis,
``k`` in ``[0, 6)``, different per map), which pad every map to the largest lattice.

Usage::

    python benchmarks/bench_perlin.py                   # 64 maps of 256 x 256, 2 threads
    python benchmarks/bench_perlin.py --threads 1 --device cuda

Times are the median (and best) of ``--repeats`` runs after a warm-up; the loop
makes ``--loop-maps`` maps per run (it takes the same time per map, whatever the
batch) and its rate is reported per map. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(run: Callable[[], object], repeats: int, synchronize: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Median and best wall time of ``run`` over ``repeats`` runs, after one warm-up."""
    run()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def pnoise2_maps(count: int, size: int, res: int) -> list[list[list[float]]]:
    """``count`` maps with the per-pixel loop; map ``i`` uses ``base=i``."""
    from noise import pnoise2

    scale = size / res
    return [[[pnoise2(x / scale, y / scale, base=index) for x in range(size)] for y in range(size)] for index in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maps", type=int, default=64, help="maps per torch batch")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--res", type=int, default=8, help="lattice cells per axis for the like-for-like rows")
    parser.add_argument("--loop-maps", type=int, default=4, help="maps per timed run of the pnoise2 loop")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the loop is single-threaded)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from adlearn.simulation.perlin import perlin_noise, random_lattice_resolution

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    shape = (args.size, args.size)

    loop_median, loop_best = timed(lambda: pnoise2_maps(args.loop_maps, args.size, args.res), max(1, args.repeats // 2))
    loop_rate = args.loop_maps / loop_median

    fixed_median, fixed_best = timed(
        lambda: perlin_noise(shape, (args.res, args.res), batch=args.maps, generator=generator, device=device),
        args.repeats,
        synchronize,
    )
    mixed_res = random_lattice_resolution(args.maps, generator=torch.Generator().manual_seed(1))
    mixed_median, mixed_best = timed(
        lambda: perlin_noise(shape, mixed_res, generator=generator, device=device), args.repeats, synchronize
    )

    where = f"{cpu_name()}, {args.threads} torch thread(s)" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"# {args.maps} maps of {args.size}x{args.size}; {where}; torch {torch.__version__}\n")
    print("| path | lattice | maps/s (median) | maps/s (best) | vs pnoise2 loop |")
    print("|---|---|---|---|---|")
    print(f"| `noise.pnoise2` pixel loop (1 thread) | {args.res}x{args.res} | {loop_rate:.2f} | {args.loop_maps / loop_best:.2f} | 1× |")
    print(
        f"| `perlin_noise` batch on {device.type} | {args.res}x{args.res} | {args.maps / fixed_median:.0f} | "
        f"{args.maps / fixed_best:.0f} | {args.maps / fixed_median / loop_rate:.0f}× |"
    )
    print(
        f"| `perlin_noise` batch on {device.type} | DRÆM 2^k per map | {args.maps / mixed_median:.0f} | "
        f"{args.maps / mixed_best:.0f} | {args.maps / mixed_median / loop_rate:.0f}× |"
    )


if __name__ == "__main__":
    main()
