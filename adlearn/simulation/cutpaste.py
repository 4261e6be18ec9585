"""CutPaste (Li et al., CVPR 2021), batched: a patch of the image, colour-jittered, pasted elsewhere.

* **cut-paste**: a rectangle covering 2-15% of the image, aspect ratio
  log-uniform in ``[0.3, 1/0.3]``, cut at one random place, colour-jittered
  and pasted at another;
* **scar**: a thin rectangle (2-16 x 10-25 pixels), jittered, rotated by
  ``[-45, 45]`` degrees and pasted (a long, scratch-like defect);
* **3-way**: every normal image yields itself (class 0), a cut-paste (1) and a
  scar (2) version; SSPCAB's chapter trains a 3-class classifier on them.

Defaults follow the widely used PyTorch re-implementation (``Runinho/pytorch-cutpaste``):
``ColorJitter(0.1, 0.1, 0.1, 0.1)`` on the patch (own factors per image; the
order of the four changes is shared by the batch, see
:func:`~adlearn.simulation.augment.color_jitter`), nearest-neighbour rotation.
Scar sizes are in pixels, tuned for 256 x 256 images.

Only patch-sized tensors are jittered and written: the patches are gathered
onto a canvas as large as the largest patch of the batch, and written back
with one scatter per batch.
"""

from __future__ import annotations

import math

import torch

from adlearn.simulation._validation import check_range_pair, check_unit_images, generator_device
from adlearn.simulation.augment import color_jitter
from adlearn.simulation.batch import SyntheticBatch

__all__ = ["cutpaste", "cutpaste_scar", "cutpaste_3way", "NORMAL", "CUTPASTE", "SCAR"]

#: class ids of the 3-way variant
NORMAL, CUTPASTE, SCAR = 0, 1, 2


def _uniform(count: int, low: float | torch.Tensor, high: float | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, device=generator_device(generator), dtype=torch.float64)


def _gather_pixels(images: torch.Tensor, source_rows: torch.Tensor, source_cols: torch.Tensor) -> torch.Tensor:
    """``out[b, :, i, j] = images[b, :, source_rows[b, i, j], source_cols[b, i, j]]`` for index maps of any size."""
    batch, channels, _, width = images.shape
    out_h, out_w = source_rows.shape[1:]
    index = (source_rows * width + source_cols).reshape(batch, 1, -1).expand(batch, channels, -1)
    return torch.gather(images.reshape(batch, channels, -1), 2, index).view(batch, channels, out_h, out_w)


def _box_grid(top: torch.Tensor, left: torch.Tensor, box_h: torch.Tensor, box_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel coordinates of every sample's box on a canvas as large as the largest box.

    Canvas positions beyond a sample's own box are clamped to its last row or
    column, so they repeat a pixel of the box (and write the same value there).

    Returns:
        ``rows``, ``cols`` (long ``[B, Hc, Wc]``, image coordinates) and the
        clamped canvas offsets ``box_rows``, ``box_cols`` (long ``[B, Hc, Wc]``).
    """
    canvas_h, canvas_w = int(box_h.max()), int(box_w.max())  # parameters live on the CPU: no sync
    device = top.device
    box_rows = torch.minimum(torch.arange(canvas_h, device=device).view(1, -1, 1), (box_h - 1).view(-1, 1, 1))
    box_cols = torch.minimum(torch.arange(canvas_w, device=device).view(1, 1, -1), (box_w - 1).view(-1, 1, 1))
    box_rows, box_cols = box_rows.expand(-1, canvas_h, canvas_w), box_cols.expand(-1, canvas_h, canvas_w)
    return top.view(-1, 1, 1) + box_rows, left.view(-1, 1, 1) + box_cols, box_rows, box_cols


def _jittered_patches(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, patch_h: torch.Tensor, patch_w: torch.Tensor,
    jitter: float, generator: torch.Generator | None,
) -> torch.Tensor:
    """The patches ``images[b, :, top:top+h, left:left+w]`` on a canvas of the largest patch size, jittered.

    Jittering the small canvas instead of whole images keeps CutPaste cheap; the
    contrast change uses the mean grey level of each patch, as torchvision's
    ``ColorJitter`` applied to the cropped patch does.
    """
    rows, cols, box_rows, box_cols = _box_grid(top, left, patch_h, patch_w)
    canvas = _gather_pixels(images, rows, cols)
    if jitter <= 0:
        return canvas
    canvas_h, canvas_w = canvas.shape[2:]
    region = (torch.arange(canvas_h, device=images.device).view(1, -1, 1) < patch_h.view(-1, 1, 1)) & (
        torch.arange(canvas_w, device=images.device).view(1, 1, -1) < patch_w.view(-1, 1, 1)
    )
    return color_jitter(canvas, jitter, generator, region=region.unsqueeze(1).to(images.dtype))


def _write_boxes(out: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, inside: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """Write ``values`` (``[B, C, Hc, Wc]``) at image positions ``rows``/``cols`` where ``inside``, in place.

    Only box-sized tensors are touched: the pixels of the box that are not
    ``inside`` get their own current value back.
    """
    batch, channels, _, width = out.shape
    index = (rows * width + cols).reshape(batch, 1, -1)
    flat_out = out.view(batch, channels, -1)
    current = torch.gather(flat_out, 2, index.expand(batch, channels, -1)).view_as(values)
    inside = inside.unsqueeze(1)
    flat_out.scatter_(2, index.expand(batch, channels, -1), torch.where(inside, values, current).reshape(batch, channels, -1))
    flat_masks = masks.view(batch, 1, -1)
    current_mask = torch.gather(flat_masks, 2, index).view_as(inside)
    flat_masks.scatter_(2, index, torch.where(inside, torch.ones_like(current_mask), current_mask).reshape(batch, 1, -1))


def _draw_cutpaste(
    images: torch.Tensor, out: torch.Tensor, masks: torch.Tensor, area_ratio: tuple[float, float], aspect_ratio: float,
    jitter: float, generator: torch.Generator | None,
) -> None:
    """Paste one rectangle per image of ``images`` into ``out`` (a copy of it) and mark it in ``masks``."""
    low, high = check_range_pair(area_ratio, "area_ratio", 0.0, 1.0)
    if not 0 < aspect_ratio <= 1:
        raise ValueError(f"aspect_ratio must be in (0, 1], got {aspect_ratio}.")
    batch, _, height, width = images.shape
    area = _uniform(batch, low, high, generator) * height * width
    aspect = torch.exp(_uniform(batch, math.log(aspect_ratio), math.log(1 / aspect_ratio), generator))
    cut_w = torch.round(torch.sqrt(area * aspect)).long().clamp(1, width)
    cut_h = torch.round(torch.sqrt(area / aspect)).long().clamp(1, height)
    from_top = _uniform(batch, 0, height - cut_h, generator).long()
    from_left = _uniform(batch, 0, width - cut_w, generator).long()
    to_top = _uniform(batch, 0, height - cut_h, generator).long()
    to_left = _uniform(batch, 0, width - cut_w, generator).long()

    device = images.device
    from_top, from_left, to_top, to_left, cut_h, cut_w = (t.to(device) for t in (from_top, from_left, to_top, to_left, cut_h, cut_w))
    canvas = _jittered_patches(images, from_top, from_left, cut_h, cut_w, jitter, generator)
    rows, cols, _, _ = _box_grid(to_top, to_left, cut_h, cut_w)
    _write_boxes(out, masks, canvas, torch.ones_like(rows, dtype=torch.bool), rows, cols)


def _draw_scar(
    images: torch.Tensor, out: torch.Tensor, masks: torch.Tensor, width: tuple[float, float], height: tuple[float, float],
    rotation: tuple[float, float], jitter: float, generator: torch.Generator | None,
) -> None:
    """Paste one rotated scar per image of ``images`` into ``out`` (a copy of it) and mark it in ``masks``."""
    width = check_range_pair(width, "width", 1.0, float("inf"))
    height = check_range_pair(height, "height", 1.0, float("inf"))
    rotation = check_range_pair(rotation, "rotation", -360.0, 360.0)
    batch, _, image_h, image_w = images.shape
    scar_w = torch.round(_uniform(batch, *width, generator)).long().clamp(1, image_w)
    scar_h = torch.round(_uniform(batch, *height, generator)).long().clamp(1, image_h)
    from_top = _uniform(batch, 0, image_h - scar_h, generator).long()
    from_left = _uniform(batch, 0, image_w - scar_w, generator).long()
    radians = _uniform(batch, *rotation, generator) * (math.pi / 180)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # The rotated scar's bounding box (PIL's rotate(expand=True)) must fit in the image.
    box_w = torch.ceil(scar_w * cos.abs() + scar_h * sin.abs() - 1e-9).long().clamp(1, image_w)
    box_h = torch.ceil(scar_w * sin.abs() + scar_h * cos.abs() - 1e-9).long().clamp(1, image_h)
    to_top = _uniform(batch, 0, image_h - box_h, generator).long()
    to_left = _uniform(batch, 0, image_w - box_w, generator).long()

    device, dtype = images.device, images.dtype
    from_top, from_left, scar_h, scar_w = (t.to(device) for t in (from_top, from_left, scar_h, scar_w))
    canvas = _jittered_patches(images, from_top, from_left, scar_h, scar_w, jitter, generator)
    rows, cols, box_rows, box_cols = _box_grid(to_top.to(device), to_left.to(device), box_h.to(device), box_w.to(device))

    def column(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype).view(-1, 1, 1)

    # Each box pixel's centre relative to the box centre, rotated back into the scar's own frame.
    dy = box_rows.to(dtype) + 0.5 - column(box_h) / 2
    dx = box_cols.to(dtype) + 0.5 - column(box_w) / 2
    c, s = column(cos), column(sin)
    # Counter-clockwise on screen (rows grow downwards): inverse rotation of the offset.
    u = c * dx - s * dy  # along the scar's width
    v = s * dx + c * dy  # along the scar's length
    half_w, half_h = column(scar_w) / 2, column(scar_h) / 2
    inside = (u.abs() < half_w) & (v.abs() < half_h)
    # Nearest neighbour in the scar's frame, as PIL's rotate() without resampling.
    scar_rows = torch.minimum(torch.floor(v + half_h).long().clamp(min=0), (scar_h - 1).view(-1, 1, 1))
    scar_cols = torch.minimum(torch.floor(u + half_w).long().clamp(min=0), (scar_w - 1).view(-1, 1, 1))
    values = _gather_pixels(canvas, scar_rows, scar_cols)
    _write_boxes(out, masks, values, inside, rows, cols)


def _single(images: torch.Tensor, draw) -> SyntheticBatch:
    out = images.clone()
    masks = torch.zeros(images.shape[0], 1, *images.shape[2:], device=images.device, dtype=images.dtype)
    draw(out, masks)
    labels = masks.flatten(1).amax(dim=1)
    opacity = torch.ones(images.shape[0], device=images.device, dtype=images.dtype)
    return SyntheticBatch(images=out, masks=masks, labels=labels, sources=out, opacity=opacity)


def cutpaste(
    images: torch.Tensor,
    *,
    area_ratio: tuple[float, float] = (0.02, 0.15),
    aspect_ratio: float = 0.3,
    jitter: float = 0.1,
    generator: torch.Generator | None = None,
) -> SyntheticBatch:
    """CutPaste's rectangle: every image gets one patch of itself moved elsewhere.

    Args:
        images: ``[B, 3, H, W]`` floats in ``[0, 1]``.
        area_ratio: range of the patch area as a share of the image.
        aspect_ratio: the patch's width/height is log-uniform in ``[aspect_ratio, 1/aspect_ratio]``.
        jitter: colour-jitter strength of the patch (0 for none).
        generator: random source.

    Returns:
        a :class:`SyntheticBatch` (``masks``: the pasted rectangle; ``sources`` is
        the output itself, since the patch is pasted fully opaque).
    """
    check_unit_images(images, "images")
    return _single(images, lambda out, masks: _draw_cutpaste(images, out, masks, area_ratio, aspect_ratio, jitter, generator))


def cutpaste_scar(
    images: torch.Tensor,
    *,
    width: tuple[float, float] = (2.0, 16.0),
    height: tuple[float, float] = (10.0, 25.0),
    rotation: tuple[float, float] = (-45.0, 45.0),
    jitter: float = 0.1,
    generator: torch.Generator | None = None,
) -> SyntheticBatch:
    """CutPaste's scar: a thin patch of the image, jittered, rotated and pasted elsewhere.

    Args:
        images: ``[B, 3, H, W]`` floats in ``[0, 1]``.
        width: range of the scar's width in pixels.
        height: range of the scar's length in pixels.
        rotation: range of its rotation in degrees (counter-clockwise).
        jitter: colour-jitter strength (0 for none).
        generator: random source.
    """
    check_unit_images(images, "images")
    return _single(images, lambda out, masks: _draw_scar(images, out, masks, width, height, rotation, jitter, generator))


def cutpaste_3way(images: torch.Tensor, *, generator: torch.Generator | None = None, **options: dict) -> SyntheticBatch:
    """The 3-way task: ``[normal; cut-paste; scar]`` versions of every image, labels 0, 1, 2.

    Args:
        images: ``[B, 3, H, W]`` floats in ``[0, 1]``.
        generator: random source.
        **options: ``cutpaste=dict(...)`` and ``scar=dict(...)`` keyword arguments
            for :func:`cutpaste` and :func:`cutpaste_scar` (not ``generator``).

    Returns:
        a :class:`SyntheticBatch` of ``3 B`` images whose ``labels`` (and ``kinds``)
        are long class ids.
    """
    unknown = set(options) - {"cutpaste", "scar"}
    if unknown:
        raise TypeError(f"cutpaste_3way got unknown option(s) {sorted(unknown)}; expected 'cutpaste' and/or 'scar'.")
    check_unit_images(images, "images")
    cut_options = {"area_ratio": (0.02, 0.15), "aspect_ratio": 0.3, "jitter": 0.1, **options.get("cutpaste", {})}
    scar_options = {"width": (2.0, 16.0), "height": (10.0, 25.0), "rotation": (-45.0, 45.0), "jitter": 0.1, **options.get("scar", {})}
    batch = images.shape[0]
    # Paste straight into the three thirds of one output tensor: no full-size copies beyond the first.
    combined = images.repeat(3, 1, 1, 1)
    masks = torch.zeros(3 * batch, 1, *images.shape[2:], device=images.device, dtype=images.dtype)
    _draw_cutpaste(images, combined[batch : 2 * batch], masks[batch : 2 * batch], generator=generator, **cut_options)
    _draw_scar(images, combined[2 * batch :], masks[2 * batch :], generator=generator, **scar_options)
    labels = torch.arange(3, device=images.device).repeat_interleave(batch)
    opacity = torch.ones(3 * batch, device=images.device, dtype=images.dtype)
    opacity[:batch] = 0
    return SyntheticBatch(images=combined, masks=masks, labels=labels, sources=combined, opacity=opacity, kinds=labels.clone())
