"""What every chapter notebook does first (:func:`start_chapter`, :func:`trained_model_path`) and how
its prose quotes its outputs (:func:`glue`).

The tool that keeps the notebooks' set-up cells in sync with ``_config.yml``
lives in :mod:`adlearn.notebook_cells` (``python -m adlearn.notebook_cells sync|check``).
Its names are still importable from here, and ``python -m adlearn.notebook sync|check``
still runs it, for instructions written before the split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adlearn.data.paths import default_data_root
from adlearn.profiles import ProfileSettings, current_profile, profile_settings
from adlearn.runtime import describe_run, pick_device, seed_everything

# Kept for old imports and `python -m adlearn.notebook sync|check`; the tool lives in adlearn.notebook_cells.
from adlearn.notebook_cells import (  # noqa: F401
    REPO_ROOT,
    SETUP_CELL_MARKER,
    SETUP_CELL_TEMPLATE,
    chapter_notebooks,
    main,
    repository_url,
    setup_cell_source,
    stale_notebooks,
    sync_notebooks,
)

__all__ = ["ChapterRun", "configuration", "glue", "other_seed_runs", "seed_table", "start_chapter", "trained_model_path"]

#: the MIME-type prefix myst-nb looks for when it collects glued values (myst_nb.ext.glue.GLUE_PREFIX)
GLUE_PREFIX = "application/papermill.record/"


@dataclass(frozen=True)
class ChapterRun:
    """What a chapter runs with: profile, its settings, device and a seeded generator."""

    profile: str
    settings: ProfileSettings
    device: torch.device
    generator: torch.Generator
    seed: int


def start_chapter(seed: int = 0, profile: str | None = None, device: str | None = None, dataset: str | None = None) -> ChapterRun:
    """Seed everything, pick the profile and device, print them, and return them.

    Args:
        seed: the seed of every random number in the chapter.
        profile: ``quick``/``book``/``paper``; default ``$ADLEARN_PROFILE`` or ``book``.
        device: force a device; default CUDA when available, else CPU.
        dataset: what the chapter runs on, for the printed line; default from the profile.
    """
    name = current_profile(profile)
    settings = profile_settings(name)
    chosen = pick_device(device)
    generator = seed_everything(seed)
    if dataset is None:
        dataset = (
            "built-in MVTec-layout data (generated offline)" if settings.dataset == "builtin" else "MVTec AD"
        )
    print(describe_run(name, chosen, dataset))
    return ChapterRun(profile=name, settings=settings, device=chosen, generator=generator, seed=seed)


def trained_model_path(detector: Any, name: str, root: str | Path | None = None,
                       data: str | Path | None = None) -> Path:
    """Where a chapter keeps a model it trained: ``<root>/checkpoints/<name>_<digest>.pt``.

    The digest covers the detector's class and hyper-parameters, and the name of the data folder it trains on
    when ``data`` is given, so a model trained with other settings (an older profile, an override) or on
    another version of a data set (``builtin_v2`` against ``builtin_v3``) is never loaded in place of the one
    the notebook asks for, and never overwritten: a change trains into a new file. The anomaly-source textures
    are not part of the digest; delete the file to retrain after changing those.

    Args:
        detector: the (untrained) detector the chapter built.
        name: a readable prefix, e.g. ``"draem_book_grass"``.
        root: the data root; default :func:`adlearn.data.default_data_root`.
        data: the data set folder the model trains on (its last name counts, not where it lies).
    """
    settings = {"class": type(detector).__name__, "hparams": detector.hparams}
    if data is not None:
        settings["data"] = Path(data).name
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    folder = (Path(root).expanduser() if root is not None else default_data_root()) / "checkpoints"
    return folder / f"{name}_{digest}.pt"


def configuration(detector: Any) -> dict[str, Any]:
    """What two runs of "the same configuration" share: the hyper-parameters of ``detector`` (a detector or its
    config) without the seed, in the plain JSON form ``benchmarks/bench_accuracy.py`` records with every result
    (tuples as lists).

    A setting that names a file or folder (its name ends in ``_path`` or ``_root``, e.g. EfficientAD's
    ``teacher_path``) counts by the file's own name only: a benchmark given ``data/checkpoints/x.pt`` and a
    chapter given the absolute path of the same file ran the same configuration.
    """
    hparams = detector.hparams if hasattr(detector, "hparams") else {
        field.name: getattr(detector, field.name) for field in dataclasses.fields(detector)}
    return _comparable({name: value for name, value in hparams.items() if name != "seed"})


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as plain JSON, with file and folder settings reduced to their last name (see :func:`configuration`)."""
    plain = json.loads(json.dumps(settings, sort_keys=True, default=str))
    for name, value in plain.items():
        if name.endswith(("_path", "_root")) and isinstance(value, str):
            plain[name] = Path(value).name
    return plain


def other_seed_runs(detector: Any, data: str, seed: int, results: str | Path | None = None) -> list[dict[str, Any]]:
    """The benchmark's rows for ``detector``'s method and configuration on ``data`` with seeds other than ``seed``.

    A chapter shows them beside its own run, so a reader sees how much one run says. Only results that
    recorded their hyper-parameters and match :func:`configuration` exactly count: a row of an older profile
    or of an override is never mixed in, nor a built-in category's row measured on images an older builder
    made (:data:`adlearn.data.builtin.CATEGORY_CHANGED_IN`). Each row gets ``"file"``, the results file it came from.

    Args:
        detector: the chapter's detector (its method's registry name and hyper-parameters are compared).
        data: the data set name of the rows (a built-in category, or ``"magnetic_tile"``).
        seed: the chapter's own seed, left out.
        results: the folder of JSON results; default the repository's ``benchmarks/results``.
    """
    from adlearn.data.builtin import CATEGORY_CHANGED_IN

    folder = Path(results) if results is not None else REPO_ROOT / "benchmarks" / "results"
    wanted, rows = configuration(detector), []
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        recorded = record.get("hparams")
        if record.get("method") != type(detector).name or recorded is None or _comparable(recorded) != wanted:
            continue
        # A built-in category's results on images an older builder made are not results on today's images
        # (results written before versions were recorded ran on version 2).
        if data in CATEGORY_CHANGED_IN and (record.get("builtin_version") or 2) < CATEGORY_CHANGED_IN[data]:
            continue
        rows += [{**row, "file": path.name} for row in record.get("rows", [])
                 if row.get("data") == data and row.get("seed") != seed]
    return sorted(rows, key=lambda row: row["seed"])


def seed_table(detector: Any, data: str, seed: int, this_run: dict[str, float],
               metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc", "aupro"),
               results: str | Path | None = None) -> tuple[Any, dict[str, str]]:
    """This run's metrics beside the benchmark's other seeds of the same configuration (:func:`other_seed_runs`).

    Returns the table to display (one row per seed, the file each came from, then ``mean`` and ``std`` rows
    when there is more than one seed) and, per metric, the text a chapter's prose quotes: ``"0.700 ± 0.020"``,
    or a sentence saying that no other seed was measured for these settings.

    Args:
        detector: the chapter's detector.
        data: the data set name of the rows (a built-in category, or ``"magnetic_tile"``).
        seed: the chapter's seed; its row is ``this_run``.
        this_run: the chapter's metrics (e.g. :func:`adlearn.evaluation.compute_metrics`'s result).
        metrics: which metrics to show.
        results: the folder of JSON results; default the repository's ``benchmarks/results``.
    """
    import pandas as pd

    table = _runs_by_seed(detector, data, seed, this_run, metrics, results)
    if len(table) == 1:
        return table, {name: "(no other seed measured for these settings)" for name in metrics}
    spread = table[list(metrics)].agg(["mean", "std"]).assign(run="")  # summary rows: no run to name
    summary = {name: f"{spread.loc['mean', name]:.3f} ± {spread.loc['std', name]:.3f}" for name in metrics}
    return pd.concat([table, spread]), summary


def _runs_by_seed(detector: Any, data: str, seed: int, this_run: dict[str, float], metrics: tuple[str, ...],
                  results: str | Path | None) -> Any:
    """One row per seed (index ``seed``): the chapter's ``this_run``, then :func:`other_seed_runs`; columns ``run`` and ``metrics``."""
    import pandas as pd

    missing = [name for name in metrics if name not in this_run]
    if missing:
        raise KeyError(f"this_run has no {missing}; it has {sorted(this_run)}")
    rows = [{"seed": seed, "run": "this notebook", **{name: float(this_run[name]) for name in metrics}}]
    rows += [{"seed": row["seed"], "run": row["file"], **{name: row.get(name, float("nan")) for name in metrics}}
             for row in other_seed_runs(detector, data, seed, results)]
    return pd.DataFrame(rows).set_index("seed")


def compare_over_seeds(detectors: dict[str, Any], data: str, seed: int, this_runs: dict[str, dict[str, float]],
                       metric: str = "image_auroc", results: str | Path | None = None) -> Any:
    """Several detectors' ``metric`` side by side, one column per seed: the chapter's run and the benchmark's
    other seeds of each detector's configuration (as in :func:`seed_table`), then ``mean``, ``std`` and ``seeds``
    (how many runs the mean is over).

    A chapter that compares variants (with and without a block, say) uses it to show whether a difference
    between two of its runs is larger than the difference between two seeds of one variant; see
    :func:`paired_differences` for the per-seed differences. A seed a detector has no run for is NaN.

    Args:
        detectors: display name -> the chapter's detector.
        data: the data set name of the rows (a built-in category, or ``"magnetic_tile"``).
        seed: the chapter's seed.
        this_runs: display name -> the chapter's metrics for that detector.
        metric: which metric to compare.
        results: the folder of JSON results; default the repository's ``benchmarks/results``.
    """
    import pandas as pd

    unknown = sorted(set(detectors) ^ set(this_runs))
    if unknown:
        raise KeyError(f"detectors and this_runs must name the same models; only one of them has {unknown}")
    columns = {name: _runs_by_seed(detector, data, seed, this_runs[name], (metric,), results)[metric]
               for name, detector in detectors.items()}
    per_seed = pd.DataFrame(columns).T.sort_index(axis=1)
    per_seed.columns = [f"seed {column}" for column in per_seed.columns]
    return per_seed.assign(mean=per_seed.mean(axis=1), std=per_seed.std(axis=1), seeds=per_seed.notna().sum(axis=1))


def paired_differences(comparison: Any, variant: str, baseline: str) -> tuple[list[float], str]:
    """``variant`` minus ``baseline`` seed by seed, from :func:`compare_over_seeds`'s table (seeds both have), and
    a verdict in words: "helped" or "hurt" when every per-seed difference is beyond ±0.01 in the same direction,
    else "made no consistent difference".
    """
    seed_columns = [column for column in comparison.columns if column.startswith("seed ")]
    both = comparison.loc[[variant, baseline], seed_columns].dropna(axis=1)
    differences = [float(value) for value in both.loc[variant] - both.loc[baseline]]
    if differences and all(value > 0.01 for value in differences):
        verdict = "helped"
    elif differences and all(value < -0.01 for value in differences):
        verdict = "hurt"
    else:
        verdict = "made no consistent difference"
    return differences, verdict


def glue(name: str, value: Any, fmt: str | None = None) -> str:
    """Store ``value`` in the cell's outputs under ``name`` for the book's prose, and return its text.

    The prose quotes it as ``{glue:text}`name``` and Jupyter Book puts the stored text there,
    so a re-run cannot leave a sentence behind its numbers. Numbers are formatted here
    (``fmt``, e.g. ``".3f"``) rather than in the markdown, so the stored text is exactly what the
    book shows. Nothing is displayed in the notebook itself. This writes the output myst-nb's own
    ``glue(name, value, display=False)`` writes, without needing myst-nb in the kernel (on Colab
    it is not installed).

    Args:
        name: the key the prose uses; unique within the book page.
        value: a number, string or anything with a useful ``str``.
        fmt: a format specification for ``value`` (default ``str(value)``).
    """
    from IPython.display import display

    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"glue names are letters, digits and underscores, got {name!r}.")
    text = format(value, fmt) if fmt is not None else str(value)
    # stored as the repr of the string, as myst-nb's glue stores a str: its {glue:text} role reads the
    # text back with ast.literal_eval, which would turn an unquoted "2,700" into a tuple and "0.830" into 0.83
    display({GLUE_PREFIX + "text/plain": repr(text)}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
    return text


if __name__ == "__main__":  # python -m adlearn.notebook sync|check: kept for old instructions
    sys.exit(main())
