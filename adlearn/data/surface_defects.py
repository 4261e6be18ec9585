"""Hand-drawn surface defects for the built-in test set: scratch, crack, hole, stain, missing piece.

Every painter takes a clean float image ``[H, W, 3]`` in ``[0, 1]``, a NumPy
random generator and a ``support`` map (``[H, W]`` in ``[0, 1]``: where the
surface is, 1 everywhere for a texture, the object's coverage for an object)
and returns the defective image. The defect is drawn with plain geometry
(poly-lines, random walks, ellipses, sums of Gaussians) and blended in with
physically flavoured shading, so it is *not* produced by any training-time
anomaly simulator of the book (Perlin-noise masks filled with foreign textures,
cut-and-paste patches): an evaluation on these defects is not circular.

The ground-truth mask is not drawn separately: the builder derives it as the
set of pixels whose final 8-bit value changed visibly (by at least
:data:`adlearn.data.builtin.VISIBLE_CHANGE` levels; fainter changes are undone),
so it is exact by construction.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

SUPERSAMPLE = 4  # strokes are drawn 4x larger and area-averaged: smooth, anti-aliased edges


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an ``[H, W, 3]`` image, ``[H, W]``."""
    return image @ np.array([0.299, 0.587, 0.114], dtype=image.dtype)


def pick_point(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """A random ``(x, y)`` pixel position among the ``True`` pixels of ``allowed``."""
    rows, cols = np.nonzero(allowed)
    if rows.size == 0:
        raise ValueError("no room to place a defect: the allowed region is empty.")
    chosen = rng.integers(rows.size)
    return np.array([cols[chosen], rows[chosen]], dtype=np.float64)


def place(rng: np.random.Generator, support: np.ndarray, margin: int) -> np.ndarray:
    """A random ``(x, y)`` position well inside ``support``: ``margin`` pixels from its edge when
    there is room (a large texture), less on a narrow surface such as a washer's ring."""
    while True:
        allowed = inner_region(support, margin)
        if allowed.any() or margin <= 1:
            return pick_point(rng, allowed)
        margin //= 2


def inner_region(support: np.ndarray, margin: int) -> np.ndarray:
    """Pixels of ``support`` (full coverage) at least ``margin`` pixels from its edge and the border."""
    solid = (support > 0.999).astype(np.uint8)
    solid[:margin, :] = 0
    solid[-margin:, :] = 0
    solid[:, :margin] = 0
    solid[:, -margin:] = 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.erode(solid, kernel) > 0


def draw_polylines(
    shape: tuple[int, int], polylines: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Rasterise poly-lines into an anti-aliased coverage map ``[H, W]`` in ``[0, 1]``.

    Args:
        shape: ``(height, width)`` of the output.
        polylines: ``(points [N, 2] as (x, y), widths [N-1] in pixels, strengths [N-1] in [0, 1])``
            per line; each segment is drawn with its own width and strength.
    """
    height, width = shape
    canvas = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE), dtype=np.uint8)
    for points, widths, strengths in polylines:
        scaled = np.round(points * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2).astype(np.int32)
        for start, end, line_width, strength in zip(scaled[:-1], scaled[1:], widths, strengths):
            thickness = max(1, int(round(line_width * SUPERSAMPLE)))
            value = int(round(255 * float(np.clip(strength, 0.0, 1.0))))
            cv2.line(canvas, tuple(int(v) for v in start), tuple(int(v) for v in end), value, thickness, cv2.LINE_8)
    coverage = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return coverage.astype(np.float32) / 255.0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def paint_scratch(clean: np.ndarray, rng: np.random.Generator, support: np.ndarray) -> np.ndarray:
    """One to three thin, slightly curved strokes that taper at both ends.

    A bright scratch exposes lighter material (``lighten`` towards near-white);
    a dark one is a groove that catches shadow.
    """
    height, width = support.shape
    anchor = place(rng, support, 12)
    heading = rng.uniform(0, np.pi)
    n_strokes = int(rng.choice([1, 1, 2, 3]))
    bright = rng.random() < 0.6
    polylines = []
    for stroke in range(n_strokes):
        length = rng.uniform(60, 150)
        n_points = 12
        offset = np.array([-np.sin(heading), np.cos(heading)]) * rng.normal(0, 5) * (stroke > 0)
        start = anchor + offset - np.array([np.cos(heading), np.sin(heading)]) * length * rng.uniform(0.3, 0.7)
        angle = heading + rng.normal(0, 0.06)
        curvature = rng.normal(0, 0.012)
        points = [start]
        for _ in range(n_points - 1):
            angle += curvature + rng.normal(0, 0.015)
            points.append(points[-1] + length / (n_points - 1) * np.array([np.cos(angle), np.sin(angle)]))
        points = np.array(points)
        t = np.linspace(0, 1, n_points - 1)
        taper = np.sin(np.pi * (0.08 + 0.84 * t)) ** 0.5
        widths = rng.uniform(1.2, 2.6) * (0.5 + 0.5 * taper)
        strengths = rng.uniform(0.75, 1.0) * taper
        polylines.append((points, widths, strengths))
    alpha = (draw_polylines((height, width), polylines) * support)[..., None]
    if bright:
        target = np.clip(luminance(clean)[..., None] + 0.45, 0.0, 0.97) * np.array([1.0, 1.0, 1.02], np.float32)
        return clean + alpha * (np.clip(target, 0, 1) - clean)
    return clean * (1.0 - 0.6 * alpha)


def _crack_walk(
    rng: np.random.Generator, start: np.ndarray, heading: float, length: float, width: float, level: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A persistent random walk from ``start``; it forks into thinner, shorter branches."""
    step = 2.5
    n_steps = max(3, int(length / step))
    points = [start]
    angle = heading
    branches = []
    for index in range(n_steps):
        # Momentum towards the main heading keeps the fracture going somewhere; the
        # noise makes it zig-zag like a real one.
        angle = heading + 0.75 * (angle - heading) + rng.normal(0, 0.45)
        points.append(points[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
        if level < 2 and index > 3 and rng.random() < 0.05:
            side = rng.choice([-1.0, 1.0])
            branches += _crack_walk(
                rng, points[-1], angle + side * rng.uniform(0.4, 1.0), length * rng.uniform(0.25, 0.5),
                width * 0.6, level + 1,
            )
    points = np.array(points)
    t = np.linspace(0, 1, len(points) - 1)
    widths = width * (1.0 - 0.6 * t)
    strengths = np.clip(1.0 - 0.5 * t**3, 0.0, 1.0)
    return [(points, widths, strengths)] + branches


def paint_crack(clean: np.ndarray, rng: np.random.Generator, support: np.ndarray, start: np.ndarray | None = None,
                heading: float | None = None) -> np.ndarray:
    """A dark, branching fracture grown by a random walk, with a faint lighter chipped lip on one side."""
    height, width = support.shape
    if start is None:
        start = place(rng, support, 16)
    if heading is None:
        heading = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(50, 130)
    polylines = _crack_walk(rng, start, heading, length, rng.uniform(1.6, 2.8), level=0)
    if rng.random() < 0.7:  # many cracks run both ways from where they started
        polylines += _crack_walk(rng, start, heading + np.pi, length * rng.uniform(0.3, 0.7), rng.uniform(1.4, 2.2), 0)
    core = draw_polylines((height, width), polylines)
    lip = np.clip(cv2.GaussianBlur(core, (0, 0), 1.2) * 1.6 - core * 2.0, 0.0, 1.0)
    shift = np.float32([[1, 0, rng.choice([-1, 1])], [0, 1, rng.choice([-1, 1])]])
    lip = cv2.warpAffine(lip, shift, (width, height)) * (1.0 - core)
    core, lip = (core * support)[..., None], (lip * support)[..., None]
    depth = rng.uniform(0.65, 0.85)
    darkened = clean * (1.0 - depth * core)
    return darkened + 0.18 * lip * (1.0 - darkened)


def paint_hole(clean: np.ndarray, rng: np.random.Generator, support: np.ndarray) -> np.ndarray:
    """A pit: a dark elliptical hole, lit on its far wall, with a raised rim that catches the light."""
    height, width = support.shape
    centre = place(rng, support, 24)
    semi_major = rng.uniform(7, 20)
    semi_minor = semi_major * rng.uniform(0.55, 1.0)
    tilt = rng.uniform(0, np.pi)
    light = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    u = (dx * np.cos(tilt) + dy * np.sin(tilt)) / semi_major
    v = (-dx * np.sin(tilt) + dy * np.cos(tilt)) / semi_minor
    radius = np.sqrt(u**2 + v**2)
    # Signed distance to the rim in pixels (approximate for an ellipse, exact for a circle).
    distance_inside = (1.0 - radius) * semi_minor
    towards_light = (dx * np.cos(light) + dy * np.sin(light)) / (semi_major * np.maximum(radius, 1e-3))
    inside = np.clip(distance_inside + 0.5, 0.0, 1.0)
    # Inside: mostly shadow, the wall facing the light a little brighter, the bottom darkest.
    floor = 0.22 + 0.25 * np.clip(-towards_light, 0, 1) + 0.10 * radius
    interior = clean * floor[..., None]
    # Rim: a burr pushed up around the hole, bright towards the light and shadowed away from it.
    rim_width = rng.uniform(2.0, 4.0)
    rim = np.clip(1.0 + distance_inside / rim_width, 0.0, 1.0) * (1.0 - inside)
    rim = np.where(distance_inside < -rim_width, 0.0, rim)
    lit = np.clip(towards_light, 0, 1) * rim
    shaded = np.clip(-towards_light, 0, 1) * rim
    outside = clean + 0.35 * lit[..., None] * (1.0 - clean) - 0.35 * shaded[..., None] * clean
    result = outside * (1.0 - inside[..., None]) + interior * inside[..., None]
    return clean + support[..., None] * (result - clean)


STAIN_TINTS: dict[str, tuple[float, float, float]] = {
    "oil": (0.42, 0.36, 0.30),     # multiplies: darker, brownish
    "rust": (1.25, 0.72, 0.42),    # multiplies: orange-brown
    "bleach": (1.0, 1.0, 1.0),     # handled as a lift towards white
}


def paint_stain(
    clean: np.ndarray, rng: np.random.Generator, support: np.ndarray, tints: tuple[str, ...] = tuple(STAIN_TINTS)
) -> np.ndarray:
    """A smooth-edged blob (a sum of Gaussians, thresholded) that tints the surface, with a tide line.

    ``tints`` chooses among :data:`STAIN_TINTS` (a rust stain on red brick would be invisible).
    """
    height, width = support.shape
    centre = place(rng, support, 28)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        offset = rng.normal(0, 9, size=2)
        spread = rng.uniform(6, 15)
        field += rng.uniform(0.6, 1.0) * np.exp(
            -((xs - centre[0] - offset[0]) ** 2 + (ys - centre[1] - offset[1]) ** 2) / (2 * spread**2)
        )
    level = 0.45 * field.max()
    edge = _smoothstep((field - level) / (0.35 * level))
    tide = np.exp(-(((field - level) / (0.18 * level)) ** 2)) * (field > level * 0.9)
    opacity = rng.uniform(0.45, 0.8)
    alpha = (np.clip(opacity * edge + 0.25 * tide, 0.0, 1.0) * support)[..., None]
    kind = str(rng.choice(list(tints)))
    if kind == "bleach":
        target = clean + 0.55 * (1.0 - clean)
    else:
        target = np.clip(clean * np.array(STAIN_TINTS[kind], np.float32), 0.0, 1.0)
    return clean + alpha * (target - clean)


def paint_missing(
    rng: np.random.Generator,
    support: np.ndarray,
    background: np.ndarray,
    object_rgb: np.ndarray,
    centre: np.ndarray,
    outer_radius: float,
    inner_radius: float,
) -> np.ndarray:
    """A piece broken out of a ring-shaped object's edge: the background shows through the notch."""
    height, width = support.shape
    on_outer_edge = rng.random() < 0.75
    angle = rng.uniform(0, 2 * np.pi)
    edge_radius = outer_radius if on_outer_edge else inner_radius
    notch_centre = centre + edge_radius * np.array([np.cos(angle), np.sin(angle)])
    size = rng.uniform(10, 22) if on_outer_edge else rng.uniform(6, 11)
    n_vertices = int(rng.integers(6, 10))
    vertex_angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    vertex_radii = size * rng.uniform(0.6, 1.2, n_vertices)
    polygon = notch_centre + np.stack([np.cos(vertex_angles), np.sin(vertex_angles)], 1) * vertex_radii[:, None]
    canvas = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE), np.uint8)
    scaled = np.round(polygon * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2).astype(np.int32)
    cv2.fillPoly(canvas, [scaled], 255)
    notch = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    coverage = (support * (1.0 - notch))[..., None]
    # A fresh fracture surface is a little brighter and rougher than the finished face.
    fracture_rim = np.clip(cv2.GaussianBlur(notch, (0, 0), 1.0) - notch, 0.0, 1.0)[..., None]
    surface = object_rgb + 0.5 * fracture_rim * (1.0 - object_rgb)
    return background * (1.0 - coverage) + surface * coverage


Painter = Callable[[np.ndarray, np.random.Generator, np.ndarray], np.ndarray]

PAINTERS: dict[str, Painter] = {
    "crack": paint_crack,
    "hole": paint_hole,
    "scratch": paint_scratch,
    "stain": paint_stain,
}
