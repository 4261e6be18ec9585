"""Tests of adlearn.nn: SSIM against scikit-image, focal loss against hand computations, SSPCAB's masking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch import nn

from adlearn.nn import SSPCAB, FocalLoss, SqueezeExcitation, SSIMLoss, focal_loss, gaussian_window, ssim, ssim_map, sspcab_loss


def _image_pair(shape=(2, 3, 40, 48), dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator, dtype=dtype)
    # a smooth structure plus noise, so the pair is neither identical nor unrelated
    y = (0.7 * x + 0.3 * torch.rand(shape, generator=generator, dtype=dtype)).clamp(0, 1)
    return x, y


def _skimage(x: torch.Tensor, y: torch.Tensor, full: bool = False):
    """scikit-image's SSIM with the settings DRÆM's SSIM corresponds to."""
    a = x.permute(1, 2, 0).numpy()
    b = y.permute(1, 2, 0).numpy()
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2, full=full
    )


# ----------------------------------------------------------------------------- SSIM


def test_gaussian_window_is_normalised_symmetric_and_peaked():
    window = gaussian_window(11, 1.5, torch.float64)
    assert window.shape == (11,)
    assert float(window.sum()) == pytest.approx(1.0)
    assert torch.allclose(window, window.flip(0))
    assert int(window.argmax()) == 5
    # the same taps as scipy's gaussian_filter uses for sigma 1.5, truncate 3.5 (radius 5)
    offsets = np.arange(-5, 6)
    expected = np.exp(-(offsets**2) / (2 * 1.5**2))
    np.testing.assert_allclose(window.numpy(), expected / expected.sum(), rtol=1e-12)


@pytest.mark.parametrize("size, sigma", [(10, 1.5), (0, 1.5), (11, 0.0)])
def test_gaussian_window_rejects_bad_arguments(size, sigma):
    with pytest.raises(ValueError):
        gaussian_window(size, sigma)


def test_ssim_valid_mean_matches_skimage_per_image():
    x, y = _image_pair()
    ours = ssim(x, y, padding="valid", reduction="none")
    for i in range(x.shape[0]):
        assert float(ours[i]) == pytest.approx(_skimage(x[i], y[i]), abs=1e-10)


def test_ssim_full_map_matches_skimage_with_symmetric_padding():
    x, y = _image_pair(shape=(1, 3, 33, 29), seed=3)
    _, reference_map = _skimage(x[0], y[0], full=True)
    ours = ssim_map(x, y, padding="symmetric")[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, reference_map, atol=1e-10)


def test_ssim_float32_close_to_skimage():
    x, y = _image_pair(dtype=torch.float32, seed=1)
    reference = _skimage(x[0].double(), y[0].double())
    assert float(ssim(x[:1], y[:1], padding="valid")) == pytest.approx(reference, abs=1e-5)


def test_zero_padding_matches_reference_formulation_and_agrees_inside():
    """DRÆM's loss: a 2-D 11x11 Gaussian window, zero padding 5, mean over the whole map."""
    x, y = _image_pair(shape=(2, 3, 24, 24), seed=2)
    window_1d = gaussian_window(11, 1.5, torch.float64)
    window = torch.outer(window_1d, window_1d).expand(3, 1, 11, 11)

    def local_mean(t):
        return F.conv2d(t, window, padding=5, groups=3)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    reference = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))

    ours = ssim_map(x, y, padding="zeros")
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    valid = ssim_map(x, y, padding="valid")
    torch.testing.assert_close(ours[..., 5:-5, 5:-5], valid, atol=1e-12, rtol=0)


def test_ssim_of_identical_images_is_one_and_loss_zero():
    x, _ = _image_pair(dtype=torch.float32)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(SSIMLoss()(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_ssim_loss_is_differentiable_and_decreases_along_its_gradient():
    x, y = _image_pair(dtype=torch.float32)
    y = y.clone().requires_grad_(True)
    loss_fn = SSIMLoss()
    loss = loss_fn(x, y)
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = y - 50.0 * y.grad
    assert float(loss_fn(x, stepped)) < float(loss.detach())


def test_ssim_rejects_mismatched_shapes_and_bad_padding():
    x, y = _image_pair(dtype=torch.float32)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, y[:, :2])
    with pytest.raises(ValueError, match="padding"):
        ssim(x, y, padding="reflect")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 11"):
        ssim(x[..., :8, :8], y[..., :8, :8], padding="valid")
    with pytest.raises(ValueError, match="padding"):
        SSIMLoss(padding="circular")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- focal loss


def _two_pixel_logits():
    """Pixel 0 has p(anomalous) = 0.75, pixel 1 has p(anomalous) = 0.1."""
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), math.log(1.0 / 9.0)]]]])  # [1, 2, 1, 2]
    target = torch.tensor([[[[1.0, 1.0]]]])  # both pixels anomalous, [1, 1, 1, 2]
    return logits, target


def test_focal_loss_matches_hand_computation_without_smoothing():
    logits, target = _two_pixel_logits()
    expected = (-(0.25**2) * math.log(0.75) - (0.9**2) * math.log(0.1)) / 2
    assert float(focal_loss(logits, target, smooth=0.0)) == pytest.approx(expected, rel=1e-6)
    per_pixel = focal_loss(logits, target, smooth=0.0, reduction="none")
    assert per_pixel.shape == (1, 1, 2)
    assert float(per_pixel[0, 0, 0]) == pytest.approx(-(0.25**2) * math.log(0.75), rel=1e-6)


def test_focal_loss_matches_hand_computation_with_reference_smoothing():
    logits, target = _two_pixel_logits()
    s = 1e-5

    def term(p_true):
        # the reference clips the one-hot target to [s, 1 - s] and adds s to p_t
        pt = (1 - s) * p_true + s * (1 - p_true) + s
        return -((1 - pt) ** 2) * math.log(pt)

    expected = (term(0.75) + term(0.1)) / 2
    assert float(focal_loss(logits, target)) == pytest.approx(expected, rel=1e-6)
    assert float(FocalLoss()(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_alpha_weighs_classes():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 5, 5, generator=generator)
    target = (torch.rand(3, 1, 5, 5, generator=generator) > 0.7).float()
    ce = F.cross_entropy(logits, target[:, 0].long())
    assert float(focal_loss(logits, target, gamma=0.0, smooth=0.0)) == pytest.approx(float(ce), rel=1e-5)
    weighted = focal_loss(logits, target, gamma=0.0, smooth=0.0, alpha=[0.25, 0.75], reduction="none")
    plain = focal_loss(logits, target, gamma=0.0, smooth=0.0, reduction="none")
    expected = torch.where(target[:, 0] > 0.5, 0.75 * plain, 0.25 * plain)
    torch.testing.assert_close(weighted, expected)


def test_focal_loss_down_weights_easy_pixels():
    confident = torch.tensor([[[[-4.0]], [[4.0]]]])  # p(anomalous) ~ 0.9997
    target = torch.ones(1, 1, 1, 1)
    assert float(focal_loss(confident, target, smooth=0)) < 1e-3 * float(focal_loss(confident, target, gamma=0, smooth=0))


def test_focal_loss_rejects_bad_inputs():
    logits = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="does not match"):
        focal_loss(logits, torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="outside"):
        focal_loss(logits, torch.full((1, 1, 4, 4), 2.0))
    with pytest.raises(ValueError, match="one weight per class"):
        focal_loss(logits, torch.zeros(1, 1, 4, 4), alpha=[1.0])
    with pytest.raises(ValueError, match="smooth"):
        focal_loss(logits, torch.zeros(1, 1, 4, 4), smooth=1.0)


# ----------------------------------------------------------------------------- SSPCAB


@pytest.mark.parametrize("kernel_dim, dilation", [(1, 1), (2, 1), (1, 2), (1, 0)])
def test_sspcab_keeps_shape(kernel_dim, dilation):
    block = SSPCAB(16, kernel_dim=kernel_dim, dilation=dilation)
    x = torch.randn(2, 16, 11, 9)
    assert block(x).shape == x.shape
    assert block.receptive_field == 2 * kernel_dim + 2 * dilation + 1


@pytest.mark.parametrize("kernel_dim, dilation", [(1, 1), (2, 1), (1, 2)])
def test_sspcab_masked_convolution_sees_only_the_four_corners(kernel_dim, dilation):
    torch.manual_seed(0)
    block = SSPCAB(4, kernel_dim=kernel_dim, dilation=dilation)
    block.attention = nn.Identity()  # look at the masked convolution alone
    with torch.no_grad():
        for conv in block.corner_convs:
            conv.weight.abs_().add_(0.1)  # positive weights: every visible input has an effect
            conv.bias.fill_(1.0)  # stay on the linear side of the ReLU
    x = torch.rand(1, 4, 15, 15, requires_grad=True)
    centre = 7
    block(x)[0, :, centre, centre].sum().backward()
    visible = x.grad[0].abs().sum(dim=0) > 0
    expected = torch.zeros(15, 15, dtype=torch.bool)
    reach = kernel_dim + dilation  # distance from the centre to the outer edge of a corner
    near = dilation + 1  # distance from the centre to the inner edge of a corner
    for rows in (range(centre - reach, centre - near + 1), range(centre + near, centre + reach + 1)):
        for cols in (range(centre - reach, centre - near + 1), range(centre + near, centre + reach + 1)):
            for r in rows:
                for c in cols:
                    expected[r, c] = True
    assert torch.equal(visible, expected)
    assert not visible[centre, centre]  # the masked centre never predicts itself
    assert int(visible.sum()) == 4 * kernel_dim**2


def test_squeeze_excitation_scales_channels_between_zero_and_one():
    attention = SqueezeExcitation(16, reduction_ratio=8)
    x = torch.rand(2, 16, 5, 5) + 0.1
    y = attention(x)
    ratio = y / x
    assert ratio.shape == x.shape
    assert torch.all((ratio > 0) & (ratio < 1))
    # one weight per image and channel, constant over space
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio))
    assert attention.squeeze.out_features == 2
    assert SqueezeExcitation(4, reduction_ratio=8).squeeze.out_features == 1


def test_sspcab_loss_is_mse_and_trains_the_block():
    x = torch.randn(2, 8, 6, 6)
    y = torch.randn(2, 8, 6, 6)
    assert float(sspcab_loss(x, y)) == pytest.approx(float(((x - y) ** 2).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        sspcab_loss(x, y[:, :4])
    with pytest.raises(ValueError, match="expects"):
        SSPCAB(8)(torch.randn(1, 4, 6, 6))

    torch.manual_seed(0)
    block = SSPCAB(8)
    smooth = F.avg_pool2d(torch.rand(4, 8, 12, 12), 3, stride=1, padding=1)  # predictable from context
    optimizer = torch.optim.Adam(block.parameters(), lr=1e-2)
    first = float(sspcab_loss(smooth, block(smooth)).detach())
    for _ in range(60):
        loss = sspcab_loss(smooth, block(smooth))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first
