"""Perlin noise: smooth random blobs, the shapes of DRÆM's and MemSeg's synthetic anomalies.

Perlin (gradient) noise puts a random unit gradient on every node of a
lattice of ``res_y x res_x`` cells. A pixel inside a cell takes the dot product
of each of the 4 corner gradients with its offset from that corner (a "ramp"),
and blends the 4 ramps with the quintic fade ``6t^5 - 15t^4 + 10t^3``, whose
first and second derivatives vanish at the cell borders (no visible seams).

Everything here follows the convention of DRÆM's reference code
(``rand_perlin_2d_np``): ``res[0]`` counts cells along the rows (height),
the first gradient component (``cos``) pairs with the row offset, and the
result is scaled by ``sqrt(2)`` so values lie in about ``[-1, 1]``.

The torch path is vectorised over a batch, with a different lattice per
sample allowed: Perlin noise is a sum of two *separable* bilinear forms,

    noise = sqrt(2) * (P_C @ G_row @ Q_D^T + P_A @ G_col @ Q_B^T)

where ``G_row``/``G_col`` are the gradient components on the lattice and the
``P``/``Q`` matrices (two non-zeros per row) hold the fade weights and ramps of
every row/column. Lattices of different sizes are zero-padded to the largest
one, so one batched matrix product makes all maps at once, on CPU or GPU.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> maps = perlin_noise((256, 256), (4, 8), batch=16, generator=g)
    >>> maps.shape
    torch.Size([16, 256, 256])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from adlearn.simulation._validation import generator_device
from adlearn.simulation.augment import rotate

__all__ = [
    "fade",
    "perlin_noise",
    "perlin_noise_from_angles",
    "perlin_noise_np",
    "random_lattice_resolution",
    "perlin_masks",
]

ResolutionLike = tuple[int, int] | Sequence[int] | torch.Tensor


def fade(t: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Perlin's quintic fade curve ``6t^5 - 15t^4 + 10t^3`` (Horner form)."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def _lattice_positions(size: int, res: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell index and fractional offset of each of ``size`` pixels for lattices of ``res`` cells.

    Pixel ``p`` sits at lattice coordinate ``p * res / size`` (as in DRÆM's
    ``np.mgrid[0:res:res/size]``). Integer arithmetic keeps the cell index exact.

    Returns:
        ``cell`` long ``[B, size]`` and ``frac`` float ``[B, size]`` in ``[0, 1)``.
    """
    pixel = torch.arange(size, device=res.device, dtype=torch.long)
    position = pixel[None, :] * res[:, None]  # [B, size]
    return position // size, (position % size).to(dtype) / size


def _interpolation_matrices(
    size: int, res: torch.Tensor, nodes: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fade weights with and without the ramp factor, scattered onto the lattice nodes.

    Returns:
        ``weights`` and ``ramp_weights``, both ``[B, size, nodes]``: row ``p`` has
        ``1 - fade(f)`` at node ``cell`` and ``fade(f)`` at ``cell + 1``
        (``weights``), multiplied by the offsets ``f`` and ``f - 1`` from those
        nodes (``ramp_weights``).
    """
    cell, frac = _lattice_positions(size, res, dtype)
    t = fade(frac)
    batch = res.shape[0]
    weights = torch.zeros(batch, size, nodes, device=res.device, dtype=dtype)
    ramp_weights = torch.zeros_like(weights)
    near, far = cell.unsqueeze(-1), (cell + 1).unsqueeze(-1)
    weights.scatter_(2, near, (1 - t).unsqueeze(-1))
    weights.scatter_(2, far, t.unsqueeze(-1))
    ramp_weights.scatter_(2, near, ((1 - t) * frac).unsqueeze(-1))
    ramp_weights.scatter_(2, far, (t * (frac - 1)).unsqueeze(-1))
    return weights, ramp_weights


def _as_resolution_tensor(res: ResolutionLike, batch: int | None, device: torch.device) -> torch.Tensor:
    """``res`` as a long tensor ``[B, 2]`` (rows, columns) of positive cell counts."""
    if isinstance(res, torch.Tensor):
        table = res.to(device=device, dtype=torch.long)
        if table.ndim == 1 and table.numel() == 2:
            table = table.expand(batch or 1, 2)
        if table.ndim != 2 or table.shape[1] != 2:
            raise ValueError(f"res must be (res_y, res_x) or a tensor [B, 2], got a tensor of shape {tuple(res.shape)}.")
        if batch is not None and table.shape[0] != batch:
            raise ValueError(f"res has {table.shape[0]} rows but batch={batch}; give one (res_y, res_x) per sample.")
    else:
        try:
            res_y, res_x = (int(r) for r in res)
        except (TypeError, ValueError):
            raise TypeError(f"res must be a pair of ints (res_y, res_x) or a tensor [B, 2], got {res!r}.") from None
        table = torch.tensor([[res_y, res_x]], dtype=torch.long, device=device).expand(batch or 1, 2)
    if table.numel() and int(table.min()) < 1:
        raise ValueError(f"res must count at least one lattice cell per axis, got minimum {int(table.min())}.")
    return table


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"shape must be (height, width), got {shape!r}.") from None
    if height < 1 or width < 1:
        raise ValueError(f"shape must be positive (height, width), got {(height, width)}.")
    return height, width


def _octave_factors(
    shape: tuple[int, int], res: torch.Tensor, angles: torch.Tensor, amplitude: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of one octave: ``noise = left @ right`` (``[B, H, 2 Ny]`` and ``[B, 2 Ny, W]``)."""
    height, width = shape
    dtype = angles.dtype
    res = res.to(angles.device)
    row_weights, row_ramps = _interpolation_matrices(height, res[:, 0], angles.shape[1], dtype)
    col_weights, col_ramps = _interpolation_matrices(width, res[:, 1], angles.shape[2], dtype)
    gradient_row, gradient_col = torch.cos(angles), torch.sin(angles)
    # Row-offset ramps pair with the first gradient component, column-offset ramps with the second.
    right = torch.cat(
        [gradient_row @ col_weights.transpose(1, 2), gradient_col @ col_ramps.transpose(1, 2)], dim=1
    )  # [B, 2 * Ny, W]
    # The scale factors go into the small left factor, not the full-size result.
    left = torch.cat([row_ramps, row_weights], dim=2) * (math.sqrt(2.0) * amplitude)  # [B, H, 2 * Ny]
    return left, right


def _check_angles(res: torch.Tensor, angles: torch.Tensor) -> None:
    if angles.ndim != 3 or angles.shape[0] != res.shape[0]:
        raise ValueError(f"angles must be [B, Ny, Nx] with B = {res.shape[0]}, got {tuple(angles.shape)}.")
    if angles.shape[1] <= int(res[:, 0].max()) or angles.shape[2] <= int(res[:, 1].max()):
        raise ValueError(
            f"angles of shape {tuple(angles.shape)} cannot hold lattices of up to {res.max(0).values.tolist()} cells."
        )


def perlin_noise_from_angles(shape: Sequence[int], res: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """One octave of Perlin noise for given gradient angles (the deterministic core).

    Args:
        shape: ``(H, W)`` of the maps.
        res: long ``[B, 2]`` cells per axis (rows, columns) of each sample.
        angles: ``[B, Ny, Nx]`` gradient angles in radians on the lattice nodes,
            with ``Ny > max(res[:, 0])`` and ``Nx > max(res[:, 1])``; nodes beyond a
            sample's own lattice are ignored.

    Returns:
        ``[B, H, W]`` noise in about ``[-1, 1]``, with ``angles``' dtype and device.
    """
    height, width = _check_shape(shape)
    _check_angles(res, angles)
    left, right = _octave_factors((height, width), res, angles, 1.0)
    return torch.bmm(left, right)


def perlin_noise(
    shape: Sequence[int],
    res: ResolutionLike,
    *,
    batch: int | None = None,
    octaves: int = 1,
    persistence: float = 0.5,
    lacunarity: int = 2,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A batch of 2-D Perlin noise maps, all made at once.

    Args:
        shape: ``(H, W)`` of each map (any size; it need not be a multiple of ``res``).
        res: lattice cells ``(res_y, res_x)`` shared by all maps, or a long tensor
            ``[B, 2]`` with one lattice per map.
        batch: number of maps (default: the rows of a ``[B, 2]`` ``res``, else 1).
        octaves: layers summed, each with ``lacunarity`` times more cells and
            ``persistence`` times the amplitude of the previous one.
        persistence: amplitude ratio between successive octaves.
        lacunarity: integer frequency ratio between successive octaves.
        generator: source of the random gradient angles (drawn on its device,
            then moved to ``device``, so a seed gives the same maps on CPU and GPU).
        device: where the maps are computed (default: the CPU).
        dtype: floating dtype of the result.

    Returns:
        ``[B, H, W]`` noise; one octave lies in about ``[-1, 1]``.
    """
    height, width = _check_shape(shape)
    if octaves < 1:
        raise ValueError(f"octaves must be at least 1, got {octaves}.")
    if int(lacunarity) != lacunarity or lacunarity < 1:
        raise ValueError(f"lacunarity must be a positive integer, got {lacunarity}.")
    device = torch.device(device) if device is not None else torch.device("cpu")
    table = _as_resolution_tensor(res, batch, torch.device("cpu"))
    # One batched product for all maps, padded to the largest lattice. Making maps in
    # groups of equal row counts (so small lattices do not pay for 33 rows of nodes)
    # was measured slower on a CPU at 4 and at 64 maps of DRÆM's 1..32 cells: each
    # group costs a round of small tensor work plus a reordering copy at the end.
    return _same_row_lattices((height, width), table, octaves, persistence, lacunarity, generator, device, dtype)


def _same_row_lattices(
    shape: tuple[int, int],
    table: torch.Tensor,
    octaves: int,
    persistence: float,
    lacunarity: int,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The maps of ``table`` ``[n, 2]`` (CPU), all octaves in one batched matrix product."""
    num_maps = table.shape[0]
    draw_device = generator_device(generator)
    lefts, rights = [], []
    amplitude = 1.0
    for octave in range(octaves):
        octave_res = table * int(lacunarity) ** octave
        nodes_y, nodes_x = int(octave_res[:, 0].max()) + 1, int(octave_res[:, 1].max()) + 1
        angles = torch.rand(num_maps, nodes_y, nodes_x, generator=generator, device=draw_device, dtype=torch.float64)
        angles = (2 * math.pi * angles).to(device=device, dtype=dtype)
        left, right = _octave_factors(shape, octave_res.to(device), angles, amplitude)
        lefts.append(left)
        rights.append(right)
        amplitude *= persistence
    # All octaves in one batched product: the only full-size operation.
    return torch.bmm(torch.cat(lefts, dim=2), torch.cat(rights, dim=1))


def perlin_noise_np(
    shape: Sequence[int],
    res: Sequence[int],
    *,
    rng: np.random.Generator | None = None,
    angles: np.ndarray | None = None,
    fade_fn: Callable[[np.ndarray], np.ndarray] = fade,
) -> np.ndarray:
    """One Perlin map in NumPy, written out step by step (DRÆM's ``rand_perlin_2d_np``, any shape).

    Args:
        shape: ``(H, W)``.
        res: ``(res_y, res_x)`` lattice cells.
        rng: source of the gradient angles (default: a fresh unseeded generator).
        angles: ``[res_y + 1, res_x + 1]`` gradient angles to use instead of random ones.
        fade_fn: the interpolation curve (try a linear one to see the seams).

    Returns:
        ``[H, W]`` float64 noise in about ``[-1, 1]``.
    """
    height, width = _check_shape(shape)
    res_y, res_x = (int(r) for r in res)
    if angles is None:
        rng = rng if rng is not None else np.random.default_rng()
        angles = 2 * np.pi * rng.random((res_y + 1, res_x + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # [res_y+1, res_x+1, 2]
    # Lattice coordinate of every pixel: integer cell plus fractional offset.
    pos_y = np.arange(height) * res_y
    pos_x = np.arange(width) * res_x
    cell_y, frac_y = pos_y // height, (pos_y % height) / height
    cell_x, frac_x = pos_x // width, (pos_x % width) / width
    cy, cx = np.meshgrid(cell_y, cell_x, indexing="ij")
    fy, fx = np.meshgrid(frac_y, frac_x, indexing="ij")

    def ramp(dy: int, dx: int) -> np.ndarray:
        corner = gradients[cy + dy, cx + dx]  # the gradient at that corner, per pixel
        return corner[..., 0] * (fy - dy) + corner[..., 1] * (fx - dx)

    ty, tx = fade_fn(fy), fade_fn(fx)
    top = ramp(0, 0) * (1 - ty) + ramp(1, 0) * ty  # blend along the rows first, as DRÆM does
    bottom = ramp(0, 1) * (1 - ty) + ramp(1, 1) * ty
    return np.sqrt(2) * (top * (1 - tx) + bottom * tx)


def random_lattice_resolution(
    batch: int,
    *,
    min_perlin_scale: int = 0,
    perlin_scale: int = 6,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DRÆM's lattice sizes: ``2**k`` cells per axis, ``k`` drawn independently in ``[min, max)``.

    Returns:
        long ``[batch, 2]`` on the generator's device (with the defaults: 1 to 32 cells).
    """
    if not 0 <= min_perlin_scale < perlin_scale:
        raise ValueError(
            f"need 0 <= min_perlin_scale < perlin_scale, got min_perlin_scale={min_perlin_scale}, perlin_scale={perlin_scale}."
        )
    exponents = torch.randint(
        min_perlin_scale, perlin_scale, (batch, 2), generator=generator, device=generator_device(generator)
    )
    return 2**exponents


def perlin_masks(
    shape: Sequence[int],
    batch: int,
    *,
    min_perlin_scale: int = 0,
    perlin_scale: int = 6,
    threshold: float = 0.5,
    rotation: tuple[float, float] = (-90.0, 90.0),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DRÆM's anomaly shapes: Perlin noise at a random ``2^k`` lattice, rotated, thresholded.

    Args:
        shape: ``(H, W)``.
        batch: number of masks.
        min_perlin_scale, perlin_scale: lattice exponents ``k`` are drawn in ``[min, max)``.
        threshold: pixels whose noise exceeds it belong to the mask (DRÆM: 0.5).
        rotation: range of the random rotation in degrees (DRÆM: ``(-90, 90)``);
            corners rotated in from outside the map get noise 0, i.e. no anomaly.
        generator: random source (see :func:`perlin_noise`).
        device: where to compute.

    Returns:
        ``masks`` float ``[B, 1, H, W]`` in ``{0, 1}`` and the rotated ``noise`` ``[B, 1, H, W]``.
    """
    height, width = _check_shape(shape)
    device = torch.device(device) if device is not None else torch.device("cpu")
    res = random_lattice_resolution(batch, min_perlin_scale=min_perlin_scale, perlin_scale=perlin_scale, generator=generator)
    low, high = rotation
    angles = low + (high - low) * torch.rand(batch, generator=generator, device=generator_device(generator))
    noise = perlin_noise((height, width), res, generator=generator, device=device)
    noise = rotate(noise.unsqueeze(1), angles.to(device))
    masks = (noise > threshold).to(noise.dtype)
    return masks, noise
