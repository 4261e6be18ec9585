"""Command line: ``python -m adlearn ...`` (or the ``adlearn`` script).

    python -m adlearn profiles                          # the run profiles and what they mean
    python -m adlearn methods                           # the registered methods
    python -m adlearn data build                        # generate the built-in data set
    python -m adlearn data list                         # which data sets are present, where, how many images
    python -m adlearn data import ../shared/data        # link local copies (MNIST, DTD, MTD, MVTec AD) into the data root
    python -m adlearn data download-mvtec --categories bottle carpet
    python -m adlearn fit draem --category brick --profile book --out models/draem_brick.pt
    python -m adlearn fit draem --category gravel --profile book --set steps=1800 --out models/draem_gravel.pt
    python -m adlearn fit feature_knn --category brick --profile book --out models/knn_brick.pt
    python -m adlearn evaluate draem models/draem_brick.pt --category brick
"""

from __future__ import annotations

import argparse
import json
import sys

from adlearn.profiles import PROFILE_NAMES, parse_overrides, profile_settings


def _dataset(category: str, split: str, image_size: int, profile: str, root: str | None):
    from adlearn.data import MVTecAD, builtin_dataset_root, default_data_root

    settings = profile_settings(profile)
    if root is None:
        root = builtin_dataset_root() if settings.dataset == "builtin" else default_data_root() / "mvtec_ad"
    return MVTecAD(root, category, split=split, image_size=image_size)


def _method_class(name: str):
    from adlearn import methods

    try:
        method = methods.get(name)
    except KeyError as error:
        raise SystemExit(error.args[0]) from None
    if method.INPUT_CHANNELS != 3:
        # AnoGAN learns one-channel digits, not MVTec-layout images; its chapter and
        # benchmarks/bench_anogan.py drive it on the one-class digit protocol.
        raise SystemExit(f"{name!r} is not trained on MVTec-layout images; see its chapter or benchmarks/bench_anogan.py.")
    return method


def _cmd_profiles(args: argparse.Namespace) -> int:
    for name in PROFILE_NAMES:
        settings = profile_settings(name)
        print(f"{name:6s} {settings.dataset:8s} {settings.image_size:4d}px  {settings.description}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from adlearn import methods

    for name in methods.available():
        method = methods.get(name)
        summary = (method.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {method.__name__:12s} {summary}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from adlearn.data import build_builtin_dataset, default_data_root, download_magnetic_tile, download_mvtec
    from adlearn.data.local import data_inventory, import_local_copies, shown_path

    if args.action == "build":
        print(build_builtin_dataset(root=args.root, seed=args.seed))
    elif args.action == "download-mvtec":  # without --root a complete local copy is used as it is
        print(download_mvtec(args.root, args.categories))
    elif args.action == "download-magnetic-tile":
        print(download_magnetic_tile(args.root))
    elif args.action == "import":
        if args.path is None:
            raise SystemExit("data import: name the folder to import from, e.g. "
                             "python -m adlearn data import ../shared/data")
        try:
            results = import_local_copies(args.path, args.root)
        except FileNotFoundError as error:
            raise SystemExit(f"data import: {error}") from None
        if not results:
            raise SystemExit(f"data import: no data set recognised in {args.path} (expected mnist/, dtd/, "
                             "magnetic-tile/, mvtec_ad/ or mvtec/ in it, or one of them itself).")
        for result in results:
            if result.linked:
                print(f"linked {result.name}: {result.link} -> {result.source.resolve()}")
            else:
                print(f"skipped {result.name}: {result.link} already exists; left as it is (not replaced)")
    else:  # list
        data_root = default_data_root()
        print(f"data root: {data_root}")
        entries = data_inventory()
        for entry in entries:
            print(f"{entry.name:14s} {shown_path(entry.path, data_root)}: {entry.summary}")
        if not entries:
            print("no data sets found (build the built-in one with: python -m adlearn data build)")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from adlearn.methods.base import check_save_path

    method = _method_class(args.method)
    try:
        detector = method.from_profile(args.profile, **parse_overrides(args.set))
    except ValueError as error:  # a malformed or unknown override: say so without a traceback
        raise SystemExit(f"fit {args.method}: {error}") from None
    size = detector.hparams.get("image_size", profile_settings(args.profile).image_size)
    train = _dataset(args.category, "train", size, args.profile, args.root)
    try:  # refuse before training, not after
        check_save_path(args.out, overwrite=args.overwrite)
    except FileExistsError:
        raise SystemExit(f"{args.out} already exists; choose another --out or add --overwrite to replace it.") from None
    except IsADirectoryError as error:
        raise SystemExit(str(error)) from None
    detector.fit(train, device=args.device, steps=args.steps)
    print(f"saved {detector.save(args.out, overwrite=args.overwrite)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from adlearn.evaluation import evaluate

    detector = _method_class(args.method).load(args.model)
    size = detector.hparams.get("image_size", profile_settings(args.profile).image_size)
    test = _dataset(args.category, "test", size, args.profile, args.root)
    results = evaluate(detector, test)
    print(json.dumps({k: v for k, v in results.items() if isinstance(v, (int, float))}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adlearn", description="adlearn: the book's companion package")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("profiles", help="list the run profiles").set_defaults(run=_cmd_profiles)
    commands.add_parser("methods", help="list the registered methods").set_defaults(run=_cmd_methods)

    data = commands.add_parser("data", help="build, download, import (link local copies) or list data sets")
    data.add_argument("action", choices=["build", "download-mvtec", "download-magnetic-tile", "import", "list"])
    data.add_argument("path", nargs="?", default=None, help="import: the folder holding local copies")
    data.add_argument("--root", default=None, help="where the data goes (default: adlearn's data folder)")
    data.add_argument("--seed", type=int, default=0, help="seed of the built-in data set")
    data.add_argument("--categories", nargs="+", default=None, help="MVTec AD categories to download")
    data.set_defaults(run=_cmd_data)

    for name, help_text, handler in (("fit", "train a method and save it", _cmd_fit),
                                     ("evaluate", "evaluate a saved method on a test split", _cmd_evaluate)):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("method", help="method name: python -m adlearn methods lists them")
        if name == "evaluate":
            sub.add_argument("model", help="file written by fit / Detector.save")
        sub.add_argument("--category", required=True)
        sub.add_argument("--profile", choices=PROFILE_NAMES, default=None)
        sub.add_argument("--root", default=None, help="MVTec-layout root (default: the profile's data set)")
        if name == "fit":
            sub.add_argument("--out", required=True, help="where to save the trained detector (never replaced)")
            sub.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
            sub.add_argument("--device", default=None)
            sub.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the profile's budget)")
            sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override a hyper-parameter of the profile (repeatable; values are JSON)")
        sub.set_defaults(run=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
