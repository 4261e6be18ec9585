"""Batched augmentations: equal to PIL where PIL defines them, random plans that are repeatable."""

from __future__ import annotations

import colorsys

import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps
import pytest
import torch

from adlearn.simulation import augment as A


@pytest.fixture()
def photo() -> tuple[np.ndarray, torch.Tensor]:
    """A 40 x 50 RGB image with a skewed histogram, as uint8 and as a [1, 3, H, W] float tensor."""
    rng = np.random.default_rng(0)
    image = (rng.random((40, 50, 3)) ** 2 * 180 + 30).astype(np.uint8)
    return image, torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return (images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)


def test_equalize_matches_pil(photo: tuple[np.ndarray, torch.Tensor]) -> None:
    image, tensor = photo
    assert np.array_equal(as_uint8(A.equalize(tensor)), np.asarray(PIL.ImageOps.equalize(PIL.Image.fromarray(image))))


@pytest.mark.parametrize("cutoff", [0, 2, 10, 20])
def test_autocontrast_matches_pil(photo: tuple[np.ndarray, torch.Tensor], cutoff: int) -> None:
    image, tensor = photo
    expected = np.asarray(PIL.ImageOps.autocontrast(PIL.Image.fromarray(image), cutoff=cutoff))
    assert np.array_equal(as_uint8(A.autocontrast(tensor, torch.tensor([[float(cutoff)]]))), expected)


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_posterize_matches_pil(photo: tuple[np.ndarray, torch.Tensor], bits: int) -> None:
    image, tensor = photo
    expected = np.asarray(PIL.ImageOps.posterize(PIL.Image.fromarray(image), bits))
    assert np.array_equal(as_uint8(A.posterize(tensor, torch.tensor([[float(bits)]]))), expected)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.7])
def test_sharpness_matches_pil_to_one_level(photo: tuple[np.ndarray, torch.Tensor], factor: float) -> None:
    image, tensor = photo
    expected = np.asarray(PIL.ImageEnhance.Sharpness(PIL.Image.fromarray(image)).enhance(factor)).astype(np.int32)
    assert np.abs(as_uint8(A.sharpness(tensor, torch.tensor([[factor]]))) - expected).max() <= 1  # PIL rounds the smoothed image


def test_solarize_inverts_levels_at_or_above_the_threshold(photo: tuple[np.ndarray, torch.Tensor]) -> None:
    image, tensor = photo
    expected = np.asarray(PIL.ImageOps.solarize(PIL.Image.fromarray(image), threshold=100))
    assert np.array_equal(as_uint8(A.solarize(tensor, torch.tensor([[1.0, 100.0]]))), expected)
    assert torch.equal(A.solarize(tensor, torch.tensor([[0.0, 100.0]])), tensor)  # the coin said no


def test_hsv_round_trip_and_colorsys_agreement() -> None:
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    hsv = A.rgb_to_hsv(images)
    assert torch.allclose(A.hsv_to_rgb(hsv), images, atol=1e-6)
    pixel = images[1, :, 3, 4].tolist()
    assert np.allclose(hsv[1, :, 3, 4].tolist(), colorsys.rgb_to_hsv(*pixel), atol=1e-6)


def test_hue_shift_of_a_third_turn_maps_red_to_green() -> None:
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    green = A.adjust_hue(red, torch.tensor([1 / 3]))
    assert torch.allclose(green[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)
    # imgaug's AddToHueAndSaturation counts hue in 1/255 turns: 85 is a third of a turn.
    assert torch.allclose(A.add_hue_saturation(red, torch.tensor([[85.0, 0.0]])), green, atol=1e-2)


def test_brightness_keeps_the_chroma() -> None:
    images = 0.25 + 0.5 * torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    brighter = A.multiply_add_brightness(images, torch.tensor([[1.1, 0.02]] * 3))
    chroma_before = images - A.grayscale(images)
    chroma_after = brighter - A.grayscale(brighter)
    assert torch.allclose(chroma_before, chroma_after, atol=1e-6)
    assert (A.grayscale(brighter) > A.grayscale(images)).all()


def test_gamma_and_invert() -> None:
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    gammas = torch.tensor([[0.5, 1.0, 2.0], [1.0, 1.0, 1.0]])
    out = A.gamma_contrast(images, gammas)
    levels = (images * 255).round() / 255  # as imgaug on uint8 images, through a table of the 256 levels
    assert torch.allclose(out[0, 0], levels[0, 0].sqrt(), atol=1e-6) and torch.allclose(out[0, 2], levels[0, 2] ** 2, atol=1e-6)
    assert torch.allclose(out[1], levels[1], atol=1e-6)
    assert torch.equal(A.invert(images), 1 - images)


def test_rotate_quarter_turn_is_counter_clockwise_and_fill_works() -> None:
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    turned = A.rotate(images, torch.tensor([90.0, 0.0]))
    assert torch.allclose(turned[0], torch.rot90(images[0], 1, dims=(1, 2)), atol=1e-5)
    assert torch.allclose(turned[1], images[1], atol=1e-6)
    filled = A.rotate(torch.zeros(1, 1, 9, 9), torch.tensor([45.0]), fill=0.7)
    assert abs(filled[0, 0, 0, 0].item() - 0.7) < 1e-5 and abs(filled[0, 0, 4, 4].item()) < 1e-6


def test_every_draem_augmentation_keeps_shape_and_range() -> None:
    images = torch.rand(5, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    names = [op.name for op in A.DRAEM_AUGMENTATIONS]
    assert len(names) == 10 and len(set(names)) == 10
    for operation in A.DRAEM_AUGMENTATIONS:
        out = operation.apply(images, operation.sample(5, generator))
        assert out.shape == images.shape, operation.name
        assert out.min() >= 0 and out.max() <= 1, operation.name


def test_plans_pick_distinct_operations_and_repeat_under_a_seed() -> None:
    plan = A.sample_augmentation_plan(200, A.DRAEM_AUGMENTATIONS, count=3, generator=torch.Generator().manual_seed(0))
    assert plan.choices.shape == (200, 3)
    assert all(len(set(row.tolist())) == 3 for row in plan.choices)
    assert set(plan.choices.flatten().tolist()) == set(range(10))  # every operation gets used
    assert len(plan.names(0)) == 3 and all(isinstance(name, str) for name in plan.names(0))
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    first = A.random_augment(images, generator=torch.Generator().manual_seed(5))
    again = A.random_augment(images, generator=torch.Generator().manual_seed(5))
    other = A.random_augment(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(ValueError, match="count"):
        A.sample_augmentation_plan(2, A.DRAEM_AUGMENTATIONS, count=11)


def test_plan_applies_operations_in_order_per_image() -> None:
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    plan = A.sample_augmentation_plan(3, A.DRAEM_AUGMENTATIONS, count=2, generator=torch.Generator().manual_seed(3))
    batched = A.apply_augmentation_plan(images, plan)
    for index in range(3):
        expected = images[index : index + 1]
        for op_index in plan.choices[index].tolist():
            operation = plan.operations[op_index]
            expected = operation.apply(expected, plan.params[op_index][index : index + 1])
        assert torch.allclose(batched[index : index + 1], expected, atol=1e-6)


def test_color_jitter_is_mild_and_seeded() -> None:
    images = 0.2 + 0.6 * torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    jittered = A.color_jitter(images, 0.1, generator=torch.Generator().manual_seed(1))
    assert jittered.shape == images.shape and 0 < (jittered - images).abs().mean() < 0.1
    assert torch.equal(jittered, A.color_jitter(images, 0.1, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(A.color_jitter(images, 0.0, generator=torch.Generator().manual_seed(1)), images, atol=1e-5)
