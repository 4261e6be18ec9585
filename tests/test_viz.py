"""Tests of adlearn.viz: what the figures contain, not only that they draw."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless, before pyplot is imported anywhere

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from adlearn import metrics, viz
from adlearn.methods.base import Prediction


def picture_axes(figure: Figure) -> list:
    """Axes holding at least one image (colour bars excluded)."""
    return [ax for ax in figure.axes if ax.get_images() and ax.get_label() != "<colorbar>"]


def render(figure: Figure) -> None:
    """Draw the figure to PNG bytes: catches errors that only appear at draw time."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 24, 32, generator=generator)
    masks = torch.zeros(3, 1, 24, 32)
    masks[1, :, 5:10, 8:20] = 1
    maps = torch.rand(3, 1, 24, 32, generator=generator) * 0.2 + 2 * masks
    return {"images": images, "masks": masks, "maps": maps}


# --------------------------------------------------------------------------- MapNormalizer


def test_normalizer_fits_quantiles_of_normal_maps() -> None:
    normal_maps = np.arange(1001, dtype=np.float32).reshape(1, 1, 7, 143)  # values 0..1000
    normalizer = viz.MapNormalizer(low_quantile=0.5, high_quantile=0.9, normal_ceiling=0.5).fit(normal_maps)
    assert normalizer.low == pytest.approx(500.0)
    assert normalizer.high == pytest.approx(900.0)
    assert normalizer.vmin == pytest.approx(500.0)
    assert normalizer.vmax == pytest.approx(500.0 + 400.0 / 0.5)
    scaled = normalizer(np.array([0.0, 500.0, 900.0, 1300.0, 5000.0]))
    np.testing.assert_allclose(scaled, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert scaled.dtype == np.float32


def test_normalizer_is_one_scale_not_per_image_min_max() -> None:
    normalizer = viz.MapNormalizer().fit(torch.rand(10, 1, 16, 16) * 0.1)
    quiet = np.full((16, 16), 0.05)
    quiet[0, 0] = 0.06  # a per-image min-max would paint this pixel full red
    assert normalizer(quiet).max() < 0.5
    loud = np.full((16, 16), 0.05)
    loud[3:6, 3:6] = 5.0
    assert normalizer(loud)[4, 4] == 1.0


def test_normalizer_errors() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        viz.MapNormalizer()(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="quantile"):
        viz.MapNormalizer(low_quantile=0.9, high_quantile=0.5)
    with pytest.raises(ValueError, match="NaN"):
        viz.MapNormalizer().fit(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="empty"):
        viz.MapNormalizer().fit(np.array([]))


def test_normalizer_from_detector_uses_the_detectors_maps() -> None:
    class Doubler:
        device = torch.device("cpu")

        def predict(self, images: torch.Tensor) -> Prediction:
            maps = 2 * images[:, :1]
            return Prediction(scores=maps.amax(dim=(1, 2, 3)), maps=maps)

    generator = torch.Generator().manual_seed(1)
    dataset = [
        {"image": torch.rand(3, 8, 8, generator=generator), "mask": torch.zeros(1, 8, 8), "label": 0} for _ in range(5)
    ]
    normalizer = viz.MapNormalizer.from_detector(Doubler(), dataset, batch_size=2, high_quantile=0.99)
    red = 2 * torch.stack([item["image"][0] for item in dataset]).numpy()
    assert normalizer.low == pytest.approx(float(np.quantile(red, 0.5)), rel=1e-6)
    assert normalizer.high == pytest.approx(float(np.quantile(red, 0.99)), rel=1e-6)


# --------------------------------------------------------------------------- overlays and grids


def test_overlay_heatmap_blends_image_and_colour_map() -> None:
    image = torch.full((3, 4, 5), 0.25)
    heat = np.linspace(0, 1, 20).reshape(4, 5)
    only_image = viz.overlay_heatmap(image, heat, alpha=0.0)
    np.testing.assert_allclose(only_image, 0.25)
    only_heat = viz.overlay_heatmap(image, heat, alpha=1.0, cmap="viridis")
    np.testing.assert_allclose(only_heat, colormaps["viridis"](heat)[..., :3], atol=1e-6)
    half = viz.overlay_heatmap(image.numpy().transpose(1, 2, 0), heat, alpha=0.5)
    assert half.shape == (4, 5, 3)
    np.testing.assert_allclose(half, 0.5 * 0.25 + 0.5 * colormaps["jet"](heat)[..., :3], atol=1e-6)
    with pytest.raises(ValueError, match="must match"):
        viz.overlay_heatmap(image, np.zeros((3, 3)))


def test_overlay_uses_the_normalizer() -> None:
    normalizer = viz.MapNormalizer(low_quantile=0.0, high_quantile=1.0, normal_ceiling=1.0).fit(np.array([10.0, 20.0]))
    image = np.zeros((2, 2))
    heat = np.array([[10.0, 15.0], [20.0, 40.0]])
    expected = colormaps["jet"](np.array([[0.0, 0.5], [1.0, 1.0]]))[..., :3]
    np.testing.assert_allclose(viz.overlay_heatmap(image, heat, normalizer, alpha=1.0), expected, atol=1e-6)


def test_detection_grid_layout_and_contents(batch: dict[str, torch.Tensor]) -> None:
    normalizer = viz.MapNormalizer().fit(batch["maps"][[0, 2]])
    figure = viz.plot_detection_grid(
        batch["images"], batch["masks"], batch["maps"], normalizer=normalizer, row_titles=["a", "b", "c"]
    )
    assert isinstance(figure, Figure)
    pictures = picture_axes(figure)
    assert len(pictures) == 3 * 3  # rows x (input, ground truth, heat map)
    assert len(figure.axes) == 3 * 3 + 1  # plus one colour bar
    assert [ax.get_title() for ax in pictures[:3]] == ["input", "ground truth", "heat map"]
    assert pictures[3].get_ylabel() == "b"
    first_input = pictures[0].get_images()[0].get_array()
    np.testing.assert_allclose(first_input, batch["images"][0].permute(1, 2, 0).numpy(), atol=1e-6)
    mask_row_1 = pictures[4].get_images()[0].get_array()
    np.testing.assert_array_equal(mask_row_1, batch["masks"][1, 0].numpy())
    overlay = pictures[5].get_images()[0].get_array()
    expected = viz.overlay_heatmap(batch["images"][1], batch["maps"][1], normalizer)
    np.testing.assert_allclose(overlay, expected, atol=1e-6)
    colorbar_axes = [ax for ax in figure.axes if ax not in pictures]
    assert len(colorbar_axes) == 1
    assert colorbar_axes[0].get_ylim() == pytest.approx((normalizer.vmin, normalizer.vmax))
    render(figure)


def test_detection_grid_with_reconstructions_and_without_colorbar(batch: dict[str, torch.Tensor]) -> None:
    normalizer = viz.MapNormalizer().fit(batch["maps"][0])
    figure = viz.plot_detection_grid(
        batch["images"][:2], batch["masks"][:2], batch["maps"][:2],
        normalizer=normalizer, reconstructions=batch["images"][:2] * 0.5, colorbar=False,
    )  # fmt: skip
    assert len(figure.axes) == 2 * 4
    assert figure.axes[3].get_title() == "reconstruction"
    np.testing.assert_allclose(
        figure.axes[7].get_images()[0].get_array(), 0.5 * batch["images"][1].permute(1, 2, 0).numpy(), atol=1e-6
    )


def test_detection_grid_insists_on_one_normalizer_and_matching_lengths(batch: dict[str, torch.Tensor]) -> None:
    with pytest.raises(TypeError, match="MapNormalizer"):
        viz.plot_detection_grid(batch["images"], batch["masks"], batch["maps"], normalizer=None)
    normalizer = viz.MapNormalizer().fit(batch["maps"])
    with pytest.raises(ValueError, match="masks has 2"):
        viz.plot_detection_grid(batch["images"], batch["masks"][:2], batch["maps"], normalizer=normalizer)


def test_show_grid_shapes_and_titles() -> None:
    images = torch.rand(5, 1, 8, 8)
    figure = viz.show_grid(images, ncols=3, titles=[str(i) for i in range(5)])
    assert len(figure.axes) == 6  # 2 rows x 3 columns, the last one empty
    assert len(picture_axes(figure)) == 5
    assert figure.axes[4].get_images()[0].get_array().shape == (8, 8)
    assert figure.axes[4].get_title() == "4"
    colour = viz.show_grid([np.random.default_rng(0).random((8, 9, 3))])
    assert colour.axes[0].get_images()[0].get_array().shape == (8, 9, 3)


# --------------------------------------------------------------------------- curves, histograms, t-SNE


def test_plot_roc_draws_the_metric_curve() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    scores = rng.random(40) + labels * 0.5
    figure = viz.plot_roc(scores, labels, name="toy", fill=True)
    ax = figure.axes[0]
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), fpr)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), tpr)
    assert f"{metrics.image_auroc(scores, labels):.3f}" in ax.get_legend().get_texts()[0].get_text()
    assert ax.collections  # the shaded area
    render(figure)


def test_plot_roc_thins_pixel_curves_and_draws_into_given_axes(batch: dict[str, torch.Tensor]) -> None:
    host = Figure()
    ax = host.add_subplot()
    returned = viz.plot_roc(batch["maps"], batch["masks"], ax=ax, max_points=50)
    assert returned is host
    assert len(ax.lines[0].get_xdata()) <= 51
    assert ax.lines[0].get_xdata()[-1] == 1.0


def test_image_and_pixel_roc_has_two_panels(batch: dict[str, torch.Tensor]) -> None:
    figure = viz.plot_image_and_pixel_roc(
        torch.tensor([0.1, 0.9, 0.2]), torch.tensor([0, 1, 0]), batch["maps"], batch["masks"]
    )
    assert [ax.get_title() for ax in figure.axes] == ["image level", "pixel level"]
    assert "AUROC = 1.000" in figure.axes[0].get_legend().get_texts()[0].get_text()


def test_plot_pro_stops_at_the_limit(batch: dict[str, torch.Tensor]) -> None:
    figure = viz.plot_pro(batch["maps"], batch["masks"], fpr_limit=0.2)
    ax = figure.axes[0]
    x = ax.lines[0].get_xdata()
    assert x[-1] == pytest.approx(0.2) and x.max() <= 0.2
    assert ax.get_xlim() == pytest.approx((0, 0.2))
    value = metrics.aupro(batch["maps"], batch["masks"], fpr_limit=0.2)
    assert f"{value:.3f}" in ax.get_legend().get_texts()[0].get_text()
    # the drawn curve integrates to the metric
    assert np.trapezoid(ax.lines[0].get_ydata(), x) / 0.2 == pytest.approx(value, abs=1e-9)


def test_score_histogram_counts_each_class() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1])
    figure = viz.plot_score_histogram(scores, labels, bins=4, threshold=0.5)
    ax = figure.axes[0]
    good_heights = [patch.get_height() for patch in ax.containers[0]]
    bad_heights = [patch.get_height() for patch in ax.containers[1]]
    assert sum(good_heights) == 3 and sum(bad_heights) == 2
    assert len(good_heights) == 4
    assert ax.lines[0].get_xdata()[0] == 0.5  # the threshold line
    with pytest.raises(ValueError, match="same length"):
        viz.plot_score_histogram(scores, labels[:3])


def test_tsne_is_deterministic_and_scatters_every_point() -> None:
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(6, 1, (15, 8))])
    labels = np.array([0] * 20 + [1] * 15)
    first = viz.tsne_embedding(features, seed=3)
    np.testing.assert_array_equal(first, viz.tsne_embedding(features, seed=3))
    assert first.shape == (35, 2)
    figure = viz.plot_tsne(torch.from_numpy(features), labels, label_names={0: "good", 1: "defective"}, seed=3)
    scatters = [c for c in figure.axes[0].collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in scatters] == [20, 15]
    np.testing.assert_allclose(scatters[1].get_offsets(), first[labels == 1], rtol=1e-5)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["good", "defective"]
    # the two well-separated clusters stay apart in the embedding
    gap = np.linalg.norm(first[labels == 0].mean(0) - first[labels == 1].mean(0))
    assert gap > 3 * first[labels == 0].std(0).max()


def test_tsne_small_sets_and_errors() -> None:
    points = viz.tsne_embedding(np.random.default_rng(0).random((6, 4, 2)), perplexity=30)  # perplexity lowered
    assert points.shape == (6, 2)
    with pytest.raises(ValueError, match="at least 3"):
        viz.tsne_embedding(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="labels has 3"):
        viz.plot_tsne(np.zeros((5, 4)), [0, 1, 0])


def test_tsne_of_identical_features_does_not_crash() -> None:
    # a barely trained network can give every pixel the same features; PCA initialisation
    # would divide by zero and scikit-learn's Barnes-Hut code crashes the process on the NaNs
    points = viz.tsne_embedding(np.zeros((40, 4), dtype=np.float32))
    assert points.shape == (40, 2) and np.isfinite(points).all()
