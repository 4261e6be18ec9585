"""Tests of adlearn.interactive: inputs checked at the boundary, pages within their size budget, and the
figures working in a real browser (headless Chromium): the threshold slider changes the predicted mask and
its IoU, the image slider switches images, hovering a point shows its thumbnail, variants switch, a notebook
output renders in a Jupyter Book page, and the console stays free of errors."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlearn import interactive
from adlearn.calibration import MapNormalizer

N_IMAGES, SIZE = 6, 64
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"  # Debian puts it there
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
INSTALL_HINT = ("install them with `apt-get update && apt-get install -y chromium chromium-driver` "
                "and `pip install selenium` (.ci/run does this on CI)")


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def detections() -> dict:
    """Six 64x64 RGB images, square defects in five of them, maps that light up on the defects."""
    generator = np.random.default_rng(0)
    images = generator.random((N_IMAGES, 3, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((N_IMAGES, 1, SIZE, SIZE), np.float32)
    for index in range(1, N_IMAGES):
        top, left = 8 + 6 * index, 4 + 7 * index
        masks[index, :, top:top + 16, left:left + 12] = 1
    maps = (2 * masks + generator.normal(0, 0.4, masks.shape)).astype(np.float32)
    normalizer = MapNormalizer().fit(generator.normal(0, 0.4, (4, 1, SIZE, SIZE)))
    return {
        "images": torch.from_numpy(images),  # tensors and arrays both accepted
        "maps": maps,
        "masks": masks,
        "reconstructions": np.clip(images * 0.8 + 0.1, 0, 1),
        "scores": maps.reshape(N_IMAGES, -1).max(axis=1),
        "titles": ["good/000.png"] + [f"cut/{i:03d}.png" for i in range(1, N_IMAGES)],
        "normalizer": normalizer,
    }


def browser_figure(detections: dict, **kwargs):
    return interactive.detection_browser(
        detections["images"], detections["maps"], masks=detections["masks"],
        reconstructions=detections["reconstructions"], scores=detections["scores"],
        titles=detections["titles"], normalizer=detections["normalizer"], **kwargs)


def scatter_figure(detections: dict):
    points = np.random.default_rng(1).normal(size=(N_IMAGES, 2)) * 10
    labels = ["good"] + ["cut"] * (N_IMAGES - 1)
    return interactive.embedding_scatter(points, labels=labels, thumbnails=detections["images"],
                                         scores=detections["scores"], title="t-SNE of the test set")


def variant_figure(detections: dict, control: str = "select"):
    images, masks = detections["images"].numpy(), detections["masks"]
    variants = {f"scale {2 ** i}": np.stack([images[i], np.repeat(masks[i], 3, axis=0)]) for i in range(4)}
    return interactive.variant_explorer(variants, titles=["image", "mask"], control=control)


def model(layout, name: str):
    found = layout.select_one({"name": name})
    assert found is not None, f"no model named {name!r}"
    return found


def expected_iou(detections: dict, index: int, threshold: float, size: int = SIZE) -> float:
    """IoU of `map >= threshold` with the ground truth, at display resolution, computed independently."""
    pooled = torch.nn.functional.interpolate(torch.from_numpy(detections["maps"][index:index + 1]), size=size,
                                             mode="area")[0, 0].numpy()
    truth = torch.nn.functional.interpolate(torch.from_numpy(detections["masks"][index:index + 1]), size=size,
                                            mode="area")[0, 0].numpy() >= 0.5
    predicted = pooled >= threshold
    return float((predicted & truth).sum() / (predicted | truth).sum())


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(images=d["images"][0]),
     r"images must be \[N, C, H, W\] with C = 1 or 3, got shape \(3, 64, 64\)"),
    (lambda d: d.update(images=d["images"] * 255), r"images must be in \[0, 1\].*divide 8-bit images by 255"),
    (lambda d: d.update(maps=d["maps"][:4]), r"maps has 4 entries but images has 6"),
    (lambda d: d.update(maps=d["maps"][..., :32, :32]),
     r"maps is \(32, 32\) per image but the images are \(64, 64\); resize"),
    (lambda d: d.update(maps=np.where(d["masks"] > 0, np.nan, d["maps"])), r"maps contains NaN"),
    (lambda d: d.update(masks=d["masks"] * 255), r"masks must hold 0 and 1, got values from 0 to 255"),
    (lambda d: d.update(reconstructions=d["reconstructions"][:, :, :32]), r"reconstructions are \(32, 64\) per image"),
    (lambda d: d.update(scores=d["scores"][:3]), r"scores has 3 values but there are 6"),
    (lambda d: d.update(titles=d["titles"][:2]), r"titles has 2 entries but there are 6"),
], ids=["images-3d", "images-0-255", "maps-count", "maps-size", "maps-nan", "masks-0-255", "reconstructions-size",
        "scores-count", "titles-count"])
def test_detection_browser_names_what_is_wrong(detections, change, message):
    broken = dict(detections)
    change(broken)
    with pytest.raises(ValueError, match=message):
        browser_figure(broken)


def test_detection_browser_rejects_a_normalizer_without_a_scale(detections):
    with pytest.raises(TypeError, match="normalizer must have vmin and vmax"):
        browser_figure({**detections, "normalizer": object()})


def test_detection_browser_ships_display_size_arrays(detections):
    layout = browser_figure(detections, display_size=32)
    store = model(layout, "detection_data").data
    assert len(store["code"]) == len(store["image"]) == len(store["mask"]) == len(store["reconstruction"]) == N_IMAGES
    assert all(code.shape == (32, 32) and code.dtype == np.uint8 for code in store["code"])
    assert all(bits.shape == (32 * 32 // 8,) and bits.dtype == np.uint8 for bits in store["mask"])  # packed bits
    assert store["score_text"][1] == f"{detections['scores'][1]:.4g}"
    for view in ("heat_view", "prediction_view", "truth_view"):
        assert model(layout, view).data["image"][0].shape == (32, 32)
    for uri in store["image"] + store["reconstruction"]:
        assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size == (32, 32)
    # Images larger than display_size are shrunk; smaller ones are never blown up.
    assert model(browser_figure(detections, display_size=256), "detection_data").data["code"][0].shape == (64, 64)


def test_codes_reproduce_the_threshold_and_the_first_view_is_right(detections):
    """The uint8 codes shipped to the page give `map >= threshold` at any slider position (up to one step)."""
    layout = browser_figure(detections)
    slider = model(layout, "threshold_slider")
    normalizer = detections["normalizer"]
    assert slider.start == pytest.approx(normalizer.vmin) and slider.end == pytest.approx(normalizer.vmax)
    assert slider.step == pytest.approx((slider.end - slider.start) / 255)
    assert slider.value == pytest.approx(0.5 * (normalizer.vmin + normalizer.vmax), abs=slider.step)
    codes = model(layout, "detection_data").data["code"][1][::-1]  # shipped upside down
    pooled = detections["maps"][1, 0]
    for k in (10, 128, 200):
        threshold = slider.start + k * slider.step
        mismatched = (codes >= k) != (pooled >= threshold)
        near = np.abs(pooled - threshold) <= slider.step / 2 + 1e-6
        assert not (mismatched & ~near).any()
    text = model(layout, "detection_info").text
    assert text.startswith("<b>good/000.png</b>") and "IoU n/a (no defect in the ground truth)" in text


def test_threshold_outside_the_scale_widens_the_slider(detections):
    slider = model(browser_figure(detections, threshold=50.0), "threshold_slider")
    assert slider.end == pytest.approx(50.0) and slider.value == pytest.approx(50.0)


def test_detection_browser_takes_test_predictions_layout(detections):
    """[N, H, W] maps and bool masks, as adlearn.evaluation.TestPredictions holds them."""
    layout = interactive.detection_browser(detections["images"], detections["maps"][:, 0],
                                           masks=detections["masks"][:, 0] > 0.5)
    assert len(model(layout, "detection_data").data["mask"]) == N_IMAGES


def test_detection_browser_without_optional_inputs(detections):
    layout = interactive.detection_browser(detections["images"][:1], detections["maps"][:1])
    assert layout.select_one({"name": "image_slider"}) is None  # one image: nothing to pick
    assert layout.select_one({"name": "truth_view"}) is None
    assert "IoU" not in model(layout, "detection_info").text and "score" not in model(layout, "detection_info").text


def test_embedding_scatter_checks_inputs(detections):
    points = np.zeros((N_IMAGES, 2))
    with pytest.raises(ValueError, match=r"points must be \[N, 2\]"):
        interactive.embedding_scatter(np.zeros((N_IMAGES, 3)), labels=["a"] * N_IMAGES)
    with pytest.raises(ValueError, match="labels has 2 entries but there are 6"):
        interactive.embedding_scatter(points, labels=["a", "b"])
    with pytest.raises(TypeError, match="single string"):
        interactive.embedding_scatter(points, labels="good")
    with pytest.raises(ValueError, match="thumbnails has 2 images but images has 6"):
        interactive.embedding_scatter(points, labels=["a"] * N_IMAGES, thumbnails=detections["images"][:2])
    labels = interactive.embedding_scatter(points, labels=torch.tensor([0, 1] * 3)).select_one(
        {"name": "embedding_points"}).data["label"]
    assert labels == ["0", "1"] * 3


def test_thumbnails_are_small_data_uris_within_budget(detections):
    plot = scatter_figure(detections)
    data = model(plot, "embedding_points").data
    assert len(data["thumbnail"]) == len(data["x"]) == len(data["label"]) == len(data["score"]) == N_IMAGES
    for uri in data["thumbnail"]:
        assert re.match(r"data:image/(png|jpeg);base64,", uri)
        assert max(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size) <= 64
        assert len(uri) < 8_000  # a 64 px thumbnail, not the full image
    assert "@thumbnail" in model(plot, "thumbnail_hover").tooltips
    assert interactive.figure_bytes(plot) < interactive.FIGURE_BUDGET_BYTES


def test_over_budget_figures_say_what_to_reduce(detections):
    with pytest.raises(ValueError, match=r"over the budget of 0.01 MB; pass fewer images or a smaller display_size"):
        browser_figure(detections, max_bytes=10_000)
    with pytest.raises(ValueError, match="smaller thumbnail_size"):
        interactive.embedding_scatter(np.zeros((N_IMAGES, 2)), labels=["a"] * N_IMAGES,
                                      thumbnails=detections["images"], max_bytes=5_000)


def test_variant_explorer_checks_inputs(detections):
    image = detections["images"][0]
    with pytest.raises(ValueError, match="non-empty dict"):
        interactive.variant_explorer({})
    with pytest.raises(ValueError, match=r"variants\['b'\] is \(1, 3, 32, 32\) but variants\['a'\] is \(1, 3, 64"):
        interactive.variant_explorer({"a": image, "b": image[:, :32, :32]})
    with pytest.raises(ValueError, match="control must be 'slider' or 'select'"):
        interactive.variant_explorer({"a": image}, control="knob")
    with pytest.raises(ValueError, match="titles has 3 entries but there are 1"):
        interactive.variant_explorer({"a": image}, titles=["x", "y", "z"])
    layout = variant_figure(detections, control="slider")
    store = model(layout, "variant_data").data
    assert set(store) == {"url_0", "url_1"} and all(len(urls) == 4 for urls in store.values())
    assert model(layout, "variant_control").end == 3


def test_save_html_is_standalone_and_within_budget(detections, tmp_path):
    sizes = {}
    bokehjs = len(interactive._bokehjs_scripts(browser_figure(detections)))
    for name, figure in (("detection", browser_figure(detections)), ("scatter", scatter_figure(detections)),
                         ("variants", variant_figure(detections))):
        page = interactive.save_html(figure, tmp_path / f"{name}.html", title=name).read_text()
        assert "BEGIN bokeh.min.js" in page and "<title>" + name + "</title>" in page
        assert not re.search(r"<script[^>]+src=", page) and "cdn.bokeh.org" not in page  # nothing fetched
        sizes[name] = len(page.encode())
        assert sizes[name] - bokehjs < interactive.FIGURE_BUDGET_BYTES
    print("page sizes (bytes):", sizes, "of which BokehJS core + widgets:", bokehjs)


def test_show_publishes_one_self_contained_html_bundle(detections, monkeypatch):
    published = []
    monkeypatch.setattr("IPython.display.display", lambda *objects, **kwargs: published.append((objects, kwargs)))
    figure = browser_figure(detections)
    interactive.show(figure)
    [(objects, kwargs)] = published
    assert kwargs == {"raw": True}
    bundle = objects[0]
    assert set(bundle) == {"text/html", "text/plain"} and "interactive figure" in bundle["text/plain"]
    html = bundle["text/html"]
    assert "BEGIN bokeh.min.js" in html and "BEGIN bokeh-widgets.min.js" in html
    assert "data-root-id" in html and not re.search(r"<script[^>]+src=", html)
    light = interactive.notebook_html(figure, include_bokehjs=False)
    assert "BEGIN bokeh.min.js" not in light and "BEGIN bokeh-widgets.min.js" in light  # the plugin stays
    assert len(light) < len(html) - 1_000_000
    # On Colab every output is its own iframe: the core is always included there.
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    interactive.show(figure, include_bokehjs=False)
    assert "BEGIN bokeh.min.js" in published[-1][0][0]["text/html"]


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module, with its console log kept."""
    missing = [name for name, path in (("chromium", shutil.which("chromium") or shutil.which("chromium-browser")),
                                       ("chromedriver", CHROMEDRIVER if Path(CHROMEDRIVER).exists() else None))
               if path is None]
    if missing:
        pytest.skip(f"browser test needs {' and '.join(missing)}: {INSTALL_HINT}")
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"browser test needs selenium: {INSTALL_HINT}")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


# Finds a model's view anywhere under the page's root views (Bokeh.index only maps roots).
_FIND_VIEW = """
function findView(model) {
  const stack = [...Bokeh.index.roots];
  while (stack.length) {
    const view = stack.pop();
    if (view.model === model) return view;
    if (typeof view.children === "function") { for (const child of view.children()) stack.push(child); }
  }
  return null;
}
function byName(name) {
  for (const doc of Bokeh.documents) { const found = doc.get_model_by_name(name); if (found) return found; }
  return null;
}
"""


def open_page(driver, path: Path, roots: int = 1) -> None:
    driver.get(path.resolve().as_uri())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if driver.execute_script("return window.Bokeh !== undefined && Bokeh.index.roots.length >= arguments[0] && "
                                 "Bokeh.index.roots.every(view => view.is_idle)", roots):
            return
        time.sleep(0.05)
    raise AssertionError(f"Bokeh did not render {roots} figure(s) in {path.name}; console: {driver.get_log('browser')}")


def js(driver, code: str, *args):
    return driver.execute_script(_FIND_VIEW + code, *args)


def wait_for(driver, code: str, *args, timeout: float = 5.0):
    """Poll `code` (a JS expression) until it is truthy: CustomJS callbacks run asynchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = js(driver, f"return ({code});", *args)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {code}")


def console_problems(driver, allowed: tuple[str, ...] = ()) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING") and not any(text in entry["message"] for text in allowed)]


def info_text(driver) -> str:
    return js(driver, "return byName('detection_info').text;")


def test_threshold_slider_drag_changes_the_mask_and_iou_in_the_browser(browser, detections, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    page = interactive.save_html(browser_figure(detections), tmp_path / "detection.html")
    open_page(browser, page)
    browser.get_log("browser")  # keep only what happens from here on
    js(browser, "byName('image_slider').value = 2;")  # an image with a defect
    wait_for(browser, "byName('detection_info').text.includes('cut/002.png')")
    before, start_value = info_text(browser), js(browser, "return byName('threshold_slider').value;")
    counts = "const c = [0, 0, 0, 0]; for (const v of byName('prediction_view').data.image[0]) c[v]++; return c;"
    counts_before = js(browser, counts)

    # Drag the slider's handle to the left with the mouse, as a reader would.
    x, y = js(browser, """
        const view = findView(byName('threshold_slider'));
        const handle = view.shadow_el.querySelector('.noUi-handle');
        const box = handle.getBoundingClientRect();
        return [box.left + box.width / 2, box.top + box.height / 2];""")
    drag = ActionChains(browser)
    drag.w3c_actions.pointer_action.move_to_location(int(x), int(y))
    drag.w3c_actions.pointer_action.pointer_down()
    drag.w3c_actions.pointer_action.move_to_location(int(x) - 70, int(y))
    drag.w3c_actions.pointer_action.pointer_up()
    drag.perform()

    value = js(browser, "return byName('threshold_slider').value;")
    assert value < start_value, "dragging the handle left did not lower the threshold"
    after = wait_for(browser, "byName('detection_info').text !== arguments[0] && byName('detection_info').text",
                     before)
    decimals = interactive._decimals(js(browser, "return byName('threshold_slider').step;"))
    assert "cut/002.png" in after and f"threshold {value:.{decimals}f}" in after
    shown_iou = float(re.search(r"IoU (\d\.\d{3})", after).group(1))
    assert shown_iou == pytest.approx(expected_iou(detections, 2, value), abs=0.02)
    counts_after = js(browser, counts)
    assert counts_after != counts_before and counts_after[1] + counts_after[3] > counts_before[1] + counts_before[3]
    assert console_problems(browser) == []


def test_image_slider_switches_every_panel(browser, detections, tmp_path):
    page = interactive.save_html(browser_figure(detections), tmp_path / "detection.html")
    open_page(browser, page)
    browser.get_log("browser")
    js(browser, "byName('image_slider').value = 4;")
    text = wait_for(browser, "byName('detection_info').text.includes('cut/004.png') && byName('detection_info').text")
    assert f"score {detections['scores'][4]:.4g}" in text
    value = js(browser, "return byName('threshold_slider').value;")
    shown_iou = float(re.search(r"IoU (\d\.\d{3})", text).group(1))
    assert shown_iou == pytest.approx(expected_iou(detections, 4, value), abs=0.02)
    same = js(browser, """
        const store = byName('detection_data').data;
        const heat = byName('heat_view').data.image[0], code = store.code[4];
        return [heat.every((v, i) => v === code[i]), byName('picture_view').data.url[0] === store.image[4],
                byName('reconstruction_view').data.url[0] === store.reconstruction[4],
                byName('truth_view').data.image[0].reduce((a, b) => a + b, 0)];""")
    assert same[:3] == [True, True, True]
    assert same[3] == int((torch.nn.functional.interpolate(torch.from_numpy(detections["masks"][4:5]), size=SIZE,
                                                           mode="area") >= 0.5).sum())
    assert console_problems(browser) == []


def test_hovering_a_point_shows_its_thumbnail(browser, detections, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    page = interactive.save_html(scatter_figure(detections), tmp_path / "scatter.html")
    open_page(browser, page)
    browser.get_log("browser")
    index = 3
    x, y, thumbnail = js(browser, """
        const plot = byName('embedding_scatter'), data = byName('embedding_points').data;
        const view = findView(plot), box = view.canvas_view.el.getBoundingClientRect();
        const i = arguments[0];
        return [box.left + view.frame.x_scale.compute(data.x[i]), box.top + view.frame.y_scale.compute(data.y[i]),
                data.thumbnail[i]];""", index)
    hover = ActionChains(browser)
    hover.w3c_actions.pointer_action.move_to_location(int(x), int(y))
    hover.perform()
    shown = wait_for(browser, """(() => {
        const found = [];
        const walk = (root) => { for (const el of root.querySelectorAll('*')) {
            if (el.shadowRoot) walk(el.shadowRoot);
            if (el.tagName === 'IMG' && el.src.startsWith('data:image') && el.getBoundingClientRect().width > 0)
              found.push([el.src, el.parentElement.textContent]); } };
        walk(document);
        return found.length ? found : null; })()""")
    assert [src for src, _ in shown] == [thumbnail]
    assert "cut" in shown[0][1] and f"#{index}" in shown[0][1] and f"{detections['scores'][index]:.3f}" in shown[0][1]
    assert console_problems(browser) == []


@pytest.mark.parametrize("control", ["select", "slider"])
def test_variants_switch_in_the_browser(browser, detections, tmp_path, control):
    page = interactive.save_html(variant_figure(detections, control), tmp_path / f"variants_{control}.html")
    open_page(browser, page)
    browser.get_log("browser")
    js(browser, "byName('variant_control').value = arguments[0];", "scale 4" if control == "select" else 2)
    wait_for(browser, "byName('variant_label').text === '<b>scale 4</b>'")
    assert js(browser, """const store = byName('variant_data').data;
        return [0, 1].every(j => byName('variant_view_' + j).data.url[0] === store['url_' + j][2]);""")
    assert console_problems(browser) == []


def test_notebook_outputs_render_one_after_another(browser, detections, tmp_path):
    """`show` outputs on one page as in a chapter: a scatter (BokehJS core only), then two widget figures
    without the core; the first of them brings the widgets plugin, the second finds it there."""
    outputs = [interactive.notebook_html(scatter_figure(detections)),
               interactive.notebook_html(browser_figure(detections), include_bokehjs=False),
               interactive.notebook_html(variant_figure(detections), include_bokehjs=False)]
    assert "BEGIN bokeh-widgets.min.js" not in outputs[0] and "BEGIN bokeh.min.js" not in outputs[1]
    page = tmp_path / "outputs.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    + "".join(f"<p>Output {i}</p>{html}" for i, html in enumerate(outputs)) + "</body></html>")
    open_page(browser, page, roots=3)
    assert js(browser, "return Bokeh.documents.length;") == 3
    js(browser, "byName('threshold_slider').value = byName('threshold_slider').start;")
    wait_for(browser, "byName('detection_info').text.includes('predicted 100.0 % of pixels')")
    assert console_problems(browser) == []


def _jupyter_book() -> str | None:
    found = shutil.which("jupyter-book")
    beside = Path(sys.executable).with_name("jupyter-book")
    return found or (str(beside) if beside.exists() else None)


# The book theme's own console noise on file:// pages, present on pages without any figure too.
_THEME_CONSOLE_NOISE = ("THEBE_JS_URL", "invalid theme mode")


def test_a_saved_notebook_output_works_in_a_built_jupyter_book_page(browser, detections, tmp_path):
    """What `show` leaves in a notebook, built by Jupyter Book (no kernel, execution off) and opened."""
    executable = _jupyter_book()
    if executable is None:
        pytest.skip("jupyter-book is not installed (pip install -r requirements.txt)")
    figure = browser_figure(detections)
    bundle = {"text/html": interactive.notebook_html(figure), "text/plain": "<interactive figure>"}
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# A page with a figure\n"]},
        {"cell_type": "code", "execution_count": 1, "metadata": {"tags": ["remove-input"]},
         "source": ["show(detection_browser(images, maps))"],
         "outputs": [{"output_type": "display_data", "metadata": {}, "data": bundle}]},
    ]
    notebook = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    book = tmp_path / "book"
    book.mkdir()
    (book / "page.ipynb").write_text(json.dumps(notebook))
    (book / "_config.yml").write_text("title: test\nexecute:\n  execute_notebooks: 'off'\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    result = subprocess.run([executable, "build", str(book)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    open_page(browser, book / "_build" / "html" / "page.html")
    js(browser, "byName('image_slider').value = 1;")
    wait_for(browser, "byName('detection_info').text.includes('cut/001.png')")
    assert console_problems(browser, allowed=_THEME_CONSOLE_NOISE) == []


def test_figures_can_be_combined_in_one_layout_after_their_size_check():
    from bokeh.layouts import column

    from adlearn.interactive import figure_bytes, variant_explorer

    first = variant_explorer({"a": np.zeros((1, 3, 16, 16)), "b": np.ones((1, 3, 16, 16))})
    second = variant_explorer({"c": np.zeros((1, 3, 16, 16)), "d": np.ones((1, 3, 16, 16))})
    assert first.document is None and second.document is None  # the budget check left them free
    assert figure_bytes(column(first, second)) > 0  # one document for both: no "owned by a single document" error
