"""CutPaste: rectangles and scars moved within the image, and the 3-way batch."""

from __future__ import annotations

import pytest
import torch

from adlearn.simulation import cutpaste, cutpaste_3way, cutpaste_scar

SIZE = 64


def coordinate_images(count: int, size: int = SIZE) -> torch.Tensor:
    """Images whose red and green channels encode each pixel's row and column (unique pixels)."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = torch.stack([rows / (size - 1), cols / (size - 1), torch.full((size, size), 0.5)])
    return image.expand(count, -1, -1, -1).clone()


def decode(images: torch.Tensor, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.round(images[:, 0] * (size - 1)).long(), torch.round(images[:, 1] * (size - 1)).long()


def test_cutpaste_moves_one_rectangle_unchanged_without_jitter() -> None:
    images = coordinate_images(32)
    batch = cutpaste(images, jitter=0.0, generator=torch.Generator().manual_seed(0))
    assert batch.images.shape == images.shape and batch.labels.min() == 1
    area = batch.masks.flatten(1).sum(1) / SIZE**2
    assert ((area > 0.015) & (area < 0.17)).all()  # 2-15 % of the image, up to rounding
    changed = (batch.images != images).any(dim=1, keepdim=True)
    assert not (changed & (batch.masks == 0)).any()
    source_rows, source_cols = decode(batch.images)
    target_rows, target_cols = decode(images)
    for index in range(32):
        inside = batch.masks[index, 0] > 0
        rows, cols = inside.nonzero(as_tuple=True)
        # The pasted region is a filled rectangle...
        assert inside.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        # ...whose pixels all come from one shifted copy of the image.
        shift_rows = (source_rows[index] - target_rows[index])[inside]
        shift_cols = (source_cols[index] - target_cols[index])[inside]
        assert shift_rows.unique().numel() == 1 and shift_cols.unique().numel() == 1


def test_cutpaste_aspect_ratio_spans_both_orientations() -> None:
    batch = cutpaste(coordinate_images(200), jitter=0.0, generator=torch.Generator().manual_seed(1))
    heights = (batch.masks.amax(dim=3) > 0).sum(dim=(1, 2)).float()
    widths = (batch.masks.amax(dim=2) > 0).sum(dim=(1, 2)).float()
    ratio = widths / heights
    assert ratio.min() < 0.5 and ratio.max() > 2.0


def test_scar_is_a_thin_rotated_strip_copied_from_the_image() -> None:
    images = coordinate_images(64)
    batch = cutpaste_scar(images, jitter=0.0, generator=torch.Generator().manual_seed(0))
    area = batch.masks.flatten(1).sum(1)
    assert (area >= 1).all() and (area <= 16 * 25 + 40).all()
    changed = (batch.images != images).any(dim=1, keepdim=True)
    assert not (changed & (batch.masks == 0)).any()
    source_rows, source_cols = decode(batch.images)
    for index in range(64):
        inside = batch.masks[index, 0] > 0
        rows, cols = source_rows[index][inside], source_cols[index][inside]
        # Every pasted pixel comes from an upright strip of at most 16 x 25 pixels.
        assert rows.max() - rows.min() < 26 and cols.max() - cols.min() < 17
    # Rotated scars are not axis-aligned rectangles.
    boxes = [(batch.masks[i, 0].amax(1) > 0).sum() * (batch.masks[i, 0].amax(0) > 0).sum() for i in range(64)]
    assert sum(int(box) > int(a) + 2 for box, a in zip(boxes, area)) > 20


def test_jitter_changes_the_patch_colours_only_slightly() -> None:
    images = 0.2 + 0.6 * torch.rand(16, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    plain = cutpaste(images, jitter=0.0, generator=torch.Generator().manual_seed(2))
    jittered = cutpaste(images, jitter=0.1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(plain.masks, jittered.masks)  # same geometry for the same seed
    difference = (plain.images - jittered.images).abs()[plain.masks.expand_as(images) > 0]
    assert 0 < difference.mean() < 0.15


def test_3way_batch_layout_and_determinism() -> None:
    images = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    batch = cutpaste_3way(images, generator=torch.Generator().manual_seed(1))
    assert batch.images.shape == (15, 3, SIZE, SIZE) and batch.masks.shape == (15, 1, SIZE, SIZE)
    assert batch.labels.dtype == torch.long and batch.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(batch.images[:5], images) and batch.masks[:5].sum() == 0
    assert (batch.masks[5:].flatten(1).sum(1) > 0).all()
    again = cutpaste_3way(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(batch.images, again.images)
    narrow = cutpaste_3way(images, generator=torch.Generator().manual_seed(1), scar={"width": (2, 3)})
    assert narrow.masks[10:].sum() < batch.masks[10:].sum()
    with pytest.raises(TypeError, match="unknown option"):
        cutpaste_3way(images, colour=0.2)


@pytest.mark.parametrize("maker", [cutpaste, cutpaste_scar])
def test_bad_input_is_named(maker) -> None:
    images = torch.rand(2, 3, 16, 16)
    with pytest.raises(TypeError, match="images"):
        maker((images * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="images"):
        maker(images[:, :1])


def test_bad_ranges_are_named() -> None:
    images = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="area_ratio"):
        cutpaste(images, area_ratio=(0.5, 0.1))
    with pytest.raises(ValueError, match="aspect_ratio"):
        cutpaste(images, aspect_ratio=2.0)
    with pytest.raises(ValueError, match="width"):
        cutpaste_scar(images, width=(0.0, 3.0))
