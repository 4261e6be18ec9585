"""Pictures of detections: image grids, heat-map overlays, ROC and PRO curves, histograms, t-SNE.

Every function returns a matplotlib :class:`~matplotlib.figure.Figure` and, where
one plot is drawn, takes an optional ``ax`` to draw into. Figures made here are
not registered with ``pyplot``: nothing piles up in long sessions or tests, and
in a notebook a figure shows once when it is the cell's last expression (use
``display(fig)`` elsewhere, or pass an ``ax`` from ``plt.subplots``).

Heat maps use **one normalisation per model**: a :class:`MapNormalizer` fitted
on the maps of held-out *normal* images. Per-image min-max scaling would stretch
the noise of a good image to full red and make it look defective.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from adlearn import metrics
from adlearn.calibration import MapNormalizer  # calibration lives there; re-exported for figures
from adlearn.calibration import _numpy  # one tensor/array-to-NumPy conversion for maps and images

ArrayLike = Any  # np.ndarray | torch.Tensor

__all__ = [
    "MapNormalizer",
    "overlay_heatmap",
    "plot_detection_grid",
    "plot_image_and_pixel_roc",
    "plot_pro",
    "plot_roc",
    "plot_score_histogram",
    "plot_tsne",
    "show_grid",
    "tsne_embedding",
]


# --------------------------------------------------------------------------- array helpers


def _as_image(image: ArrayLike, name: str = "image") -> np.ndarray:
    """``[C, H, W]``, ``[H, W, C]`` or ``[H, W]`` (C = 1 or 3) as ``[H, W, 3]`` or ``[H, W]`` floats in [0, 1]."""
    array = _numpy(image).astype(np.float32, copy=False)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    elif array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] in (1, 3) and array.shape[0] != array.shape[-1]:
        array = np.moveaxis(array, 0, -1)  # e.g. [3, 1, 1] is channels-first
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"{name} must be [C, H, W], [H, W, C] or [H, W] with C = 1 or 3, got {tuple(array.shape)}.")
    return np.clip(array, 0.0, 1.0)


def _as_map(anomaly_map: ArrayLike, name: str = "map") -> np.ndarray:
    """``[1, H, W]`` or ``[H, W]`` as ``[H, W]``."""
    array = _numpy(anomaly_map).astype(np.float32, copy=False)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be [1, H, W] or [H, W], got {tuple(array.shape)}.")
    return array


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 4.0)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()


# --------------------------------------------------------------------------- normalisation and overlays


def overlay_heatmap(
    image: ArrayLike,
    anomaly_map: ArrayLike,
    normalizer: MapNormalizer | None = None,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Blend a coloured heat map over an image.

    Args:
        image: ``[C, H, W]``, ``[H, W, C]`` or ``[H, W]`` in ``[0, 1]``.
        anomaly_map: ``[1, H, W]`` or ``[H, W]``, the same size as the image.
        normalizer: the model's :class:`MapNormalizer`; without one the map must
            already be on a ``[0, 1]`` scale (values outside are clipped).
        alpha: weight of the heat map (0 = image only, 1 = heat map only).
        cmap: matplotlib colour map name.

    Returns:
        ``[H, W, 3]`` float32 RGB in ``[0, 1]``.
    """
    rgb = _as_image(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    heat = _as_map(anomaly_map)
    if heat.shape != rgb.shape[:2]:
        raise ValueError(f"anomaly_map is {heat.shape} but the image is {rgb.shape[:2]}; they must match.")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    scaled = normalizer(heat) if normalizer is not None else np.clip(heat, 0.0, 1.0)
    coloured = colormaps[cmap](scaled)[..., :3].astype(np.float32)
    return (1 - alpha) * rgb + alpha * coloured


# --------------------------------------------------------------------------- grids


def show_grid(
    images: ArrayLike | Sequence[ArrayLike],
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    cmap: str = "gray",
    cell_size: float = 1.6,
) -> Figure:
    """A grid of images (``[N, C, H, W]`` batch or a list of images), one axis each, without ticks."""
    items = [images[i] for i in range(len(images))]
    if not items:
        raise ValueError("images is empty.")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"titles has {len(titles)} entries for {len(items)} images.")
    ncols = max(1, min(ncols, len(items)))
    nrows = -(-len(items) // ncols)
    figure = Figure(figsize=(cell_size * ncols, cell_size * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if index < len(items):
            picture = _as_image(items[index], f"images[{index}]")
            ax.imshow(picture, cmap=cmap if picture.ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[index], fontsize=8)
    return figure


def plot_detection_grid(
    images: ArrayLike,
    masks: ArrayLike,
    maps: ArrayLike,
    *,
    normalizer: MapNormalizer,
    reconstructions: ArrayLike | None = None,
    row_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    colorbar: bool = True,
    cell_size: float = 2.0,
) -> Figure:
    """One row per image: input, ground truth, heat-map overlay and (optionally) the reconstruction.

    Args:
        images: ``[N, C, H, W]`` inputs in ``[0, 1]``.
        masks: ``[N, 1, H, W]`` or ``[N, H, W]`` ground truth.
        maps: ``[N, 1, H, W]`` or ``[N, H, W]`` anomaly maps.
        normalizer: the model's :class:`MapNormalizer` (one scale for every row).
        reconstructions: ``[N, C, H, W]`` for reconstruction-based methods.
        row_titles: a label per row (e.g. defect type and score), shown left of the row.
        alpha: heat-map weight in the overlay.
        cmap: colour map of the heat map.
        colorbar: add one colour bar (in raw map units) for the whole heat-map column.
        cell_size: inches per picture.
    """
    if not isinstance(normalizer, MapNormalizer):
        raise TypeError(
            "normalizer must be a fitted MapNormalizer (one scale per model, fitted on held-out normal images), "
            f"got {type(normalizer).__name__}."
        )
    count = len(images)
    lengths = {"masks": len(masks), "maps": len(maps)}
    if reconstructions is not None:
        lengths["reconstructions"] = len(reconstructions)
    for name, length in lengths.items():
        if length != count:
            raise ValueError(f"{name} has {length} entries but images has {count}.")
    if row_titles is not None and len(row_titles) != count:
        raise ValueError(f"row_titles has {len(row_titles)} entries but images has {count}.")
    columns = ["input", "ground truth", "heat map"] + (["reconstruction"] if reconstructions is not None else [])
    figure = Figure(figsize=(cell_size * len(columns) + (0.6 if colorbar else 0), cell_size * count), layout="constrained")
    axes = figure.subplots(count, len(columns), squeeze=False)
    for row in range(count):
        image = _as_image(images[row], f"images[{row}]")
        gray = image.ndim == 2
        axes[row, 0].imshow(image, cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[row, 1].imshow(_as_map(masks[row], f"masks[{row}]"), cmap="gray", vmin=0, vmax=1)
        axes[row, 2].imshow(overlay_heatmap(image, maps[row], normalizer, alpha=alpha, cmap=cmap))
        if reconstructions is not None:
            reconstruction = _as_image(reconstructions[row], f"reconstructions[{row}]")
            axes[row, 3].imshow(reconstruction, cmap="gray" if reconstruction.ndim == 2 else None, vmin=0, vmax=1)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
        if row_titles is not None:
            axes[row, 0].set_ylabel(row_titles[row], fontsize=9)
    for ax, title in zip(axes[0], columns):
        ax.set_title(title, fontsize=10)
    if colorbar:
        # the colour bar speaks in raw map units: the same scale in every row
        scale = ScalarMappable(norm=Normalize(vmin=normalizer.vmin, vmax=normalizer.vmax), cmap=cmap)
        figure.colorbar(scale, ax=axes.ravel().tolist(), shrink=0.8, label="anomaly score (heat map)")
    return figure


# --------------------------------------------------------------------------- curves and distributions


def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` evenly spaced vertices (plus the last): enough to draw, cheap to render."""
    if x.size <= max_points:
        return x, y
    keep = np.unique(np.append(np.linspace(0, x.size - 1, max_points).astype(np.int64), x.size - 1))
    return x[keep], y[keep]


def plot_roc(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    ax: Axes | None = None,
    name: str | None = None,
    fill: bool = False,
    max_points: int = 2000,
) -> Figure:
    """ROC curve with its AUROC in the legend; maps with masks give the pixel ROC.

    Args:
        scores: image scores ``[N]`` or anomaly maps (every pixel a sample).
        labels: binary labels or masks of the same shape.
        ax: axes to draw into; a new figure otherwise.
        name: legend label (the AUROC is appended).
        fill: shade the area under the curve.
        max_points: vertices drawn at most (pixel curves have millions).
    """
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    auroc = metrics.image_auroc(np.ravel(_numpy(scores)), np.ravel(_numpy(labels)))
    figure, ax = _new_axes(ax)
    fpr, tpr = _thin(fpr, tpr, max_points)
    label = f"{name} (AUROC = {auroc:.3f})" if name else f"AUROC = {auroc:.3f}"
    (line,) = ax.plot(fpr, tpr, label=label)
    if fill:
        ax.fill_between(fpr, tpr, alpha=0.2, color=line.get_color())
    ax.plot([0, 1], [0, 1], linestyle=":", color="gray", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="lower right")
    return figure


def plot_image_and_pixel_roc(
    scores: ArrayLike, labels: ArrayLike, maps: ArrayLike, masks: ArrayLike, *, name: str | None = None
) -> Figure:
    """Two panels: image-level ROC (scores vs labels) and pixel-level ROC (maps vs masks)."""
    figure = Figure(figsize=(9, 4), layout="constrained")
    image_ax, pixel_ax = figure.subplots(1, 2)
    plot_roc(scores, labels, ax=image_ax, name=name)
    image_ax.set_title("image level")
    plot_roc(maps, masks, ax=pixel_ax, name=name)
    pixel_ax.set_title("pixel level")
    return figure


def plot_pro(
    maps: ArrayLike,
    masks: ArrayLike,
    *,
    fpr_limit: float = 0.3,
    ax: Axes | None = None,
    name: str | None = None,
    max_points: int = 2000,
) -> Figure:
    """PRO curve up to ``fpr_limit``, the integrated area shaded, AUPRO in the legend."""
    fpr, pro = metrics.pro_curve(maps, masks)
    value = metrics.aupro(maps, masks, fpr_limit=fpr_limit)
    figure, ax = _new_axes(ax)
    inside = fpr <= fpr_limit
    last = int(np.flatnonzero(inside)[-1])
    limit_pro = pro[last]
    if fpr[last] < fpr_limit:  # the segment crossing the limit, interpolated as in the AUPRO integral
        limit_pro += (pro[last + 1] - pro[last]) * (fpr_limit - fpr[last]) / (fpr[last + 1] - fpr[last])
    x = np.append(fpr[inside], fpr_limit)
    y = np.append(pro[inside], limit_pro)
    x, y = _thin(x, y, max_points)
    (line,) = ax.plot(x, y, label=f"{name} (AUPRO = {value:.3f})" if name else f"AUPRO = {value:.3f}")
    ax.fill_between(x, y, alpha=0.2, color=line.get_color())
    ax.set(xlim=(0, fpr_limit), ylim=(0, 1.01), xlabel="false positive rate (normal pixels)", ylabel="per-region overlap")
    ax.legend(loc="lower right")
    return figure


def plot_score_histogram(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    ax: Axes | None = None,
    bins: int = 30,
    threshold: float | None = None,
    names: tuple[str, str] = ("good", "defective"),
) -> Figure:
    """Histograms of the scores of normal and anomalous samples on shared bins (optionally a threshold line)."""
    score_array = np.ravel(_numpy(scores)).astype(np.float64)
    label_array = np.ravel(_numpy(labels))
    if score_array.shape != label_array.shape:
        raise ValueError(f"scores and labels must have the same length, got {score_array.size} and {label_array.size}.")
    edges = np.histogram_bin_edges(score_array, bins=bins)
    figure, ax = _new_axes(ax, figsize=(5, 3.5))
    for value, name, colour in ((0, names[0], "tab:blue"), (1, names[1], "tab:red")):
        ax.hist(score_array[label_array == value], bins=edges, alpha=0.6, label=name, color=colour)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="anomaly score", ylabel="count")
    ax.legend()
    return figure


# --------------------------------------------------------------------------- embeddings


def tsne_embedding(features: ArrayLike, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of ``features`` (``[N, D]``, or ``[N, ...]`` flattened); the same seed gives the same points."""
    from sklearn.manifold import TSNE

    array = _numpy(features).astype(np.float32, copy=False)
    if array.ndim < 2 or array.shape[0] < 3:
        raise ValueError(f"features must be [N, D] with at least 3 samples, got shape {tuple(array.shape)}.")
    array = array.reshape(array.shape[0], -1)
    if not np.isfinite(array).all():
        raise ValueError("features contains NaN or infinite values.")
    # t-SNE needs perplexity < N; small sets (quick profile) get a smaller one
    perplexity = float(min(perplexity, max(1.0, (array.shape[0] - 1) / 3)))
    # PCA initialisation divides by the spread of the first component: features that are all
    # the same (a barely trained network) would give NaNs, which crash scikit-learn's Barnes-Hut code
    init = "pca" if float(array.std(axis=0).max()) > 1e-8 else "random"
    return TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed).fit_transform(array)


def plot_tsne(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    label_names: dict[int, str] | Sequence[str] | None = None,
    seed: int = 0,
    perplexity: float = 30.0,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """t-SNE scatter of embeddings, one colour per label (e.g. good / defective / synthetic).

    Args:
        features: ``[N, D]`` embeddings (e.g. pooled backbone features).
        labels: ``[N]`` integer classes.
        label_names: names of the classes, by value (``{0: "good", 1: "defective"}``) or position.
        seed: t-SNE seed; the same seed draws the same picture.
        perplexity: t-SNE perplexity (lowered automatically for small sets).
        ax: axes to draw into.
        title: axes title.
    """
    label_array = np.ravel(_numpy(labels))
    if label_array.shape[0] != len(features):
        raise ValueError(f"labels has {label_array.shape[0]} entries for {len(features)} feature vectors.")
    points = tsne_embedding(features, seed=seed, perplexity=perplexity)
    figure, ax = _new_axes(ax, figsize=(5, 4.5))
    for value in np.unique(label_array):
        if isinstance(label_names, dict):
            name = label_names.get(int(value), str(value))
        elif label_names is not None:
            name = label_names[int(value)]
        else:
            name = str(value)
        chosen = label_array == value
        ax.scatter(points[chosen, 0], points[chosen, 1], s=12, alpha=0.8, label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return figure
