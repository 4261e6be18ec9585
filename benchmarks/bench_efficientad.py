"""EfficientAD benchmark: latency per image (ours in each execution mode, and anomalib's), and training speed.

1. **Latency** (``latency``): EfficientAD-S as in the paper (PDN-S 128-256-256-384,
   student 768 channels, the autoencoder), 256 x 256, batch 1, measured the paper's
   way: ``--runs`` timed runs after ``--warmup`` discarded ones; mean, median, p90
   and p99 in milliseconds. Ours is ``detector.predict`` (input check, the three
   networks, normalised maps padded and upsampled to 256 px, the score) in each
   memory layout (networks and input alike): ``contiguous`` (PyTorch's default),
   ``channels_last``, and ``compile`` (``torch.compile`` of the three networks,
   in ``predict``'s layout); ``predict_layout`` says which layout ``predict``
   uses on the CPU (``adlearn.methods.efficientad.CPU_MEMORY_FORMAT``, chosen by
   this measurement). Anomalib's is ``EfficientAdModel`` (anomalib's torch model,
   same architecture) in eval mode with **the same weights** copied into it,
   run in anomalib's own environment (``benchmarks/.venv-anomalib``, as
   ``bench_aupro.py``), same thread count, same input, measured the same way.
   The weights are random (latency does not depend on their values), the map
   quantiles set so both normalise.
2. **Where the time goes** (``profile``): each network's share of one ``predict``.
3. **Training** (``train``): optimiser steps per second and images per second of
   our training step (student, autoencoder, penalty; Adam) at batch 1 and 8,
   and of anomalib's ``EfficientAdModel`` training step (its three losses,
   summed, Adam on student and autoencoder) at batch 1, the size anomalib's
   Lightning module forces.

Commands::

    python -m venv benchmarks/.venv-anomalib && benchmarks/.venv-anomalib/bin/pip install anomalib
    python benchmarks/bench_efficientad.py --threads 2 --json benchmarks/results/efficientad_speed.json
    python benchmarks/bench_efficientad.py --device cuda --runs 1000      # GPU: predict runs in float16 there
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_ANOMALIB_PYTHON = HERE / ".venv-anomalib" / "bin" / "python"


def summarize(times_s: list[float]) -> dict[str, float]:
    """Mean, median, p90 and p99 of ``times_s`` in milliseconds."""
    ordered = sorted(t * 1000 for t in times_s)
    pick = lambda q: ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]  # noqa: E731
    return {"mean_ms": statistics.mean(ordered), "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99),
            "runs": len(ordered)}


def time_calls(function: Callable[[], Any], runs: int, warmup: int, device: str) -> dict[str, float]:
    """Time ``function()`` ``runs`` times after ``warmup`` discarded calls (synchronising CUDA around each)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        function()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return summarize(times)


# --------------------------------------------------------------------------- ours


def paper_detector(device: str, model_size: str = "small"):
    """An EfficientAD-S (or M) at the paper's size, random weights, marked fitted with set quantiles."""
    from adlearn.methods import EfficientAD

    detector = EfficientAD.from_profile("paper", teacher="random", model_size=model_size)
    statistics_ = detector.networks["teacher_statistics"]
    statistics_["mean"] = torch.zeros(1, detector.out_channels, 1, 1)
    statistics_["std"] = torch.ones(1, detector.out_channels, 1, 1)
    for name, value in (("local_low", 0.0), ("local_high", 1.0), ("global_low", 0.0), ("global_high", 1.0)):
        detector.calibration[name] = torch.tensor(value)
    detector.fitted = True
    return detector.to(device)


def layout_name(memory_format: torch.memory_format) -> str:
    return "channels_last" if memory_format == torch.channels_last else "contiguous"


def anomalib_state_dict(detector) -> dict[str, torch.Tensor]:
    """Our networks' weights renamed to anomalib's ``EfficientAdModel`` layout (same architecture, other names)."""
    state = {}
    for network in ("teacher", "student"):
        for key, value in detector.networks[network].state_dict().items():
            state[f"{network}.{key}"] = value.contiguous()
    encoder = [m for m in detector.autoencoder.encoder if isinstance(m, torch.nn.Conv2d)]
    for index, conv in enumerate(encoder, start=1):
        state[f"ae.encoder.enconv{index}.weight"], state[f"ae.encoder.enconv{index}.bias"] = conv.weight, conv.bias
    decoder = list(detector.autoencoder.decoder_convs) + [detector.autoencoder.head[0], detector.autoencoder.head[2]]
    for index, conv in enumerate(decoder, start=1):
        state[f"ae.decoder.deconv{index}.weight"], state[f"ae.decoder.deconv{index}.bias"] = conv.weight, conv.bias
    state["mean_std.mean"] = detector.networks["teacher_statistics"]["mean"]
    state["mean_std.std"] = detector.networks["teacher_statistics"]["std"]
    for ours, theirs in (("local_low", "qa_st"), ("local_high", "qb_st"), ("global_low", "qa_ae"),
                         ("global_high", "qb_ae")):
        state[f"quantiles.{theirs}"] = detector.calibration[ours]
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def measure_ours(args) -> dict[str, Any]:
    from adlearn.methods import efficientad

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = torch.rand(1, 3, 256, 256)
    results: dict[str, Any] = {"predict_layout": layout_name(efficientad.CPU_MEMORY_FORMAT)}
    detector = paper_detector(args.device)
    default_layout = efficientad.CPU_MEMORY_FORMAT
    # each layout as predict runs it: networks and inputs in that layout (on the CPU; CUDA always computes
    # channels-last, so there the two eager rows time the same path)
    modes = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last, "compile": default_layout}
    try:
        for mode, layout in modes.items():
            efficientad.CPU_MEMORY_FORMAT = layout
            detector.to(args.device)
            networks = {name: detector.networks[name] for name in ("teacher", "student", "autoencoder")}
            if mode == "compile":
                for name, module in networks.items():
                    detector.networks[name] = torch.compile(module)
            try:
                results[mode] = time_calls(lambda: detector.predict(image), args.runs, args.warmup, args.device)
            except Exception as error:  # torch.compile needs a C++ compiler; say so rather than stop
                results[mode] = {"error": f"{type(error).__name__}: {error}"[:300]}
            for name, module in networks.items():
                detector.networks[name] = module
    finally:
        efficientad.CPU_MEMORY_FORMAT = default_layout
    detector.to(args.device)
    # where the time goes: each network alone on the same input, in predict's layout
    prepared = image.to(args.device).contiguous(memory_format=detector.memory_format)
    with torch.no_grad():
        results["parts"] = {
            name: time_calls(lambda: detector.networks[name](prepared), max(5, args.runs // 4), 2, args.device)["mean_ms"]
            for name in ("teacher", "student", "autoencoder")
        }
    return results


def train_speed_ours(args, batch_size: int) -> dict[str, float]:
    from adlearn.methods import EfficientAD

    torch.set_num_threads(args.threads)
    images = torch.rand(16, 3, 256, 256)
    detector = EfficientAD.from_profile("paper", teacher="random", batch_size=batch_size, penalty_count=16,
                                        penalty_root=None)
    stamps: list[float] = []
    detector.fit(images, steps=args.train_steps + 1, progress=False, device=args.device,
                 callback=lambda step, history: stamps.append(time.perf_counter()))
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # the first step is left out
    return {"steps_per_s": 1 / per_step, "images_per_s": batch_size / per_step, "batch_size": batch_size}


# --------------------------------------------------------------------------- anomalib (run in its own environment)


def measure_anomalib(args) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = torch.rand(1, 3, 256, 256)
    model = EfficientAdModel(teacher_out_channels=384, model_size="small", padding=False, pad_maps=True)
    state = torch.load(args.weights, map_location="cpu")
    model.load_state_dict(state, strict=True)
    model = model.to(args.device).eval()
    image = image.to(args.device)
    results: dict[str, Any] = {}
    with torch.no_grad():
        results["eager"] = time_calls(lambda: model(image), args.runs, args.warmup, args.device)
    # training step at batch 1, as anomalib's Lightning module trains
    model.train()
    optimizer = torch.optim.Adam(list(model.student.parameters()) + list(model.ae.parameters()), lr=1e-4,
                                 weight_decay=1e-5)
    batch, penalty = torch.rand(1, 3, 256, 256).to(args.device), torch.rand(1, 3, 256, 256).to(args.device)

    def step() -> None:
        loss_st, loss_ae, loss_stae = model(batch, penalty)
        optimizer.zero_grad()
        (loss_st + loss_ae + loss_stae).backward()
        optimizer.step()

    timing = time_calls(step, args.train_steps, 1, args.device)
    results["train"] = {"steps_per_s": 1000 / timing["mean_ms"], "images_per_s": 1000 / timing["mean_ms"],
                        "batch_size": 1}
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--parts", nargs="+", default=["latency", "train"], choices=["latency", "train"])
    parser.add_argument("--anomalib-python", default=str(DEFAULT_ANOMALIB_PYTHON))
    parser.add_argument("--measure", choices=["both", "anomalib"], default="both", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    if args.measure == "anomalib":  # the half that runs in anomalib's environment
        print(json.dumps(measure_anomalib(args)))
        return {}

    from _common import machine_description, write_results  # noqa: E402  (benchmarks/ is on the path)

    result: dict[str, Any] = {"machine": machine_description(args.threads), "device": args.device,
                              "runs": args.runs, "warmup": args.warmup}
    if "latency" in args.parts:
        result["ours"] = measure_ours(args)
    if "train" in args.parts:
        result["ours_train"] = [train_speed_ours(args, 1), train_speed_ours(args, 8)]
    if Path(args.anomalib_python).exists():
        with tempfile.TemporaryDirectory() as folder:
            weights = Path(folder) / "weights.pt"
            torch.save(anomalib_state_dict(paper_detector("cpu")), weights)
            command = [args.anomalib_python, __file__, "--measure", "anomalib", "--weights", str(weights),
                       "--threads", str(args.threads), "--device", args.device, "--runs", str(args.runs),
                       "--warmup", str(args.warmup), "--train-steps", str(args.train_steps)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result["anomalib"] = json.loads(output.strip().splitlines()[-1])
    else:
        result["anomalib"] = f"not measured: no anomalib environment at {args.anomalib_python}"
    print(json.dumps(result, indent=1))
    ours, theirs = result.get("ours", {}), result.get("anomalib", {})
    if "predict_layout" in ours:
        timed = {mode: v["mean_ms"] for mode, v in ours.items() if isinstance(v, dict) and "mean_ms" in v}
        line = ", ".join(f"{mode} {ms:.1f} ms" for mode, ms in timed.items())
        print(f"\nlatency, batch 1, 256 px, mean: ours {line} (predict computes {ours['predict_layout']} on the CPU)")
        if isinstance(theirs, dict) and ours["predict_layout"] in timed:
            mine = timed[ours["predict_layout"]]
            print(f"anomalib {theirs['eager']['mean_ms']:.1f} ms; ratio of predict's layout to anomalib "
                  f"{mine / theirs['eager']['mean_ms']:.2f}")
    write_results(args.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
