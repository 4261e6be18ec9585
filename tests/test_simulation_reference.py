"""The per-sample reference pipelines, and the batched makers measured against them.

The two paths draw different random numbers, so they are compared by the
statistics a training run sees: how many samples are anomalous, how much of
an image the masks cover (two-sample Kolmogorov-Smirnov test), the blend
bounds and the value range.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from adlearn.data.textures import fallback_textures
from adlearn.simulation import DraemSynthesizer, MemSegSynthesizer, SyntheticBatch, cutpaste, cutpaste_scar
from adlearn.simulation.reference import (
    cutpaste_reference,
    cutpaste_scar_reference,
    draem_reference,
    memseg_reference,
    reference_batch,
)

SIZE = 64


@pytest.fixture(scope="module")
def textures() -> torch.Tensor:
    return fallback_textures(12, SIZE, seed=0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    shuffled = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    return fallback_textures(64, SIZE, seed=5)[shuffled]


def check_common(images: torch.Tensor, batch: SyntheticBatch) -> None:
    """Range, binary masks, label = mask non-empty, changes only inside the mask, blend bounds."""
    inputs = (images * 255).round() / 255  # the reference works on 8-bit images
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert set(batch.masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(batch.labels, (batch.masks.flatten(1).sum(1) > 0).float())
    changed = ((batch.images - inputs).abs() > 1e-6).any(dim=1, keepdim=True)
    assert not (changed & (batch.masks == 0)).any()
    low = torch.minimum(inputs, batch.sources) - 1 / 255 - 1e-6  # MemSeg's code rounds down to uint8
    high = torch.maximum(inputs, batch.sources) + 1e-6
    inside = batch.masks.expand_as(images) > 0
    assert ((batch.images >= low) & (batch.images <= high))[inside].all()


def coverage(batch: SyntheticBatch) -> np.ndarray:
    return batch.masks.flatten(1).mean(1)[batch.labels > 0].numpy()


def test_draem_reference_and_batched_paths_agree(images: torch.Tensor, textures: torch.Tensor) -> None:
    reference = reference_batch(draem_reference, images, textures=textures, seed=0)
    batched = DraemSynthesizer(textures, keep_sources=True)(images.repeat(4, 1, 1, 1), generator=torch.Generator().manual_seed(1))
    check_common(images, reference)
    check_common(images.repeat(4, 1, 1, 1), batched)
    assert ((reference.opacity[reference.labels > 0] >= 0.1) & (reference.opacity[reference.labels > 0] <= 1)).all()
    # Half the samples are chosen, and empty masks make some of those normal.
    for batch in (reference, batched):
        assert 0.25 < batch.labels.mean().item() < 0.7
    assert ks_2samp(coverage(reference), coverage(batched)).pvalue > 0.01
    ratio = coverage(batched).mean() / coverage(reference).mean()
    assert 0.6 < ratio < 1.6


def test_memseg_reference_and_batched_paths_agree(images: torch.Tensor, textures: torch.Tensor) -> None:
    reference = reference_batch(memseg_reference, images, textures=textures, seed=0)
    batched = MemSegSynthesizer(textures, balanced=False, keep_sources=True)(images.repeat(4, 1, 1, 1), generator=torch.Generator().manual_seed(1))
    check_common(images, reference)
    check_common(images.repeat(4, 1, 1, 1), batched)
    for batch in (reference, batched):
        assert 0.25 < batch.labels.mean().item() < 0.7
        kinds = batch.kinds[batch.labels > 0]
        assert set(kinds.tolist()) == {1, 2}  # texture and structure anomalies both occur
        opacity = batch.opacity[batch.labels > 0]
        assert ((opacity >= 0.15) & (opacity <= 1)).all()
    assert ks_2samp(coverage(reference), coverage(batched)).pvalue > 0.01


def test_memseg_reference_foreground_keeps_anomalies_on_the_object() -> None:
    size = SIZE
    rows, cols = np.mgrid[0:size, 0:size]
    disc = ((rows - size / 2) ** 2 + (cols - size / 2) ** 2) < (size / 3) ** 2
    image = np.where(disc[..., None], 200, 30).astype(np.uint8) + np.random.default_rng(0).integers(0, 10, (size, size, 3)).astype(np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(12):
        sample = memseg_reference(image, None, rng, anomaly_probability=1.0, threshold=-2.0, use_foreground=True)
        assert sample.label == 1.0 and sample.kind == 2
        assert not (sample.mask.astype(bool) & ~disc).any()


@pytest.mark.parametrize(("reference_maker", "batched_maker"), [(cutpaste_reference, cutpaste), (cutpaste_scar_reference, cutpaste_scar)])
def test_cutpaste_reference_and_batched_areas_agree(reference_maker, batched_maker) -> None:
    images = fallback_textures(16, 96, seed=5)
    reference = reference_batch(reference_maker, images.repeat(3, 1, 1, 1), seed=0)
    batched = batched_maker(images.repeat(8, 1, 1, 1), generator=torch.Generator().manual_seed(1))
    for batch, inputs in ((reference, images.repeat(3, 1, 1, 1)), (batched, images.repeat(8, 1, 1, 1))):
        assert batch.labels.min() == 1
        changed = ((batch.images - (inputs * 255).round() / 255).abs() > 1.5 / 255).any(dim=1, keepdim=True)
        assert not (changed & (batch.masks == 0)).any()
    areas = [batch.masks.flatten(1).sum(1).numpy() for batch in (reference, batched)]
    assert ks_2samp(*areas).pvalue > 0.01
    assert 0.75 < areas[1].mean() / areas[0].mean() < 1.33


def test_reference_is_deterministic_under_a_seed(images: torch.Tensor, textures: torch.Tensor) -> None:
    first = reference_batch(draem_reference, images[:6], textures=textures, seed=3)
    again = reference_batch(draem_reference, images[:6], textures=textures, seed=3)
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)


def test_reference_input_checks() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="image"):
        draem_reference(np.zeros((8, 8)), np.zeros((8, 8, 3), np.uint8), rng)
    with pytest.raises(ValueError, match="textures"):
        reference_batch(draem_reference, torch.rand(1, 3, 8, 8))
