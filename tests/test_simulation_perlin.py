"""Perlin noise: the batched torch path, the NumPy path, and DRÆM's masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adlearn.simulation.perlin import (
    fade,
    perlin_masks,
    perlin_noise,
    perlin_noise_from_angles,
    perlin_noise_np,
    random_lattice_resolution,
)


def textbook_perlin(shape: tuple[int, int], res: tuple[int, int], angles: np.ndarray) -> np.ndarray:
    """Per-pixel Perlin noise straight from the definition (slow, obviously correct)."""
    height, width = shape
    out = np.zeros(shape)
    for y in range(height):
        for x in range(width):
            u, v = y * res[0] / height, x * res[1] / width
            i, j = int(math.floor(u)), int(math.floor(v))
            fy, fx = u - i, v - j
            ramps = {}
            for dy in (0, 1):
                for dx in (0, 1):
                    angle = angles[i + dy, j + dx]
                    ramps[dy, dx] = math.cos(angle) * (fy - dy) + math.sin(angle) * (fx - dx)
            ty, tx = 6 * fy**5 - 15 * fy**4 + 10 * fy**3, 6 * fx**5 - 15 * fx**4 + 10 * fx**3
            top = ramps[0, 0] * (1 - ty) + ramps[1, 0] * ty
            bottom = ramps[0, 1] * (1 - ty) + ramps[1, 1] * ty
            out[y, x] = math.sqrt(2) * (top * (1 - tx) + bottom * tx)
    return out


def test_fade_is_quintic_with_flat_ends() -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(fade(t), torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    eps = 1e-6
    for point in (0.0, 1.0):
        slope = (fade(torch.tensor(point + eps, dtype=torch.float64)) - fade(torch.tensor(point - eps, dtype=torch.float64))) / (2 * eps)
        assert abs(float(slope)) < 1e-6
    assert np.isclose(fade(np.array(0.3)), 6 * 0.3**5 - 15 * 0.3**4 + 10 * 0.3**3)


@pytest.mark.parametrize(("shape", "res"), [((16, 16), (4, 2)), ((15, 22), (3, 5)), ((8, 12), (1, 1))])
def test_numpy_path_matches_the_definition(shape: tuple[int, int], res: tuple[int, int]) -> None:
    angles = np.random.default_rng(0).uniform(0, 2 * np.pi, size=(res[0] + 1, res[1] + 1))
    np.testing.assert_allclose(perlin_noise_np(shape, res, angles=angles), textbook_perlin(shape, res, angles), atol=1e-12)


def test_torch_path_matches_numpy_per_sample_with_mixed_lattices() -> None:
    res = torch.tensor([[4, 8], [2, 2], [32, 1], [5, 3]])
    angles = torch.rand(4, 33, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 * math.pi
    batch = perlin_noise_from_angles((64, 50), res, angles)
    assert batch.shape == (4, 64, 50) and batch.dtype == torch.float64
    for index, (res_y, res_x) in enumerate(res.tolist()):
        single = perlin_noise_np((64, 50), (res_y, res_x), angles=angles[index, : res_y + 1, : res_x + 1].numpy())
        np.testing.assert_allclose(batch[index].numpy(), single, atol=1e-12)


def test_noise_vanishes_on_lattice_nodes_and_stays_in_range() -> None:
    noise = perlin_noise((64, 64), (4, 8), batch=6, generator=torch.Generator().manual_seed(0))
    assert noise.shape == (6, 64, 64) and noise.dtype == torch.float32
    nodes = noise[:, ::16, ::8]  # 64 / 4 rows and 64 / 8 columns per cell
    assert nodes.abs().max() < 1e-6
    assert noise.abs().max() <= 1 + 1e-5
    assert noise.std() > 0.1


def test_seed_determines_the_maps() -> None:
    def make(seed: int) -> torch.Tensor:
        return perlin_noise((32, 32), (4, 4), batch=3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(make(3), make(3))
    assert not torch.allclose(make(3), make(4))


def test_per_sample_resolution_tensor_and_batch_check() -> None:
    res = torch.tensor([[1, 1], [16, 16]])
    noise = perlin_noise((64, 64), res, generator=torch.Generator().manual_seed(0))
    assert noise.shape == (2, 64, 64)
    # The finer lattice varies faster: a larger mean difference between neighbours.
    roughness = (noise[:, :, 1:] - noise[:, :, :-1]).abs().mean(dim=(1, 2))
    assert roughness[1] > 4 * roughness[0]
    with pytest.raises(ValueError, match="batch"):
        perlin_noise((8, 8), res, batch=3)


def test_octaves_add_finer_detail() -> None:
    one = perlin_noise((64, 64), (2, 2), batch=8, octaves=1, generator=torch.Generator().manual_seed(0))
    four = perlin_noise((64, 64), (2, 2), batch=8, octaves=4, generator=torch.Generator().manual_seed(0))
    # The first octave is drawn first, so the coarse structure is shared.
    assert torch.corrcoef(torch.stack([one.flatten(), four.flatten()]))[0, 1] > 0.8
    rough = lambda n: (n[:, :, 1:] - n[:, :, :-1]).abs().mean()  # noqa: E731
    assert rough(four) > 1.5 * rough(one)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"shape": (0, 8), "res": (1, 1)}, ValueError, "shape"),
        ({"shape": (8, 8), "res": (0, 1)}, ValueError, "res"),
        ({"shape": (8, 8), "res": "four"}, TypeError, "res"),
        ({"shape": (8, 8), "res": (1, 1), "octaves": 0}, ValueError, "octaves"),
        ({"shape": (8, 8), "res": torch.ones(2, 3, dtype=torch.long)}, ValueError, "res"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        perlin_noise(**kwargs)


def test_random_lattice_resolution_is_powers_of_two_in_range() -> None:
    res = random_lattice_resolution(2000, min_perlin_scale=1, perlin_scale=4, generator=torch.Generator().manual_seed(0))
    assert res.shape == (2000, 2)
    assert set(res.unique().tolist()) == {2, 4, 8}
    with pytest.raises(ValueError, match="min_perlin_scale"):
        random_lattice_resolution(4, min_perlin_scale=3, perlin_scale=3)


def test_perlin_masks_are_binary_and_shrink_with_the_threshold() -> None:
    coverage = []
    for threshold in (0.0, 0.3, 0.6):
        masks, noise = perlin_masks((48, 48), 32, threshold=threshold, generator=torch.Generator().manual_seed(0))
        assert masks.shape == noise.shape == (32, 1, 48, 48)
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(masks, (noise > threshold).float())
        coverage.append(masks.mean().item())
    assert coverage[0] > coverage[1] > coverage[2] > 0


def test_rotation_brings_in_empty_corners() -> None:
    _, straight = perlin_masks((32, 32), 16, perlin_scale=4, rotation=(0.0, 0.0), generator=torch.Generator().manual_seed(0))
    _, turned = perlin_masks((32, 32), 16, perlin_scale=4, rotation=(45.0, 45.0), generator=torch.Generator().manual_seed(0))
    corner = (slice(None), 0, slice(0, 3), slice(29, 32))
    assert straight[corner].abs().max() > 0  # the map itself reaches the corner
    assert turned[corner].abs().max() == 0  # rotated 45 degrees: the corner came from outside (noise 0, no anomaly)
