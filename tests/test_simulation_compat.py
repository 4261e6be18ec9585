"""The imgaug shim: imgaug imports and runs under NumPy 2 without changing NumPy for anyone else."""

from __future__ import annotations

import sys

import numpy as np

from adlearn.compat import NumpyAliasProxy, import_imgaug


def test_imgaug_imports_and_numpy_stays_untouched() -> None:
    iaa = import_imgaug()
    assert hasattr(iaa, "Sequential") and hasattr(iaa, "pillike")
    assert import_imgaug() is iaa  # a second call is cheap and returns the same module
    if int(np.__version__.split(".")[0]) >= 2:
        assert "sctypes" not in np.__dict__  # only patched during the import
        assert isinstance(sys.modules["imgaug.imgaug"].np, NumpyAliasProxy)
        assert sys.modules["imgaug.imgaug"].np.sctypes["uint"][0] is np.uint8


def test_shimmed_augmenters_run_including_removed_aliases() -> None:
    iaa = import_imgaug()
    image = np.random.default_rng(0).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    # SomeOf uses np.bool at run time; the others are the DRÆM set.
    augmenters = [
        iaa.SomeOf(2, [iaa.Invert(), iaa.Posterize(), iaa.Solarize(1.0)]),
        iaa.GammaContrast((0.5, 2.0), per_channel=True),
        iaa.MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30)),
        iaa.pillike.EnhanceSharpness(),
        iaa.AddToHueAndSaturation((-50, 50), per_channel=True),
        iaa.pillike.Autocontrast(cutoff=0),
        iaa.pillike.Equalize(),
        iaa.Affine(rotate=(-45, 45)),
    ]
    for augmenter in augmenters:
        out = augmenter(image=image)
        assert out.shape == image.shape and out.dtype == np.uint8


def test_proxy_answers_legacy_names_and_forwards_the_rest() -> None:
    proxy = NumpyAliasProxy()
    assert proxy.bool is bool and proxy.complex is complex
    assert proxy.zeros is np.zeros and "sctypes" in dir(proxy)
