"""Reusable layers and losses shared by the chapters: SSIM, focal loss, SSPCAB."""

from adlearn.nn.backbones import BACKBONES, BackboneWeightsWarning, FeatureExtractor
from adlearn.nn.coordinate_attention import CoordinateAttention
from adlearn.nn.focal import FocalLoss, focal_loss
from adlearn.nn.sspcab import SSPCAB, SqueezeExcitation, sspcab_loss
from adlearn.nn.ssim import SSIMLoss, gaussian_window, ssim, ssim_map

__all__ = [
    "BACKBONES",
    "BackboneWeightsWarning",
    "CoordinateAttention",
    "FeatureExtractor",
    "SSIMLoss",
    "SSPCAB",
    "FocalLoss",
    "SqueezeExcitation",
    "focal_loss",
    "gaussian_window",
    "sspcab_loss",
    "ssim",
    "ssim_map",
]
