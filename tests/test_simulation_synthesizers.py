"""DRÆM and MemSeg synthesizers: masks, labels, blend bounds, determinism, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from adlearn.data.textures import fallback_textures
from adlearn.simulation import DraemSynthesizer, MemSegSynthesizer, SyntheticBatch, TextureBank, shuffle_grid
from adlearn.simulation.memseg import (
    NO_ANOMALY,
    STRUCTURE_ANOMALY,
    TEXTURE_ANOMALY,
    binary_closing,
    binary_opening,
    foreground_masks,
    otsu_threshold,
)

SIZE = 64


@pytest.fixture(scope="module")
def textures() -> torch.Tensor:
    return fallback_textures(8, 48, seed=0)  # a different size from the images: resized on the fly


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return fallback_textures(16, SIZE, seed=7)


def check_batch_properties(images: torch.Tensor, batch: SyntheticBatch, opacity_range: tuple[float, float]) -> None:
    """What every blended synthetic batch must satisfy."""
    n = images.shape[0]
    assert batch.images.shape == images.shape and batch.masks.shape == (n, 1, *images.shape[2:])
    assert batch.labels.shape == (n,) and batch.labels.dtype == images.dtype
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert set(batch.masks.unique().tolist()) <= {0.0, 1.0}
    # label = "the mask is not empty"
    assert torch.equal(batch.labels, (batch.masks.flatten(1).sum(1) > 0).float())
    # Changed pixels lie in the mask, exactly (outside it the input is copied bit for bit).
    changed = (batch.images != images).any(dim=1, keepdim=True)
    assert not (changed & (batch.masks == 0)).any()
    # Inside the mask: out = image + opacity * (source - image), which lies between image and source.
    weight = batch.opacity.view(-1, 1, 1, 1)
    expected = (images + weight * (batch.sources - images)).clamp(0, 1)
    inside = batch.masks.expand_as(images) > 0
    assert torch.allclose(batch.images[inside], expected[inside], atol=1e-6)
    low, high = torch.minimum(images, batch.sources), torch.maximum(images, batch.sources)
    assert (batch.images >= low - 1e-6).all() and (batch.images <= high + 1e-6).all()
    # A mask pixel can only stay unchanged where the source equals the image there.
    unchanged_in_mask = (~changed) & (batch.masks > 0)
    difference = ((batch.sources - images).abs() * weight).amax(dim=1, keepdim=True)
    assert (difference[unchanged_in_mask] < 1e-6).all()
    assert changed.sum() >= 0.9 * batch.masks.sum()  # nearly every mask pixel does change
    # Opacity: in range for anomalous samples, 0 for samples left alone.
    anomalous = batch.labels > 0
    assert ((batch.opacity[anomalous] >= opacity_range[0]) & (batch.opacity[anomalous] <= opacity_range[1])).all()
    assert torch.equal(batch.images[batch.opacity == 0], images[batch.opacity == 0])


# ----------------------------------------------------------------------------- DRÆM


def test_draem_batch_properties(images: torch.Tensor, textures: torch.Tensor) -> None:
    synth = DraemSynthesizer(textures, keep_sources=True)
    batch = synth(images.repeat(4, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    check_batch_properties(images.repeat(4, 1, 1, 1), batch, (0.1, 1.0))
    # About half the samples are chosen (coin flips), fewer have a non-empty mask.
    chosen = (batch.opacity > 0).float().mean().item()
    assert 0.3 < chosen < 0.7 and 0.1 < batch.labels.mean().item() <= chosen
    coverage = batch.masks.flatten(1).mean(1)[batch.labels > 0]
    assert 0.005 < coverage.mean().item() < 0.25


def test_draem_is_deterministic_under_a_seed(images: torch.Tensor, textures: torch.Tensor) -> None:
    synth = DraemSynthesizer(textures)
    first = synth(images, generator=torch.Generator().manual_seed(3))
    again = synth(images, generator=torch.Generator().manual_seed(3))
    other = synth(images, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    assert torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)


def test_draem_probability_extremes_and_balance(images: torch.Tensor, textures: torch.Tensor) -> None:
    untouched = DraemSynthesizer(textures, anomaly_probability=0.0)(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(untouched.images, images) and untouched.labels.sum() == 0 and untouched.masks.sum() == 0
    # A threshold below every noise value puts an anomaly in every sample.
    everywhere = DraemSynthesizer(textures, anomaly_probability=1.0, threshold=-2.0)(images, generator=torch.Generator().manual_seed(0))
    assert everywhere.labels.min() == 1
    balanced = DraemSynthesizer(textures, balanced=True, anomaly_probability=0.25)(images, generator=torch.Generator().manual_seed(0))
    assert int((balanced.opacity > 0).sum()) == 4


def test_sources_are_kept_only_on_request(images: torch.Tensor, textures: torch.Tensor) -> None:
    assert DraemSynthesizer(textures)(images, generator=torch.Generator().manual_seed(0)).sources is None
    kept = DraemSynthesizer(textures, keep_sources=True)(images, generator=torch.Generator().manual_seed(0))
    assert kept.sources is not None and kept.sources.shape == images.shape
    assert MemSegSynthesizer(textures)(images, generator=torch.Generator().manual_seed(0)).sources is None


def test_draem_beta_range_is_respected(images: torch.Tensor, textures: torch.Tensor) -> None:
    batch = DraemSynthesizer(textures, anomaly_probability=1.0, beta=(0.6, 0.7))(images, generator=torch.Generator().manual_seed(1))
    assert ((batch.opacity >= 0.6) & (batch.opacity <= 0.7)).all()


def test_draem_accepts_uint8_textures(images: torch.Tensor, textures: torch.Tensor) -> None:
    as_bytes = (textures * 255).round().to(torch.uint8)
    from_bytes = DraemSynthesizer(as_bytes)(images, generator=torch.Generator().manual_seed(2))
    from_floats = DraemSynthesizer(textures)(images, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(from_bytes.images, from_floats.images, atol=1e-5)


@pytest.mark.parametrize(
    ("make_images", "error", "words"),
    [
        (lambda x: (x * 255).to(torch.uint8), TypeError, ["images", "float", "[0, 1]"]),
        (lambda x: x[:, :1], ValueError, ["images", "[B, 3, H, W]", "grey"]),
        (lambda x: x * 255, ValueError, ["images", "[0, 1]"]),
        (lambda x: x[0], ValueError, ["images", "[B, 3, H, W]"]),
        (lambda x: x.numpy(), TypeError, ["images", "torch.Tensor"]),
    ],
)
def test_draem_rejects_bad_images(images: torch.Tensor, textures: torch.Tensor, make_images, error: type, words: list[str]) -> None:
    with pytest.raises(error) as info:
        DraemSynthesizer(textures)(make_images(images))
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("textures", "error", "word"),
    [
        (torch.rand(4, 1, 8, 8), ValueError, "textures"),
        (torch.rand(0, 3, 8, 8), ValueError, "empty"),
        (torch.rand(2, 3, 8, 8) * 3, ValueError, "[0, 1]"),
        (torch.ones(2, 3, 8, 8, dtype=torch.int32), TypeError, "uint8"),
        (np.zeros((2, 3, 8, 8)), TypeError, "textures"),
    ],
)
def test_bad_textures_are_named(textures: object, error: type, word: str) -> None:
    with pytest.raises(error, match=word.replace("[", r"\[").replace("]", r"\]")):
        DraemSynthesizer(textures)


def test_bad_hyper_parameters_are_named(textures: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="beta"):
        DraemSynthesizer(textures, beta=(0.5, 1.5))
    with pytest.raises(ValueError, match="anomaly_probability"):
        DraemSynthesizer(textures, anomaly_probability=2)
    with pytest.raises(ValueError, match="perlin_scale"):
        DraemSynthesizer(textures, min_perlin_scale=4, perlin_scale=2)
    with pytest.raises(ValueError, match="augmentations_per_sample"):
        DraemSynthesizer(textures, augmentations_per_sample=20)


def test_texture_bank_resizes_and_keeps_range() -> None:
    bank = TextureBank(torch.rand(3, 3, 20, 30))
    out = bank.gather(torch.tensor([2, 0]), (16, 16), "cpu")
    assert out.shape == (2, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
    assert len(bank) == 3


# ----------------------------------------------------------------------------- MemSeg


def disc_images(count: int, size: int = SIZE, bright_object: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Textured discs on a plain background, and the discs' masks."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    generator = torch.Generator().manual_seed(0)
    images, masks = [], []
    for index in range(count):
        radius = size * (0.25 + 0.02 * (index % 5))
        disc = (((rows - size / 2) ** 2 + (cols - size / 2) ** 2) < radius**2).float()
        texture = 0.1 * torch.rand(3, size, size, generator=generator)
        obj, background = (0.75, 0.1) if bright_object else (0.1, 0.75)
        images.append(texture + disc * obj + (1 - disc) * background)
        masks.append(disc[None])
    return torch.stack(images).clamp(0, 1), torch.stack(masks)


def test_otsu_matches_opencv() -> None:
    generator = torch.Generator().manual_seed(0)
    grey = torch.cat([0.3 * torch.rand(4, 1, 32, 16, generator=generator), 0.5 + 0.4 * torch.rand(4, 1, 32, 16, generator=generator)], dim=3)
    ours = otsu_threshold(grey)
    for index in range(4):
        levels = (grey[index, 0] * 255).round().to(torch.uint8).numpy()
        expected, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        assert int(ours[index]) == int(expected)


def test_morphology_matches_opencv() -> None:
    masks = (torch.rand(3, 1, 40, 40, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    kernel = np.ones((5, 5), np.uint8)
    for index in range(3):
        array = masks[index, 0].numpy().astype(np.uint8)
        assert np.array_equal(binary_opening(masks, 5)[index, 0].numpy(), cv2.morphologyEx(array, cv2.MORPH_OPEN, kernel))
        assert np.array_equal(binary_closing(masks, 5)[index, 0].numpy(), cv2.morphologyEx(array, cv2.MORPH_CLOSE, kernel))


@pytest.mark.parametrize("bright_object", [True, False])
def test_foreground_masks_find_the_object(bright_object: bool) -> None:
    images, discs = disc_images(4, bright_object=bright_object)
    found = foreground_masks(images)  # polarity "auto": the background owns the border
    assert (found == discs).float().mean() > 0.98
    wrong = foreground_masks(images, polarity="dark" if bright_object else "bright")
    assert (wrong == discs).float().mean() < 0.1
    with pytest.raises(ValueError, match="polarity"):
        foreground_masks(images, polarity="sideways")  # type: ignore[arg-type]


def test_shuffle_grid_permutes_cells() -> None:
    images = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12)
    shuffled = shuffle_grid(images, (2, 3), generator=torch.Generator().manual_seed(0))
    cells = lambda x: sorted(x[0, :, r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4].flatten().tolist() for r in range(2) for c in range(3))  # noqa: E731
    assert cells(shuffled) == cells(images) and not torch.equal(shuffled, images)
    with pytest.raises(ValueError, match="structure_grid"):
        shuffle_grid(images, (3, 3))


def test_memseg_batch_properties_and_kinds(textures: torch.Tensor) -> None:
    images, discs = disc_images(32)
    synth = MemSegSynthesizer(textures, use_foreground=True, keep_sources=True)
    batch = synth(images, generator=torch.Generator().manual_seed(0))
    check_batch_properties(images, batch, (0.15, 1.0))
    assert int((batch.opacity > 0).sum()) == 16  # balanced: exactly half
    assert not (batch.masks.bool() & ~discs.bool()).any()  # anomalies stay on the object
    assert set(batch.kinds.unique().tolist()) == {NO_ANOMALY, TEXTURE_ANOMALY, STRUCTURE_ANOMALY}
    assert torch.equal(batch.kinds == NO_ANOMALY, batch.labels == 0)


def test_memseg_is_deterministic_and_honours_probabilities(textures: torch.Tensor) -> None:
    images, _ = disc_images(16)
    synth = MemSegSynthesizer(textures, anomaly_probability=1.0, threshold=-2.0, texture_probability=1.0)
    first = synth(images, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first.images, synth(images, generator=torch.Generator().manual_seed(5)).images)
    assert (first.kinds == TEXTURE_ANOMALY).all()
    structure_only = MemSegSynthesizer(None, anomaly_probability=1.0, threshold=-2.0)(images, generator=torch.Generator().manual_seed(5))
    assert (structure_only.kinds == STRUCTURE_ANOMALY).all()


def test_memseg_structure_grid_must_divide_the_image(textures: torch.Tensor) -> None:
    images, _ = disc_images(2)
    with pytest.raises(ValueError, match="structure_grid"):
        MemSegSynthesizer(textures, structure_grid=(5, 5))(images)


def test_memseg_uses_given_foreground(textures: torch.Tensor) -> None:
    images, _ = disc_images(8)
    left_half = torch.zeros(8, 1, SIZE, SIZE)
    left_half[..., : SIZE // 2] = 1
    batch = MemSegSynthesizer(textures, use_foreground=True, anomaly_probability=1.0, threshold=-2.0)(
        images, generator=torch.Generator().manual_seed(0), foreground=left_half
    )
    assert batch.masks[..., SIZE // 2 :].sum() == 0 and batch.labels.min() == 1


def test_a_batch_without_anomalies_is_a_copy_with_empty_targets(images: torch.Tensor, textures: torch.Tensor) -> None:
    for maker, has_kinds in ((DraemSynthesizer, False), (MemSegSynthesizer, True)):
        batch = maker(textures, anomaly_probability=0.0, keep_sources=True)(images, generator=torch.Generator().manual_seed(0))
        assert torch.equal(batch.images, images) and batch.images.data_ptr() != images.data_ptr(), maker.__name__
        assert batch.masks.shape == (images.shape[0], 1, *images.shape[-2:]) and batch.masks.sum() == 0
        assert batch.masks.dtype == images.dtype and batch.labels.dtype == images.dtype
        assert batch.labels.sum() == 0 and batch.opacity.sum() == 0
        assert torch.equal(batch.sources, images)
        assert (batch.kinds is not None) == has_kinds
        if has_kinds:
            assert batch.kinds.dtype == torch.long and batch.kinds.sum() == 0
