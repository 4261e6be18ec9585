"""Interactive figures that run in the reader's browser: no kernel, no server.

The book is published as static HTML, so a figure that asks a Python kernel to
redraw (ipywidgets ``interact``) is dead there. The figures here are Bokeh
documents whose every interaction is a ``CustomJS`` callback over data shipped
with the page: they work the same in the built Jupyter Book, in Colab, in
JupyterLab and in a plain ``.html`` file.

* :func:`detection_browser` -- pick a test image, see input, ground truth, heat
  map on the model's calibrated scale, reconstruction and the predicted mask
  under a threshold slider; score, predicted area and IoU update as you move it.
* :func:`embedding_scatter` -- a t-SNE (or any 2-D) scatter coloured by label;
  hovering a point shows its thumbnail, label and score.
* :func:`variant_explorer` -- precomputed variants (e.g. the simulator's output
  for several parameter values) switched with a slider or a drop-down.

Show a figure in a chapter with :func:`show`; write a standalone page with
:func:`save_html`::

    from adlearn.interactive import detection_browser, show

    show(detection_browser(images, maps, masks=masks, normalizer=detector.map_normalizer()))

The saved output is HTML with JavaScript: JupyterLab runs it once the notebook
is trusted (it is, in the session that ran it); nbval should not compare it
(its element ids change from run to run), so leave such cells unmarked.

**Why Bokeh, not Plotly.** Both are maintained and both run client-side. Bokeh
ships the widgets this book needs (sliders, drop-downs, HTML tooltips) inside
the figure's document, linked by ``CustomJS`` callbacks that can compute
anything: here the predicted mask and its IoU, from the shipped map values, at
any threshold. A Plotly slider in static HTML can only apply precomputed
``restyle``/``relayout`` steps, so a threshold slider over 50 images would ship
50 x steps pre-drawn masks, and its hover labels cannot show an image (both
need hand-written page JavaScript outside the figure). Bokeh's inline build
also takes only the parts a figure uses (core + widgets, about 1.6 MB), where
``plotly.min.js`` alone is 3.5 to 4.5 MB.

**How a figure reaches the page.** ``bokeh.io.output_notebook()`` + ``show``
puts the BokehJS library in one output and the figure in another, and the
figure only works when the loader output ran first on the same page: it breaks
on Colab, where every output is its own iframe (one must call
``output_notebook()`` in every cell), and in Jupyter Book pages where the
loader's output is missing or hidden (the console then says "Unable to run
BokehJS code because BokehJS library is missing", jupyter-book issue #1751).
:func:`show` instead writes **one self-contained ``text/html`` output** per
figure: the BokehJS it needs inline (guarded so a page that already has it
does not run it twice), the figure's data and the script that embeds it.
myst-nb renders that as raw HTML; nothing is fetched from a CDN.

**Size budget.** Each figure's own data (everything but BokehJS) must stay
under :data:`FIGURE_BUDGET_BYTES` (1.5 MB); each builder measures the figure
it made and, over budget, says what to reduce. Images are downsampled for display
(``display_size``, longest side) and shipped as PNG or JPEG data URIs,
whichever is smaller; anomaly maps as ``uint8`` codes between the scale's ends;
masks as packed bits. BokehJS adds 1.3 MB (core) + 0.4 MB (widgets) to each
output; :func:`show`'s ``include_bokehjs=False`` leaves the core out of figures
after the first on a page (the HTML book, Jupyter; not Colab).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

if TYPE_CHECKING:  # Bokeh is imported when a figure is built: `import adlearn.interactive` stays cheap
    from bokeh.model import Model
    from bokeh.models import LayoutDOM

ArrayLike = Any  # np.ndarray | torch.Tensor

__all__ = [
    "FIGURE_BUDGET_BYTES",
    "detection_browser",
    "embedding_scatter",
    "figure_bytes",
    "notebook_html",
    "save_html",
    "show",
    "variant_explorer",
]

FIGURE_BUDGET_BYTES = 1_500_000
"""Most bytes one figure's data may take in a page or notebook, BokehJS not counted."""

_PANEL_HEIGHT = 140  # on-screen height of one picture panel, CSS pixels
_MASK_PALETTE = ("#000000", "#e4002b", "#2f6fde", "#ffffff")  # TN, FP, FN, TP (TP = predicted without a mask)


# --------------------------------------------------------------------------- input checks


def _numpy(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a NumPy array or a torch tensor of numbers, got {type(values).__name__}."
        ) from error
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _images(values: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """``[N, C, H, W]`` with C = 1 or 3 and values in [0, 1] (clipped), as float32."""
    array = _numpy(values, name)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be [N, C, H, W] with C = 1 or 3, got shape {tuple(array.shape)}.")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} images but images has {n}; give one per image.")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty; give at least one image.")
    if array.min() < -1e-3 or array.max() > 1 + 1e-3:  # 0..255 pixels, or normalised network inputs
        raise ValueError(
            f"{name} must be in [0, 1], got values from {array.min():.3g} to {array.max():.3g}; "
            "divide 8-bit images by 255 and undo any mean/std normalisation first."
        )
    return np.clip(array, 0.0, 1.0)


def _maps(values: ArrayLike, name: str, n: int, size: tuple[int, int]) -> np.ndarray:
    """``[N, 1, H, W]`` (or ``[N, H, W]``) matching the images, as float32 ``[N, 1, H, W]``."""
    array = _numpy(values, name)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] != 1:
        raise ValueError(f"{name} must be [N, 1, H, W] (or [N, H, W]), got shape {tuple(array.shape)}.")
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} entries but images has {n}; give one per image.")
    if tuple(array.shape[2:]) != size:
        raise ValueError(
            f"{name} is {tuple(array.shape[2:])} per image but the images are {size}; "
            "resize them to the image size first (e.g. torch.nn.functional.interpolate)."
        )
    return array


def _vector(values: ArrayLike, name: str, n: int) -> np.ndarray:
    array = _numpy(values, name).reshape(-1)
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} values but there are {n} images/points; give one each.")
    return array


def _strings(values: Sequence[Any] | None, name: str, n: int, default: str) -> list[str]:
    if values is None:
        return [default.format(i=i) for i in range(n)]
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of {n} strings, got a single string.")
    if isinstance(values, (np.ndarray, torch.Tensor)):
        values = values.tolist()  # str(tensor(3)) would be "tensor(3)"
    values = [str(value) for value in values]
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but there are {n} images/points; give one each.")
    return values


def _check_budget(model: LayoutDOM, max_bytes: int, what: str, advice: str) -> LayoutDOM:
    """``model`` if its data fits ``max_bytes``, else a ValueError saying what to reduce."""
    size = figure_bytes(model)
    if size > max_bytes:
        raise ValueError(
            f"{what} would take about {size / 1e6:.2f} MB in the page, over the budget of "
            f"{max_bytes / 1e6:.2f} MB; {advice} (or raise max_bytes)."
        )
    return model


# --------------------------------------------------------------------------- resizing and encoding


def _display_shape(height: int, width: int, display_size: int) -> tuple[int, int]:
    """Longest side at most ``display_size`` (never upsampled), aspect ratio kept."""
    if display_size < 8:
        raise ValueError(f"display_size must be at least 8 pixels, got {display_size}.")
    scale = min(1.0, display_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(batch: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average downsampling of ``[N, C, H, W]`` (what a reader's eye averages over anyway)."""
    if tuple(batch.shape[2:]) == shape:
        return batch
    return F.interpolate(torch.from_numpy(np.ascontiguousarray(batch)), size=shape, mode="area").numpy()


def _data_uri(image: np.ndarray) -> str:
    """``[C, H, W]`` in [0, 1] as a PNG or JPEG data URI, whichever is smaller."""
    pixels = np.round(np.moveaxis(image, 0, -1) * 255).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    encoded: list[tuple[int, str, bytes]] = []
    for kind, options in (("png", {}), ("jpeg", {"quality": 85})):
        buffer = io.BytesIO()
        picture.save(buffer, format=kind.upper(), **options)
        encoded.append((buffer.tell(), kind, buffer.getvalue()))
    _, kind, data = min(encoded)
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _data_uris(batch: np.ndarray) -> list[str]:
    return [_data_uri(image) for image in batch]


# --------------------------------------------------------------------------- Bokeh pieces


def _picture_panel(title: str, height: int, width: int, *, extra_width: int = 0) -> Any:
    """A figure showing one ``width`` x ``height`` picture, axes and tools hidden."""
    from bokeh.plotting import figure

    frame_width = max(1, round(_PANEL_HEIGHT * width / height))
    panel = figure(
        title=title,
        x_range=(0, width),
        y_range=(0, height),
        frame_width=frame_width,
        frame_height=_PANEL_HEIGHT,
        tools="",
        toolbar_location=None,
        min_border=4,
        min_border_right=4 + extra_width,
    )
    panel.axis.visible = False
    panel.grid.visible = False
    panel.outline_line_color = None
    return panel


def _show_url(panel: Any, source: Any, height: int, width: int) -> None:
    panel.image_url(url="url", x=0, y=height, w=width, h=height, anchor="top_left", source=source)


def _matplotlib_palette(name: str) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    colormap = colormaps[name]
    return [to_hex(colormap(i / 255)) for i in range(256)]


def _rows(children: list[Any], per_row: int) -> Any:
    """``children`` in rows of at most ``per_row``, left to right.

    Fixed rows, not a CSS ``flex-wrap``: Bokeh sizes a row's children itself and
    a wrapped child gets stretched to the whole line, its picture distorted.
    """
    from bokeh.layouts import column, row

    if len(children) <= per_row:
        return row(children)
    return column([row(children[start:start + per_row]) for start in range(0, len(children), per_row)])


# --------------------------------------------------------------------------- detection browser


def _quantise(maps: np.ndarray, low: float, step: float) -> np.ndarray:
    """Raw map values as ``uint8`` codes: code ``c`` stands for ``low + c * step``."""
    return np.clip(np.round((maps - low) / step), 0, 255).astype(np.uint8)


def _threshold_code(threshold: float, low: float, step: float) -> int:
    return int(np.clip(round((threshold - low) / step), 0, 256))


def _decimals(step: float) -> int:
    """Decimals that resolve one slider step (at least 2, at most 8)."""
    return int(min(8, max(2, 1 - math.floor(math.log10(step)))))


_DETECTION_JS = """
const i = image_slider === null ? 0 : image_slider.value;
const t = threshold_slider.value;
const k = Math.min(256, Math.max(0, Math.round((t - low) / step)));
const code = store.data.code[i];
const bits = has_mask ? store.data.mask[i] : null;
const pred = prediction.data.image[0];
let tp = 0, fp = 0, fn = 0;
for (let p = 0; p < code.length; p++) {
  const predicted = code[p] >= k;
  const truth = bits !== null && ((bits[p >> 3] >> (7 - (p & 7))) & 1) === 1;
  if (predicted && truth) { tp++; pred[p] = 3; }
  else if (predicted) { fp++; pred[p] = bits === null ? 3 : 1; }
  else if (truth) { fn++; pred[p] = 2; }
  else { pred[p] = 0; }
}
prediction.change.emit();
if (shown.data.index[0] !== i) {
  shown.data.index[0] = i;
  heat.data.image[0].set(code);
  heat.change.emit();
  if (bits !== null) {
    const gt = truth_view.data.image[0];
    for (let p = 0; p < gt.length; p++) { gt[p] = (bits[p >> 3] >> (7 - (p & 7))) & 1; }
    truth_view.change.emit();
  }
  picture.data = {url: [store.data.image[i]]};
  if (reconstruction !== null) { reconstruction.data = {url: [store.data.reconstruction[i]]}; }
}
let text = "<b>" + store.data.title[i] + "</b>";
if (has_score) { text += " &middot; score " + store.data.score_text[i]; }
text += " &middot; threshold " + t.toFixed(decimals);
text += " &middot; predicted " + (100 * (tp + fp) / code.length).toFixed(1) + " % of pixels";
if (bits !== null) {
  text += (tp + fn) > 0 ? " &middot; IoU " + (tp / (tp + fp + fn)).toFixed(3)
                        : " &middot; IoU n/a (no defect in the ground truth)";
}
info.text = text;
"""


def _detection_text(title: str, score_text: str | None, threshold: float, decimals: int,
                    codes: np.ndarray, k: int, truth: np.ndarray | None) -> str:
    """The info line, exactly as the page's JavaScript writes it (Python side: the first view)."""
    predicted = codes.reshape(-1) >= k
    text = f"<b>{title}</b>"
    if score_text is not None:
        text += f" &middot; score {score_text}"
    text += f" &middot; threshold {threshold:.{decimals}f}"
    text += f" &middot; predicted {100 * predicted.mean():.1f} % of pixels"
    if truth is not None:
        truth = truth.reshape(-1).astype(bool)
        union = (predicted | truth).sum()
        if truth.any():
            text += f" &middot; IoU {(predicted & truth).sum() / union:.3f}"
        else:
            text += " &middot; IoU n/a (no defect in the ground truth)"
    return text


def detection_browser(
    images: ArrayLike,
    maps: ArrayLike,
    *,
    masks: ArrayLike | None = None,
    reconstructions: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    titles: Sequence[str] | None = None,
    normalizer: Any | None = None,
    threshold: float | None = None,
    display_size: int = 128,
    max_bytes: int = FIGURE_BUDGET_BYTES,
) -> LayoutDOM:
    """Browse detections: input, ground truth, heat map, reconstruction and the mask under a threshold.

    A slider picks the test image; a second slider sets the pixel threshold on
    the raw map scale. The predicted mask ``map >= threshold`` is computed in
    the browser: with ground truth it is coloured white (defect found), red
    (false alarm) and blue (defect missed). A line of text gives the image's
    score, the predicted area and the IoU with the ground truth, and updates
    with either slider.

    Everything is shipped at display resolution (longest side
    ``display_size``), so the IoU is the one of the downsampled masks: close
    to, not exactly, the full-resolution value. Map values are quantised to
    256 levels between the ends of the slider, which is also the slider's step.

    Args:
        images: ``[N, C, H, W]`` in ``[0, 1]``, C = 1 or 3.
        maps: ``[N, 1, H, W]`` (or ``[N, H, W]``, as in
            :class:`~adlearn.evaluation.TestPredictions`) raw anomaly maps, the images' size.
        masks: ``[N, 1, H, W]`` (or ``[N, H, W]``) ground truth in ``{0, 1}`` (bool is fine);
            adds a panel and the IoU.
        reconstructions: ``[N, C, H, W]`` in ``[0, 1]`` (reconstruction-based methods).
        scores: ``[N]`` image scores, shown as text.
        titles: ``N`` names (file names, defect types); default ``"image i"``.
        normalizer: the model's :class:`~adlearn.calibration.MapNormalizer` (anything
            with ``vmin`` and ``vmax``): the heat map's colours run from ``vmin`` to
            ``vmax`` as in :func:`adlearn.viz.plot_detection_grid`. Without one, the
            maps' global minimum and maximum.
        threshold: the slider's first position, raw map units; default the middle
            of the scale (for a default ``MapNormalizer``: its high quantile of normal maps).
        display_size: longest side of the shipped pictures, pixels (never upsampled).
        max_bytes: budget for the figure's data; see :data:`FIGURE_BUDGET_BYTES`.

    Returns:
        A Bokeh layout; show it with :func:`show` or write it with :func:`save_html`.

    Raises:
        ValueError: on shapes that do not match, values out of range, or a figure
            over budget (the message says what to reduce).

    Example::

        predictions = collect_predictions(detector, test_set, keep_images=True)
        show(detection_browser(predictions.images, predictions.maps, masks=predictions.masks,
                               scores=predictions.scores, titles=predictions.defect_types,
                               normalizer=detector.map_normalizer()))
    """
    from bokeh.layouts import column, row
    from bokeh.models import ColorBar, ColumnDataSource, CustomJS, Div, LinearColorMapper, Slider

    pictures = _images(images, "images")
    n, _, height, width = pictures.shape
    raw_maps = _maps(maps, "maps", n, (height, width))
    truth = None
    if masks is not None:
        truth = _maps(masks, "masks", n, (height, width))
        if truth.min() < 0 or truth.max() > 1:
            raise ValueError(f"masks must hold 0 and 1, got values from {truth.min():g} to {truth.max():g}.")
    rebuilt = _images(reconstructions, "reconstructions", n) if reconstructions is not None else None
    if rebuilt is not None and rebuilt.shape[2:] != pictures.shape[2:]:
        raise ValueError(f"reconstructions are {rebuilt.shape[2:]} per image but the images are {(height, width)}.")
    score_values = _vector(scores, "scores", n) if scores is not None else None
    names = _strings(titles, "titles", n, "image {i}")

    if normalizer is not None:
        try:
            vmin, vmax = float(normalizer.vmin), float(normalizer.vmax)
        except AttributeError as error:
            raise TypeError("normalizer must have vmin and vmax (e.g. adlearn.calibration.MapNormalizer).") from error
    else:
        vmin, vmax = float(raw_maps.min()), float(raw_maps.max())
    if not vmax > vmin:
        vmax = vmin + 1e-6  # constant maps still get a usable scale
    threshold = 0.5 * (vmin + vmax) if threshold is None else float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}.")
    low, high = min(vmin, threshold), max(vmax, threshold)
    step = (high - low) / 255
    decimals = _decimals(step)

    shape = _display_shape(height, width, display_size)
    dh, dw = shape
    # Pictures are shipped flipped upside down: Bokeh's image glyph draws row 0 at the bottom.
    codes = np.ascontiguousarray(_quantise(_resize(raw_maps, shape)[:, 0, ::-1], low, step))
    store: dict[str, list[Any]] = {
        "code": list(codes),
        "image": _data_uris(_resize(pictures, shape)),
        "title": [html.escape(name) for name in names],
    }
    truth_small = None
    if truth is not None:
        truth_small = np.ascontiguousarray(_resize(truth, shape)[:, 0, ::-1] >= 0.5).astype(np.uint8)
        store["mask"] = [np.packbits(mask.reshape(-1)) for mask in truth_small]
    if rebuilt is not None:
        store["reconstruction"] = _data_uris(_resize(rebuilt, shape))
    if score_values is not None:
        store["score_text"] = [f"{value:.4g}" for value in score_values]
    data = ColumnDataSource(data=store, name="detection_data")

    k = _threshold_code(threshold, low, step)
    first_prediction = np.where(codes[0] >= k, 3, 0).astype(np.uint8)
    if truth_small is not None:
        first_prediction = (2 * truth_small[0] + (codes[0] >= k)).astype(np.uint8)  # 0 TN, 1 FP, 2 FN, 3 TP
    picture = ColumnDataSource(data={"url": [store["image"][0]]}, name="picture_view")
    heat = ColumnDataSource(data={"image": [codes[0].copy()]}, name="heat_view")
    prediction = ColumnDataSource(data={"image": [first_prediction]}, name="prediction_view")
    shown = ColumnDataSource(data={"index": [0]}, name="shown_index")

    panels = []
    input_panel = _picture_panel("input", dh, dw)
    _show_url(input_panel, picture, dh, dw)
    panels.append(input_panel)

    truth_view = None
    if truth_small is not None:
        truth_view = ColumnDataSource(data={"image": [truth_small[0].copy()]}, name="truth_view")
        truth_panel = _picture_panel("ground truth", dh, dw)
        truth_panel.image(image="image", x=0, y=0, dw=dw, dh=dh, source=truth_view,
                          color_mapper=LinearColorMapper(palette=["#000000", "#ffffff"], low=-0.5, high=1.5))
        panels.append(truth_panel)

    jet = _matplotlib_palette("jet")  # the colours of adlearn.viz's heat maps
    heat_panel = _picture_panel("heat map (model's scale)", dh, dw, extra_width=70)
    _show_url(heat_panel, picture, dh, dw)
    heat_panel.image(image="image", x=0, y=0, dw=dw, dh=dh, source=heat, global_alpha=0.5,
                     color_mapper=LinearColorMapper(palette=jet, low=(vmin - low) / step, high=(vmax - low) / step))
    heat_panel.add_layout(ColorBar(color_mapper=LinearColorMapper(palette=jet, low=vmin, high=vmax),
                                   width=10, padding=2, label_standoff=4, major_label_text_font_size="8pt"), "right")
    panels.append(heat_panel)

    reconstruction = None
    if rebuilt is not None:
        reconstruction = ColumnDataSource(data={"url": [store["reconstruction"][0]]}, name="reconstruction_view")
        rebuilt_panel = _picture_panel("reconstruction", dh, dw)
        _show_url(rebuilt_panel, reconstruction, dh, dw)
        panels.append(rebuilt_panel)

    prediction_panel = _picture_panel("predicted mask", dh, dw)
    prediction_panel.image(image="image", x=0, y=0, dw=dw, dh=dh, source=prediction,
                           color_mapper=LinearColorMapper(palette=list(_MASK_PALETTE), low=-0.5, high=3.5))
    panels.append(prediction_panel)

    first_text = _detection_text(
        store["title"][0], store["score_text"][0] if score_values is not None else None, low + k * step, decimals,
        codes[0], k, truth_small[0] if truth_small is not None else None)
    info = Div(text=first_text, name="detection_info")
    legend = Div(text=(
        "Predicted mask: <b>white</b> defect found, <span style='color:#e4002b'><b>red</b></span> false alarm, "
        "<span style='color:#2f6fde'><b>blue</b></span> defect missed." if truth_small is not None else
        "Predicted mask: <b>white</b> where the map reaches the threshold."
    ), styles={"font-size": "85%"})
    threshold_slider = Slider(start=low, end=high, value=low + k * step, step=step, title="threshold (map value)",
                              format="0." + "0" * decimals, width=320, name="threshold_slider")
    image_slider = None
    if n > 1:
        image_slider = Slider(start=0, end=n - 1, value=0, step=1, title="image", width=320, name="image_slider")

    callback = CustomJS(
        args=dict(
            store=data, prediction=prediction, heat=heat, picture=picture, truth_view=truth_view,
            reconstruction=reconstruction, shown=shown, info=info, image_slider=image_slider,
            threshold_slider=threshold_slider, low=low, step=step, decimals=decimals,
            has_mask=truth_small is not None, has_score=score_values is not None,
        ),
        code=_DETECTION_JS,
    )
    threshold_slider.js_on_change("value", callback)
    controls = [threshold_slider]
    if image_slider is not None:
        image_slider.js_on_change("value", callback)
        controls.insert(0, image_slider)
    # The book's text column is about 740 px wide: four panels fit on a line, five go on two.
    browser = column(row(controls), info, _rows(panels, 4 if len(panels) <= 4 else 3), legend, name="detection_browser")
    return _check_budget(browser, max_bytes, f"{n} images at {dh} x {dw}",
                         f"pass fewer images or a smaller display_size (now {display_size})")


# --------------------------------------------------------------------------- embedding scatter


def _label_palette(n: int) -> list[str]:
    from bokeh.palettes import Category10, Category20, turbo

    if n <= 2:
        return list(Category10[3][:n])
    if n <= 10:
        return list(Category10[max(3, n)][:n])
    if n <= 20:
        return list(Category20[n])
    return list(turbo(n))


def embedding_scatter(
    points: ArrayLike,
    *,
    labels: Sequence[Any],
    thumbnails: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    title: str | None = None,
    thumbnail_size: int = 64,
    max_bytes: int = FIGURE_BUDGET_BYTES,
) -> LayoutDOM:
    """A 2-D scatter (t-SNE, PCA...) coloured by label; hover a point to see its thumbnail.

    The tooltip shows the point's thumbnail (a small PNG or JPEG data URI), its
    label and its score. Clicking a legend entry hides that label's points.

    Args:
        points: ``[N, 2]`` coordinates, e.g. :func:`adlearn.viz.tsne_embedding`'s output.
        labels: ``N`` labels (class, defect type); one colour and legend entry each.
        thumbnails: ``[N, C, H, W]`` images in ``[0, 1]`` shown on hover, downsampled
            to ``thumbnail_size`` (longest side).
        scores: ``[N]`` anomaly scores shown on hover.
        title: the plot's title.
        thumbnail_size: longest side of a thumbnail, pixels.
        max_bytes: budget for the figure's data; see :data:`FIGURE_BUDGET_BYTES`.

    Returns:
        A Bokeh figure; show it with :func:`show` or write it with :func:`save_html`.

    Example::

        points = tsne_embedding(features)
        show(embedding_scatter(points, labels=defect_types, thumbnails=images, scores=scores))
    """
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure
    from bokeh.transform import factor_cmap

    coordinates = _numpy(points, "points")
    if coordinates.ndim != 2 or coordinates.shape[1] != 2 or coordinates.shape[0] == 0:
        raise ValueError(f"points must be [N, 2] with N >= 1, got shape {tuple(coordinates.shape)}.")
    n = coordinates.shape[0]
    names = _strings(labels, "labels", n, "")
    data: dict[str, Any] = {
        "x": coordinates[:, 0].astype(np.float64),
        "y": coordinates[:, 1].astype(np.float64),
        "label": names,
        "index": list(range(n)),
    }
    tooltip = ["<div style='max-width: 160px'>"]
    if thumbnails is not None:
        small = _images(thumbnails, "thumbnails", n)
        shape = _display_shape(small.shape[2], small.shape[3], thumbnail_size)
        data["thumbnail"] = _data_uris(_resize(small, shape))
        tooltip.append(f"<img src='@thumbnail' width='{shape[1]}' height='{shape[0]}' "
                       "style='display: block; image-rendering: pixelated' alt='thumbnail'>")
    tooltip.append("<div><b>@label</b> <span style='color: #777'>#@index</span></div>")
    if scores is not None:
        data["score"] = _vector(scores, "scores", n).astype(np.float64)
        tooltip.append("<div>score @score{0.000}</div>")
    tooltip.append("</div>")

    factors = sorted(set(names))
    source = ColumnDataSource(data=data, name="embedding_points")
    plot = figure(title=title, width=620, height=440, tools="pan,wheel_zoom,box_zoom,reset",
                  toolbar_location="above", name="embedding_scatter")
    renderer = plot.scatter("x", "y", source=source, size=8, alpha=0.8, line_color="white", line_width=0.5,
                            color=factor_cmap("label", _label_palette(len(factors)), factors), legend_group="label")
    plot.add_tools(HoverTool(renderers=[renderer], tooltips="".join(tooltip), name="thumbnail_hover"))
    legend = plot.legend[0]
    legend.click_policy = "hide"
    plot.add_layout(legend, "right")  # beside the points, not over them
    plot.axis.visible = False  # t-SNE coordinates have no units worth reading
    plot.grid.visible = False
    if thumbnails is None:
        return _check_budget(plot, max_bytes, f"{n} points", "pass fewer points")
    return _check_budget(plot, max_bytes, f"{n} points with thumbnails at {shape[0]} x {shape[1]}",
                         f"pass fewer points or a smaller thumbnail_size (now {thumbnail_size})")


# --------------------------------------------------------------------------- variant explorer


_VARIANT_JS = """
// A Select's value is the variant's name, a Slider's its index.
const i = typeof control.value === "string" ? keys.indexOf(control.value) : control.value;
for (let j = 0; j < views.length; j++) {
  views[j].data = {url: [store.data["url_" + j][i]]};
}
label.text = "<b>" + keys_html[i] + "</b>";
"""


def variant_explorer(
    variants: Mapping[str, ArrayLike],
    *,
    titles: Sequence[str] | None = None,
    display_size: int = 128,
    control: Literal["slider", "select"] = "slider",
    max_bytes: int = FIGURE_BUDGET_BYTES,
) -> LayoutDOM:
    """Switch between precomputed variants of the same pictures, in the browser.

    Replaces a kernel-bound ``ipywidgets.interact``: compute the pictures for
    each parameter value in Python, then let the reader flip through them. Each
    variant is one picture ``[C, H, W]`` or a row of pictures ``[K, C, H, W]``
    (e.g. image, mask and anomaly source), the same K for every variant.

    Args:
        variants: ordered mapping from a variant's name (e.g. ``"scale 4"``) to its pictures in ``[0, 1]``.
        titles: ``K`` panel titles; default none.
        display_size: longest side of a shipped picture, pixels (never upsampled).
        control: ``"slider"`` for ordered parameter values, ``"select"`` (a drop-down) for named ones.
        max_bytes: budget for the figure's data; see :data:`FIGURE_BUDGET_BYTES`.

    Returns:
        A Bokeh layout; show it with :func:`show` or write it with :func:`save_html`.

    Example::

        variants = {f"scale {s}": perlin_example(scale=s) for s in (2, 4, 8)}
        show(variant_explorer(variants, titles=["image", "mask"]))
    """
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS, Div, Select, Slider

    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("variants must be a non-empty dict from a variant's name to its pictures.")
    if control not in ("slider", "select"):
        raise ValueError(f"control must be 'slider' or 'select', got {control!r}.")
    keys = [str(key) for key in variants]
    batches = []
    for key, pictures in variants.items():
        array = _numpy(pictures, f"variants[{key!r}]")
        if array.ndim == 3:
            array = array[None]
        batches.append(_images(array, f"variants[{key!r}]"))
    first = batches[0].shape
    for key, batch in zip(keys, batches):
        if batch.shape[0] != first[0] or batch.shape[2:] != first[2:]:
            raise ValueError(
                f"variants[{key!r}] is {tuple(batch.shape)} but variants[{keys[0]!r}] is {tuple(first)}; "
                "every variant needs the same number and size of pictures."
            )
    k, height, width = first[0], first[2], first[3]
    panel_titles = _strings(titles, "titles", k, "")
    shape = _display_shape(height, width, display_size)
    urls = [_data_uris(_resize(batch, shape)) for batch in batches]  # [variant][picture]
    store = ColumnDataSource(data={f"url_{j}": [urls[i][j] for i in range(len(keys))] for j in range(k)},
                             name="variant_data")
    views, panels = [], []
    for j in range(k):
        view = ColumnDataSource(data={"url": [urls[0][j]]}, name=f"variant_view_{j}")
        panel = _picture_panel(panel_titles[j], *shape)
        _show_url(panel, view, *shape)
        views.append(view)
        panels.append(panel)
    keys_html = [html.escape(key) for key in keys]
    label = Div(text=f"<b>{keys_html[0]}</b>", name="variant_label")
    children: list[Any] = []
    if len(keys) > 1:
        if control == "slider":
            widget = Slider(start=0, end=len(keys) - 1, value=0, step=1, title="variant", show_value=False,
                            width=320, name="variant_control")
        else:
            widget = Select(options=keys, value=keys[0], title="variant", width=320, name="variant_control")
        widget.js_on_change("value", CustomJS(
            args=dict(control=widget, store=store, views=views, label=label, keys=keys, keys_html=keys_html),
            code=_VARIANT_JS))
        children.append(row([widget, label]))
    else:
        children.append(label)
    children.append(_rows(panels, 4))
    explorer = column(children, name="variant_explorer")
    return _check_budget(explorer, max_bytes, f"{len(keys)} variants of {k} pictures at {shape[0]} x {shape[1]}",
                         f"pass fewer variants or a smaller display_size (now {display_size})")


# --------------------------------------------------------------------------- output


def _bokehjs_scripts(model: Model, *, core: bool = True) -> str:
    """The BokehJS bundles ``model`` needs, inline, each one run only if the page does not have it yet.

    ``core=False`` leaves out the core library (``bokeh.min.js``, 1.3 MB) but keeps
    the plugins the figure needs (``bokeh-widgets.min.js``...), which an earlier
    figure on the page may not have loaded.
    """
    from bokeh import __version__
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE

    scripts = []
    for code in bundle_for_objs_and_resources([model], INLINE).js_raw:
        header = code.lstrip()[:60]
        name = header[len("/* BEGIN "):].split(" ", 1)[0] if header.startswith("/* BEGIN ") else ""
        key = json.dumps(f"{__version__}/{name}")
        if name in ("bokeh.min.js", "bokeh.js"):
            if not core:
                continue
            guard = f"!(window.Bokeh && window.Bokeh[{json.dumps(__version__)}])"  # BokehJS registers its version
        elif name:
            guard = f"!(window.__adlearn_bokehjs && window.__adlearn_bokehjs[{key}])"
        else:
            guard = "true"  # small configuration snippets such as the log level
        mark = (f" window.__adlearn_bokehjs = window.__adlearn_bokehjs || {{}};"
                f" window.__adlearn_bokehjs[{key}] = true;" if name else "")
        # A function keeps the bundle's 'use strict' in force; `this` is the page's window as at top level.
        scripts.append(f'<script type="text/javascript">\nif ({guard}) {{ (function() {{\n{code}\n}}).call(window);'
                       f"{mark} }}\n</script>")
    return "\n".join(scripts)


_NO_BOKEHJS_WARNING = """<script type="text/javascript">
if (window.Bokeh === undefined) {
  console.warn("adlearn.interactive: BokehJS is not on this page; show the page's first figure with include_bokehjs=True.");
}
</script>"""


def notebook_html(model: Model, *, include_bokehjs: bool = True) -> str:
    """``model`` as one self-contained HTML fragment: BokehJS (inline), its data and the embedding script.

    This is what :func:`show` displays; put it anywhere HTML goes (a notebook
    output, a Markdown cell's raw HTML, a page of your own).

    Args:
        model: a figure from this module (or any Bokeh model).
        include_bokehjs: ``False`` leaves out the BokehJS core (1.3 MB), keeping
            only the plugins the figure needs: for figures after the first on a
            page (the HTML book, Jupyter), not for Colab, where each output is
            its own page.

    Returns:
        The HTML fragment, a string.
    """
    from bokeh.embed import components

    script, div = components(model)
    scripts = _bokehjs_scripts(model, core=include_bokehjs)
    return "\n".join([div, scripts if include_bokehjs else _NO_BOKEHJS_WARNING + "\n" + scripts, script])


def show(model: Model, *, include_bokehjs: bool = True) -> None:
    """Display ``model`` in a notebook as one self-contained ``text/html`` output.

    The output works without a kernel: in the built Jupyter Book, in Colab
    (where every output is its own iframe), in JupyterLab (once the notebook
    is trusted, as for any output with JavaScript) and in nbviewer. A
    ``text/plain`` line stands in where HTML is not shown (a terminal, nbval).

    Args:
        model: a figure from this module (or any Bokeh model).
        include_bokehjs: see :func:`notebook_html`; ignored (always on) when
            running on Colab.

    Example::

        show(detection_browser(images, maps, masks=masks, normalizer=normalizer))
    """
    from IPython.display import display

    if "google.colab" in sys.modules:
        include_bokehjs = True  # Colab shows every output in its own iframe: each needs its own BokehJS
    kind = model.name or type(model).__name__
    display({
        "text/html": notebook_html(model, include_bokehjs=include_bokehjs),
        "text/plain": f"<interactive figure: {kind}; shown in the HTML book, Jupyter and Colab>",
    }, raw=True)


def save_html(model: Model, path: str | Path, *, title: str = "adlearn figure") -> Path:
    """Write ``model`` as a standalone HTML page with BokehJS inline (nothing fetched from a CDN).

    Args:
        model: a figure from this module (or any Bokeh model).
        path: the ``.html`` file to write; its folder must exist.
        title: the page's title.

    Returns:
        The path written.

    Example::

        save_html(embedding_scatter(points, labels=labels), "embedding.html", title="t-SNE of the test set")
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    path = Path(path)
    path.write_text(file_html(model, INLINE, title=title), encoding="utf-8")
    return path


def figure_bytes(model: Model) -> int:
    """Bytes ``model`` adds to a page or notebook output besides BokehJS: what the size budget limits.

    That is the figure's serialised document (its data; Bokeh compresses array
    buffers) and the script that embeds it.
    """
    from bokeh.embed import components

    had_document = model.document is not None
    script, div = components(model)
    if not had_document and model.document is not None:
        # measuring must not tie the figure to a document: a chapter may still put it in a layout
        model.document.remove_root(model)
    return len(script.encode("utf-8")) + len(div.encode("utf-8"))
