"""The built-in data set: an MVTec-layout folder generated offline in seconds from real photographs.

The book must run without a network, so its default data set is built on
first use from photographs that ship inside scikit-image (CC0 texture photos
of a brick wall, grass and gravel):

* ``brick``, ``grass``, ``gravel`` -- texture categories. Training images are
  random views of the photograph (crop position, scale +-5 %, rotation +-5
  degrees, flips, brightness, white balance and contrast jitter, sensor noise);
  test images are new random views of the same photograph, so good test images
  come from the same distribution as the training images (see ``_VIEW_ROWS``
  for why no band of the photograph is held out).
* ``washer`` -- an object category: a flat metal ring (its turned-metal
  texture comes from the gravel photograph) on a plain surface, with small
  jitter of position, size, lighting direction and brightness.

Test defects are painted by :mod:`adlearn.data.surface_defects` (scratch,
crack, hole, stain for the textures; scratch, crack, stain and a missing piece
for the washer): geometric strokes and blobs, deliberately unlike the
training-time anomaly simulators of the book.

Each mask marks where the defect is visible: a defect's faint fringe (a
crack's faint lighter lip, the soft edge of a broken-out piece or of a hole's
rim) changes many pixels by a few grey levels, within the sensor noise (2
levels standard deviation); pixels whose
largest channel change is below :data:`VISIBLE_CHANGE` (8 levels of 8 bit) are
reset to the clean picture, and so are isolated specks of a few pixels. The
mask is then exactly the set of pixels where the written image and the clean
picture differ, each by at least 8 levels on some channel. A defect that comes
out smaller or larger than :data:`DEFECT_AREA_RANGE` of the image is redrawn.

Per category there are 80 training images, 60 good test images and 15 test
images of each of the 4 defect types (60 defective), so one test image moves
the image AUROC by at most 1/60 (about 0.017). Version 2 of the builder (the
folder ``builtin_v2``) introduced these counts and the visibility threshold;
version 3 (``builtin_v3``) takes the grass and gravel test views from the
whole photograph instead of its bottom rows (brick and washer images are the
same bytes as in version 2, see :data:`CATEGORY_CHANGED_IN`). A folder of an
older version is not re-used.

Everything is determined by the seed: each image has its own random stream,
derived from ``(seed, category, split, defect type, index)``, so building the
same settings twice gives the same bytes. A manifest file written after each
category marks a complete build; :func:`builtin_dataset_root` re-uses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from adlearn.data import surface_defects
from adlearn.data.paths import default_data_root

BUILDER_VERSION = 3  # 2: 60 good + 60 defective test images, masks only where the change is visible;
                     # 3: grass and gravel test views from the whole photograph (was: its bottom rows)
BUILTIN_CATEGORIES: tuple[str, ...] = ("brick", "grass", "gravel", "washer")
TEXTURE_CATEGORIES: tuple[str, ...] = ("brick", "grass", "gravel")
BUILTIN_DEFECTS: dict[str, tuple[str, ...]] = {
    "brick": ("crack", "hole", "scratch", "stain"),
    "grass": ("crack", "hole", "scratch", "stain"),
    "gravel": ("crack", "hole", "scratch", "stain"),
    "washer": ("crack", "missing", "scratch", "stain"),
}
MANIFEST_NAME = "adlearn_builtin.json"
WORK_SIZE = 256  # images and defects are drawn at this size, then resized to image_size
DEFECT_AREA_RANGE = (0.004, 0.10)  # fraction of the image a test defect may cover
_MIN_REGION_PIXELS = 12  # smaller isolated pieces of a defect are undone (at 256x256)
# The smallest visible change, in 8-bit levels on the channel the defect changed most.
# The sensor noise has a standard deviation of 0.008 * 255 = 2 levels, so a good image's
# pixels wander by about +-4 levels (2 sigma) around the noiseless picture; a change of 8
# levels (4 sigma) stands out of that noise at a single pixel, a smaller one does not
# (it is the defect's faint fringe: a crack's lighter lip, which made half of a v1 crack
# mask, the soft edge of a broken-out piece or of a hole's rim). Such smaller changes
# are undone, so the mask marks the pixels where the defect can be seen. Changing the
# value changes the masks and images: bump BUILDER_VERSION with it.
VISIBLE_CHANGE = 8

# Stable numbers for the random streams (never reorder: it would change every image).
_CATEGORY_CODES = {"brick": 0, "grass": 1, "gravel": 2, "washer": 3}
_KIND_CODES = {"train": 0, "good": 1, "crack": 2, "hole": 3, "scratch": 4, "stain": 5, "missing": 6}

# Grey photograph -> colour: piecewise-linear ramps (position in the normalised grey range, RGB).
_COLOUR_RAMPS: dict[str, list[tuple[float, tuple[float, float, float]]]] = {
    "brick": [(0.0, (0.20, 0.07, 0.05)), (0.22, (0.58, 0.24, 0.15)), (0.55, (0.74, 0.50, 0.40)), (1.0, (0.90, 0.87, 0.80))],
    "grass": [(0.0, (0.04, 0.09, 0.02)), (0.45, (0.26, 0.46, 0.12)), (1.0, (0.80, 0.90, 0.50))],
    "gravel": [(0.0, (0.10, 0.09, 0.08)), (0.50, (0.53, 0.49, 0.44)), (1.0, (0.95, 0.92, 0.86))],
}
# Stain colours that show on each surface (rust on red brick would be invisible).
_STAIN_TINTS = {
    "brick": ("oil", "bleach"),
    "grass": ("oil", "rust", "bleach"),
    "gravel": ("oil", "rust", "bleach"),
    "washer": ("oil", "rust", "bleach"),
}
# Rows of the 512x512 photograph that training and test views come from: all of them,
# for training and test alike. A held-out band is a different surface, not new views of
# the same one. The brick photograph was taken in perspective (its bricks grow and fan
# out towards the bottom). Version 2 held out the bottom rows (300-512) of grass and
# gravel, assuming they look alike everywhere; they do not (grass: more clover leaves at
# the top, finer blades below). A frozen ImageNet feature k-NN fitted on 60 training
# images told 20 other *training* images from the good *test* images with AUROC 0.98
# (grass) and 0.95 (gravel), and scored the good test images about as high as the
# defective ones (image AUROC 0.65 / 0.70), while the held-out training images against
# the defective ones gave 0.99 / 0.98 (benchmarks/README.md, "The built-in data set,
# version 3"). The test set measured the shift, not the defects.
_VIEW_ROWS: dict[str, dict[str, tuple[int, int]]] = {
    "brick": {"train": (0, 512), "test": (0, 512)},
    "grass": {"train": (0, 512), "test": (0, 512)},
    "gravel": {"train": (0, 512), "test": (0, 512)},
}
# The builder version that last changed each category's images: results measured on an
# older version of a category are not results on the current one (adlearn.notebook).
CATEGORY_CHANGED_IN: dict[str, int] = {"brick": 2, "grass": 3, "gravel": 3, "washer": 2}
_CROP_SIDE = 184.0        # photograph pixels per view side (before scale jitter)


@dataclass(frozen=True)
class BuiltinSettings:
    """Everything that determines the built-in data set's bytes (recorded in the manifest)."""

    seed: int = 0
    image_size: int = 256
    n_train: int = 80
    n_test_good: int = 60
    n_test_per_defect: int = 15

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{field.name} must be an int; got {value!r}.")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels; got {self.image_size}.")
        if self.n_train < 1 or self.n_test_good < 0 or self.n_test_per_defect < 1:
            raise ValueError(
                f"expected n_train >= 1, n_test_good >= 0 and n_test_per_defect >= 1; got {self}."
            )

    def folder_name(self) -> str:
        """The default folder name: ``builtin_v3`` for the defaults, plus a digest otherwise."""
        if self == BuiltinSettings():
            return f"builtin_v{BUILDER_VERSION}"
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"builtin_v{BUILDER_VERSION}_{digest}"


# --------------------------------------------------------------------------- rendering


def _rng(settings: BuiltinSettings, category: str, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([settings.seed, _CATEGORY_CODES[category], _KIND_CODES[kind], index])


@functools.lru_cache(maxsize=None)
def _photograph(name: str) -> np.ndarray:
    """A scikit-image texture photograph (bundled in the wheel), grey, normalised to [0, 1]."""
    import skimage.data

    grey = getattr(skimage.data, name)().astype(np.float32)
    low, high = np.percentile(grey, [0.5, 99.5])
    return np.clip((grey - low) / (high - low), 0.0, 1.0)


@functools.lru_cache(maxsize=None)
def _coloured_photograph(category: str) -> np.ndarray:
    grey = _photograph(category)
    positions = [position for position, _ in _COLOUR_RAMPS[category]]
    channels = [
        np.interp(grey, positions, [colour[channel] for _, colour in _COLOUR_RAMPS[category]])
        for channel in range(3)
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


def _view(source: np.ndarray, rng: np.random.Generator, rows: tuple[int, int], side: float,
          max_angle: float) -> np.ndarray:
    """A rotated, scaled square view of ``source`` (``WORK_SIZE`` pixels) inside the band ``rows``."""
    angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
    half_extent = side / 2 * (abs(np.cos(angle)) + abs(np.sin(angle)))
    width = source.shape[1]
    centre_x = rng.uniform(half_extent, width - half_extent)
    centre_y = rng.uniform(rows[0] + half_extent, rows[1] - half_extent)
    scale = side / WORK_SIZE
    a, b = scale * np.cos(angle), scale * np.sin(angle)
    middle = (WORK_SIZE - 1) / 2
    # Maps output pixel (u, v) to photograph position (x, y); used with WARP_INVERSE_MAP.
    matrix = np.array(
        [[a, -b, centre_x - a * middle + b * middle], [b, a, centre_y - b * middle - a * middle]], dtype=np.float64
    )
    return cv2.warpAffine(
        source, matrix, (WORK_SIZE, WORK_SIZE), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )


def _photometric_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    gain = rng.uniform(1 - 0.07 * strength, 1 + 0.07 * strength)
    white_balance = rng.uniform(1 - 0.03 * strength, 1 + 0.03 * strength, size=3).astype(np.float32)
    contrast = rng.uniform(1 - 0.06 * strength, 1 + 0.06 * strength)
    mean = image.mean(axis=(0, 1))
    # ((image - mean) * contrast + mean) * gain * white_balance, as one multiply-add per pixel
    scale = (contrast * gain * white_balance).astype(np.float32)
    offset = (mean * (1.0 - contrast) * gain * white_balance).astype(np.float32)
    return np.clip(image * scale + offset, 0.0, 1.0)


def _texture_clean(category: str, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    side = _CROP_SIDE * rng.uniform(0.95, 1.05)
    rows = _VIEW_ROWS[category]["test" if held_out else "train"]
    view = _view(_coloured_photograph(category), rng, rows, side, 5.0)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    if rng.random() < 0.5:
        view = view[::-1, :]
    return _photometric_jitter(np.ascontiguousarray(view), rng)


@functools.lru_cache(maxsize=1)
def _pixel_grid() -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:WORK_SIZE, 0:WORK_SIZE].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


@dataclass
class WasherScene:
    """The layers of one washer picture, kept apart so a defect can remove part of the object."""

    background: np.ndarray  # [H, W, 3]
    surface: np.ndarray     # [H, W, 3] the shaded metal, defined everywhere
    coverage: np.ndarray    # [H, W] in [0, 1]: how much of each pixel the washer covers
    centre: np.ndarray      # (x, y)
    outer_radius: float
    inner_radius: float

    def compose(self) -> np.ndarray:
        alpha = self.coverage[..., None]
        return self.background * (1.0 - alpha) + self.surface * alpha


def _washer_scene(rng: np.random.Generator, held_out: bool) -> WasherScene:
    size = WORK_SIZE
    ys, xs = _pixel_grid()
    centre = np.array([size / 2 - 0.5, size / 2 - 0.5]) + rng.uniform(-6, 6, size=2)
    outer_radius = 88.0 * rng.uniform(0.97, 1.03)
    inner_radius = 40.0 * rng.uniform(0.95, 1.05)
    light = np.deg2rad(225.0 + rng.uniform(-15, 15))  # from the top left
    brightness = rng.uniform(0.94, 1.06)
    dx, dy = xs - centre[0], ys - centre[1]
    radius = np.sqrt(dx**2 + dy**2)
    azimuth = np.arctan2(dy, dx)
    facing_light = np.cos(azimuth - light)

    # Turned-metal texture: the gravel photograph sampled on rings around a point (so it
    # is periodic in angle), smeared along the rings, and wrapped around the washer's
    # centre: its streaks become concentric machining marks.
    gravel = _photograph("gravel")
    samples_per_turn = 180  # the streaks are smooth along a ring; few samples suffice
    turn = np.linspace(0, 2 * np.pi, samples_per_turn, endpoint=False, dtype=np.float32)
    ring_radii = np.arange(30, 124, dtype=np.float32)[:, None]
    source_x = rng.uniform(130, 382)
    source_y = 384.0 if held_out else 128.0  # held-out rings never overlap the training ones
    polar = cv2.remap(
        gravel, (source_x + ring_radii * np.cos(turn)).astype(np.float32),
        (source_y + ring_radii * np.sin(turn)).astype(np.float32), cv2.INTER_LINEAR,
    )
    pad = 32
    polar = cv2.GaussianBlur(np.pad(polar, ((0, 0), (pad, pad)), mode="wrap"), (0, 0), sigmaX=10, sigmaY=0.5)
    polar = np.ascontiguousarray(polar[:, pad:-pad])
    phase = rng.uniform(0, 2 * np.pi)
    map_x = (((azimuth + phase) / (2 * np.pi)) % 1.0 * samples_per_turn).astype(np.float32)
    map_y = np.clip(radius - inner_radius + 2, 0, polar.shape[0] - 1).astype(np.float32)
    streaks = cv2.remap(polar, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    streaks = (streaks - streaks.mean()) / (streaks.std() + 1e-6)

    metal = np.array([0.60, 0.61, 0.64], np.float32)
    shade = 1.0 + 0.07 * streaks + 0.10 * facing_light * radius / outer_radius
    outer_bevel = np.clip(1.0 - (outer_radius - radius) / 5.0, 0.0, 1.0)
    inner_bevel = np.clip(1.0 - (radius - inner_radius) / 4.0, 0.0, 1.0)
    shade += 0.30 * facing_light * outer_bevel - 0.30 * facing_light * inner_bevel
    surface = np.clip(metal * (shade * brightness)[..., None], 0.0, 1.0).astype(np.float32)
    coverage = np.clip(outer_radius - radius + 0.5, 0.0, 1.0) * np.clip(radius - inner_radius + 0.5, 0.0, 1.0)

    # A plain, softly lit surface under the washer, with a faint grain and a soft shadow.
    base = np.array([0.17, 0.18, 0.21], np.float32) * rng.uniform(0.92, 1.08)
    grain_top = int(rng.integers(0, 512 - size))
    grain = cv2.GaussianBlur(_photograph("grass")[grain_top: grain_top + size, :size], (0, 0), 2.0)
    lighting = 1.0 + 0.15 * ((xs - size / 2) * np.cos(light + np.pi) + (ys - size / 2) * np.sin(light + np.pi)) / size
    background = base * (lighting * (1.0 + 0.12 * (grain - grain.mean())))[..., None]
    offset = np.float32([[1, 0, -4 * np.cos(light)], [0, 1, -4 * np.sin(light)]])
    shadow = cv2.GaussianBlur(cv2.warpAffine(coverage.astype(np.float32), offset, (size, size)), (0, 0), 3.0)
    background = np.clip(background * (1.0 - 0.45 * shadow)[..., None], 0.0, 1.0).astype(np.float32)
    # One camera white balance for the whole picture (both layers), as a real camera would have.
    white_balance = rng.uniform(0.97, 1.03, size=3).astype(np.float32)
    background = np.clip(background * white_balance, 0.0, 1.0)
    surface = np.clip(surface * white_balance, 0.0, 1.0)
    return WasherScene(background, surface, coverage.astype(np.float32), centre, outer_radius, inner_radius)


def _paint(defect_type: str, category: str, clean: np.ndarray, rng: np.random.Generator,
           support: np.ndarray) -> np.ndarray:
    if defect_type == "stain":
        return surface_defects.paint_stain(clean, rng, support, tints=_STAIN_TINTS[category])
    return surface_defects.PAINTERS[defect_type](clean, rng, support)


def _washer_defect(scene: WasherScene, defect_type: str, rng: np.random.Generator) -> np.ndarray:
    clean = scene.compose()
    if defect_type == "missing":
        return surface_defects.paint_missing(
            rng, scene.coverage, scene.background, scene.surface, scene.centre, scene.outer_radius, scene.inner_radius
        )
    if defect_type == "crack":
        # Washers crack from an edge, roughly along the radius.
        on_outer = rng.random() < 0.5
        angle = rng.uniform(0, 2 * np.pi)
        edge = scene.outer_radius - 1.5 if on_outer else scene.inner_radius + 1.5
        start = scene.centre + edge * np.array([np.cos(angle), np.sin(angle)])
        heading = angle + (np.pi if on_outer else 0.0) + rng.normal(0, 0.3)
        return surface_defects.paint_crack(clean, rng, scene.coverage, start=start, heading=heading)
    return _paint(defect_type, "washer", clean, rng, scene.coverage)


def _finish(image: np.ndarray, noise: np.ndarray, image_size: int) -> np.ndarray:
    """Add the (shared) sensor noise, resize to ``image_size`` and quantise to 8-bit RGB."""
    noisy = np.clip(image + noise, 0.0, 1.0)
    if image_size != WORK_SIZE:
        interpolation = cv2.INTER_AREA if image_size < WORK_SIZE else cv2.INTER_CUBIC
        noisy = np.clip(cv2.resize(noisy, (image_size, image_size), interpolation=interpolation), 0.0, 1.0)
    return np.round(noisy * 255.0).astype(np.uint8)


def _visible_change(image: np.ndarray, clean: np.ndarray, image_size: int) -> np.ndarray:
    """Undo invisible changes and tiny isolated specks (in place); return the mask of the changed pixels.

    A defect's faint fringe changes many pixels by a few grey levels, less than
    the sensor noise moves them: lost in that noise, it cannot be seen, so pixels
    changed by less than :data:`VISIBLE_CHANGE` levels on every channel are reset
    to the clean picture. What is left can still hold a few scattered specks; as
    separate regions of the ground truth they would count as much as the defect
    itself in per-region metrics (AUPRO), so they are reset too. The mask stays
    exactly the set of pixels where ``image`` and ``clean`` differ, and each of
    them differs by at least :data:`VISIBLE_CHANGE` levels on some channel.
    """
    difference = np.abs(image.astype(np.int16) - clean.astype(np.int16)).max(axis=-1)
    faint = (difference > 0) & (difference < VISIBLE_CHANGE)
    image[faint] = clean[faint]
    changed = difference >= VISIBLE_CHANGE
    count, labels, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
    min_pixels = max(2, round(_MIN_REGION_PIXELS * (image_size / WORK_SIZE) ** 2))
    speck = stats[:, cv2.CC_STAT_AREA] < min_pixels
    speck[0] = False  # label 0 is the unchanged background
    if speck.any():
        reset = speck[labels]
        image[reset] = clean[reset]
        changed &= ~reset
    return changed


def render_item(
    category: str, kind: str, index: int, settings: BuiltinSettings = BuiltinSettings()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one image of the built-in data set exactly as the builder writes it.

    Args:
        category: one of :data:`BUILTIN_CATEGORIES`.
        kind: ``"train"``, ``"good"`` (a good test image) or a defect type of the category.
        index: the image number within its folder.
        settings: the data set's settings (seed and image size matter here).

    Returns:
        ``(clean, image, mask)``: the defect-free picture and the written picture
        (both uint8 ``[H, W, 3]``; identical for good images) and the boolean
        mask ``[H, W]`` of the pixels where they differ (each by at least
        :data:`VISIBLE_CHANGE` levels on some channel).
    """
    if category not in BUILTIN_CATEGORIES:
        raise ValueError(f"unknown built-in category {category!r}; expected one of {BUILTIN_CATEGORIES}.")
    if kind not in ("train", "good") + BUILTIN_DEFECTS[category]:
        raise ValueError(
            f"unknown kind {kind!r} for built-in category {category!r}; expected 'train', 'good' or one "
            f"of {BUILTIN_DEFECTS[category]}."
        )
    rng = _rng(settings, category, kind, index)
    held_out = kind != "train"
    if category == "washer":
        scene = _washer_scene(rng, held_out)
        clean = scene.compose()
    else:
        scene = None
        clean = _texture_clean(category, rng, held_out)
    noise = rng.standard_normal(size=clean.shape, dtype=np.float32) * np.float32(0.008)
    clean_u8 = _finish(clean, noise, settings.image_size)
    if kind in ("train", "good"):
        return clean_u8, clean_u8, np.zeros(clean_u8.shape[:2], dtype=bool)

    low, high = DEFECT_AREA_RANGE
    for _attempt in range(25):  # redraw defects that came out too small or too large
        if scene is not None:
            defective = _washer_defect(scene, kind, rng)
        else:
            defective = _paint(kind, category, clean, rng, np.ones(clean.shape[:2], np.float32))
        image_u8 = _finish(defective, noise, settings.image_size)
        mask = _visible_change(image_u8, clean_u8, settings.image_size)
        if low <= mask.mean() <= high:
            break
    return clean_u8, image_u8, mask


# --------------------------------------------------------------------------- building on disk


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write an 8-bit RGB ``[H, W, 3]`` or grey ``[H, W]`` array as PNG (byte-for-byte repeatable)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    # Run-length strategy: as small as the default on these noisy images, and faster.
    ok, encoded = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise OSError(f"could not encode {path} as PNG.")
    path.write_bytes(encoded.tobytes())


def _build_category(folder: Path, category: str, settings: BuiltinSettings) -> int:
    """Write one category in the MVTec layout into ``folder`` (which must not exist); return the image count."""
    train_dir = folder / "train" / "good"
    good_dir = folder / "test" / "good"
    for directory in (train_dir, good_dir):
        directory.mkdir(parents=True)
    count = 0
    for index in range(settings.n_train):
        _write_png(train_dir / f"{index:03d}.png", render_item(category, "train", index, settings)[1])
        count += 1
    for index in range(settings.n_test_good):
        _write_png(good_dir / f"{index:03d}.png", render_item(category, "good", index, settings)[1])
        count += 1
    for defect_type in BUILTIN_DEFECTS[category]:
        image_dir = folder / "test" / defect_type
        mask_dir = folder / "ground_truth" / defect_type
        image_dir.mkdir(parents=True)
        mask_dir.mkdir(parents=True)
        for index in range(settings.n_test_per_defect):
            _, image, mask = render_item(category, defect_type, index, settings)
            _write_png(image_dir / f"{index:03d}.png", image)
            _write_png(mask_dir / f"{index:03d}_mask.png", mask.astype(np.uint8) * 255)
            count += 1
    return count


def builtin_version(root: str | Path) -> int | None:
    """The builder version that wrote the built-in data set folder ``root`` (its manifest), or None if it has none.

    Benchmarks record it with their results, so a chapter never mixes results of a category's older
    images with the current ones (:data:`CATEGORY_CHANGED_IN`).
    """
    manifest = _read_manifest(Path(root))
    return None if manifest is None else int(manifest["version"])


def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise OSError(f"the built-in data set manifest {path} cannot be read ({error}); delete {root} "
                      "or choose another root.") from error


def _write_manifest(root: Path, settings: BuiltinSettings, categories: Sequence[str]) -> None:
    manifest = {
        "builder": "adlearn.data.builtin",
        "version": BUILDER_VERSION,
        "settings": asdict(settings),
        "categories": sorted(categories),
        "defect_types": {category: list(BUILTIN_DEFECTS[category]) for category in sorted(categories)},
        "sources": "scikit-image texture photographs brick, grass, gravel (CC0); see data/README.md",
    }
    scratch = root / (MANIFEST_NAME + ".tmp")
    scratch.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(scratch, root / MANIFEST_NAME)  # a reader sees the old or the new manifest, never half of one


# Our own bookkeeping inside a build root; anything else there means the folder is not ours.
_OURS = (MANIFEST_NAME, MANIFEST_NAME + ".tmp", ".adlearn_builtin.lock")


def _is_ours(name: str) -> bool:
    return name in _OURS or name.startswith(".building-")


def _refuse_foreign_folder(root: Path) -> None:
    """Raise unless ``root`` is missing, empty, or holds only the builder's own bookkeeping."""
    if not root.exists():
        return
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; expected a folder for the built-in data set.")
    foreign = sorted(entry.name for entry in root.iterdir() if not _is_ours(entry.name))
    if foreign:
        raise FileExistsError(
            f"{root} is not empty ({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}) and "
            f"holds no built-in data set manifest ({MANIFEST_NAME}); the builder only writes into "
            "a new or empty folder or one it built. Choose another root."
        )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root`` (so two notebooks starting at once build it only once)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent first builds are unlikely there
        yield
        return
    with open(root / ".adlearn_builtin.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_categories(categories: Sequence[str] | str | None) -> list[str]:
    if categories is None:
        return list(BUILTIN_CATEGORIES)
    chosen = [categories] if isinstance(categories, str) else list(categories)
    unknown = [name for name in chosen if name not in BUILTIN_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown built-in categories {unknown}; expected names from {list(BUILTIN_CATEGORIES)}.")
    return list(dict.fromkeys(chosen))


def build_builtin_dataset(
    root: str | Path | None = None,
    categories: Sequence[str] | str | None = None,
    seed: int = 0,
    *,
    image_size: int = 256,
    n_train: int = 80,
    n_test_good: int = 60,
    n_test_per_defect: int = 15,
    verbose: bool = True,
) -> Path:
    """Build (or re-use) the built-in MVTec-layout data set and return its root folder.

    A complete earlier build with the same settings is re-used; categories it
    lacks are added. Each category is written into a hidden scratch folder and
    renamed into place, and the manifest (``adlearn_builtin.json``) is
    rewritten after each one, so an interrupted build never leaves a
    half-written category that looks complete. The builder never writes into a
    folder it did not create: a non-empty ``root`` without its manifest, or
    with a manifest of other settings, is an error.

    Args:
        root: where to build; default ``default_data_root() / settings.folder_name()``
            (``data/builtin_v2`` in a checkout with the default settings).
        categories: names from :data:`BUILTIN_CATEGORIES`; default all of them.
        seed: the seed every image's random stream derives from.
        image_size: side of the square PNG files written.
        n_train: anomaly-free training images per category.
        n_test_good: anomaly-free test images per category.
        n_test_per_defect: test images per defect type.
        verbose: print one line when something is built.

    Returns:
        The root folder, to pass to :class:`adlearn.data.MVTecAD`.

    Raises:
        ValueError: an unknown category or a bad setting.
        FileExistsError: ``root`` holds something the builder did not create, or a
            build with other settings.
    """
    settings = BuiltinSettings(seed, image_size, n_train, n_test_good, n_test_per_defect)
    wanted = _check_categories(categories)
    root = Path(root).expanduser() if root is not None else default_data_root() / settings.folder_name()

    manifest = _read_manifest(root)
    if manifest is not None and manifest.get("settings") == asdict(settings) and manifest.get(
        "version"
    ) == BUILDER_VERSION and set(wanted) <= set(manifest.get("categories", [])):
        return root  # the common case: built before, nothing to do

    if manifest is None:
        _refuse_foreign_folder(root)  # before the lock file is created in it
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        manifest = _read_manifest(root)  # another process may have built it meanwhile
        if manifest is None:
            _refuse_foreign_folder(root)
            built: list[str] = []
        else:
            if manifest.get("version") != BUILDER_VERSION or manifest.get("settings") != asdict(settings):
                raise FileExistsError(
                    f"{root} holds a built-in data set with other settings (version "
                    f"{manifest.get('version')}, {manifest.get('settings')}); asked for version "
                    f"{BUILDER_VERSION}, {asdict(settings)}. Choose another root (the default root "
                    "depends on the settings), or delete that folder to rebuild it."
                )
            built = list(manifest.get("categories", []))

        started = time.perf_counter()
        images = 0
        for category in wanted:
            if category in built:
                continue
            target = root / category
            if target.exists():
                raise FileExistsError(
                    f"{target} exists but is not listed in {root / MANIFEST_NAME}; the builder does not "
                    "overwrite folders it did not create. Move it away or choose another root."
                )
            scratch = root / f".building-{category}"
            shutil.rmtree(scratch, ignore_errors=True)  # an interrupted earlier build of ours
            images += _build_category(scratch, category, settings)
            os.replace(scratch, target)
            built.append(category)
            _write_manifest(root, settings, built)
        if verbose and images:
            print(
                f"Built the built-in data set in {root}: {images} images of {', '.join(wanted)} "
                f"in {time.perf_counter() - started:.1f} s (seed {seed}, {image_size}x{image_size})."
            )
    return root


def builtin_dataset_root(
    root: str | Path | None = None,
    categories: Sequence[str] | str | None = None,
    seed: int = 0,
    **settings: int | bool,
) -> Path:
    """The built-in data set's root folder, building it on first use (see :func:`build_builtin_dataset`).

    Example:
        >>> from adlearn.data import MVTecAD, builtin_dataset_root  # doctest: +SKIP
        >>> train = MVTecAD(builtin_dataset_root(), "brick", split="train", image_size=128)  # doctest: +SKIP
    """
    return build_builtin_dataset(root, categories, seed, **settings)
