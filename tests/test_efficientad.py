"""Tests of adlearn.methods.efficientad: the PDN's receptive field, shapes, the hard-feature loss, quantile
normalisation, the teacher's three sources (published layouts, distillation, random), save/load, and a
short training that separates a defective built-in image from the good ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adlearn import methods
from adlearn.data import MVTecAD
from adlearn.methods import EfficientAD
from adlearn.methods import efficientad_teacher
from adlearn.methods.efficientad import hard_feature_loss, quantile_normalize
from adlearn.methods.efficientad_teacher import distill_teacher, distillation_targets, load_teacher_file
from adlearn.nn.backbones import FeatureExtractor
from adlearn.nn.pdn import (
    PDN_RECEPTIVE_FIELD, EfficientADAutoencoder, PatchDescriptionNetwork, convert_pdn_state_dict, pdn_output_size,
)

#: a short quick-profile training on the built-in washer at 128 px (about 25 s on one core). A random teacher
#: is fast and enough to separate here; at 64 px the 33-px receptive field covers half the image and the
#: largest defect does not stand out after so short a training.
TRAINED = dict(image_size=128, steps=100, batch_size=4, teacher="random")


@pytest.fixture(scope="module")
def washer(builtin_root):
    return MVTecAD(builtin_root, "washer", "train", image_size=64), MVTecAD(builtin_root, "washer", "test", image_size=64)


@pytest.fixture(scope="module")
def washer128(builtin_root):
    return MVTecAD(builtin_root, "washer", "train", image_size=128), MVTecAD(builtin_root, "washer", "test", image_size=128)


@pytest.fixture(scope="module")
def trained(washer128):
    train, _ = washer128
    return EfficientAD.from_profile("quick", **TRAINED).fit(train, progress=False, device="cpu")


def stack(dataset, indices):
    return torch.stack([dataset[i]["image"] for i in indices])


def reference_pdn_small(out_channels=384, widths=(128, 256, 256)):
    """The reference re-implementation's ``get_pdn_small`` (an ``nn.Sequential``: keys 0, 3, 6, 8)."""
    a, b, c = widths
    return nn.Sequential(
        nn.Conv2d(3, a, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(a, b, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(b, c, 3), nn.ReLU(inplace=True), nn.Conv2d(c, out_channels, 4),
    )


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("size", ["small", "medium"])
def test_pdn_output_depends_on_exactly_its_33x33_patch(size):
    torch.manual_seed(0)
    pdn = PatchDescriptionNetwork(size, out_channels=8, widths=(8, 8, 8)).double().eval()
    image = torch.rand(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    row, col = 3, 5
    pdn(image)[0, :, row, col].sum().backward()
    seen = image.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = seen.any(dim=1).nonzero().flatten(), seen.any(dim=0).nonzero().flatten()
    assert (int(rows.min()), int(rows.max()) + 1) == (4 * row, 4 * row + PDN_RECEPTIVE_FIELD)
    assert (int(cols.min()), int(cols.max()) + 1) == (4 * col, 4 * col + PDN_RECEPTIVE_FIELD)
    # and as the issue states it: a change outside the patch leaves the output pixel alone, one inside does not
    with torch.no_grad():
        base = pdn(image)[0, :, row, col]
        outside, inside = image.clone(), image.clone()
        outside[0, :, 4 * row + PDN_RECEPTIVE_FIELD, 4 * col] += 1.0  # the first row below the patch
        outside[0, :, 4 * row - 1, 4 * col + 10] += 1.0  # the row above it
        inside[0, :, 4 * row + PDN_RECEPTIVE_FIELD - 1, 4 * col + PDN_RECEPTIVE_FIELD - 1] += 1.0  # its last pixel
        torch.testing.assert_close(pdn(outside)[0, :, row, col], base, rtol=0, atol=0)
        assert float((pdn(inside)[0, :, row, col] - base).abs().max()) > 1e-6


@pytest.mark.parametrize("image_size, grid", [(256, 56), (128, 24), (64, 8)])
def test_shapes_of_teacher_student_and_autoencoder(image_size, grid):
    assert pdn_output_size(image_size) == grid and pdn_output_size(image_size, padding=True) == image_size // 4
    images = torch.rand(2, 3, image_size, image_size)
    with torch.no_grad():
        teacher = PatchDescriptionNetwork("small", 384, widths=(8, 8, 8))(images)
        student = PatchDescriptionNetwork("small", 768, widths=(8, 8, 8))(images)
        medium = PatchDescriptionNetwork("medium", 384, widths=(8, 8, 8))(images)
        autoencoder = EfficientADAutoencoder(image_size, 384, grid)
        code = autoencoder.encode(images)
        decoded = autoencoder(images)
    assert teacher.shape == medium.shape == decoded.shape == (2, 384, grid, grid)
    assert student.shape == (2, 768, grid, grid)
    assert code.shape == (2, 64, 1, 1)  # the 64-number bottleneck


def test_paper_widths_and_parameter_counts():
    small, medium = PatchDescriptionNetwork("small"), PatchDescriptionNetwork("medium")
    assert small.widths == (128, 256, 256) and medium.widths == (256, 512, 512)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    # PDN-S: 3*128*16 + 128*256*16 + 256*256*9 + 256*384*16 weights, plus biases
    assert count(small) == (3 * 128 * 16 + 128) + (128 * 256 * 16 + 256) + (256 * 256 * 9 + 256) + (256 * 384 * 16 + 384)
    assert count(medium) > 2 * count(small)
    with pytest.raises(ValueError, match="multiple of 32"):
        EfficientADAutoencoder(100)


# ----------------------------------------------------------------------------- losses and normalisation


@pytest.mark.parametrize("p_hard", [0.999, 0.9, 0.5])
def test_hard_feature_loss_is_the_mean_above_the_quantile(p_hard):
    torch.manual_seed(0)
    distances = torch.rand(2, 16, 7, 7).square().requires_grad_(True)
    threshold = torch.quantile(distances.detach().flatten(), p_hard)
    expected = distances.detach()[distances.detach() >= threshold].mean()
    loss = hard_feature_loss(distances, p_hard)
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    chosen = distances.grad != 0  # only the hard elements get a gradient
    assert int(chosen.sum()) == int((distances.detach() >= threshold).sum())
    assert bool((distances.detach()[chosen] >= threshold).all())


def test_hard_feature_loss_with_p_zero_is_the_mse():
    distances = torch.rand(3, 4, 5, 5)
    torch.testing.assert_close(hard_feature_loss(distances, 0.0), distances.mean())


def test_quantile_normalize_maps_q_a_to_0_and_q_b_to_0_1():
    values = torch.linspace(0, 10, 1001)
    low, high = torch.quantile(values, 0.9), torch.quantile(values, 0.995)
    normalised = quantile_normalize(values, low, high)
    torch.testing.assert_close(torch.quantile(normalised, 0.9), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.quantile(normalised, 0.995), torch.tensor(0.1), atol=1e-6, rtol=0)


def test_calibration_fits_the_quantiles_on_held_out_normal_images(washer):
    train, _ = washer
    held = stack(train, range(len(train)))[:6]
    detector = EfficientAD.from_profile("quick", steps=2, teacher="random")
    detector.fit(stack(train, range(6, len(train))), held_out=held, progress=False, device="cpu")
    local, global_ = detector.normalized_maps(held)
    for maps in (local, global_):
        values = maps.flatten()
        torch.testing.assert_close(torch.quantile(values, 0.9), torch.tensor(0.0), atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.quantile(values, 0.995), torch.tensor(0.1), atol=1e-5, rtol=0)
    combined = detector.predict(held)
    assert combined.maps.shape == (6, 1, 64, 64)
    torch.testing.assert_close(combined.scores, combined.maps.flatten(1).amax(1))


# ----------------------------------------------------------------------------- the teacher


def test_published_sequential_layout_loads_and_computes_the_same(tmp_path):
    torch.manual_seed(1)
    reference = reference_pdn_small(16, (8, 8, 8)).eval()
    path = tmp_path / "teacher_small.pth"
    torch.save(reference.state_dict(), path)  # keys 0.weight, 3.weight, 6.weight, 8.weight
    ours = PatchDescriptionNetwork("small", 16, (8, 8, 8)).eval()
    info, history = load_teacher_file(path, ours)
    assert info["teacher"] == "file (published weights)" and history is None
    images = torch.rand(2, 3, 64, 64)
    from adlearn.nn.pdn import IMAGENET_MEAN, IMAGENET_STD

    normalised = (images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(normalised))


def test_anomalib_layout_and_prefixes_convert():
    torch.manual_seed(2)
    source = PatchDescriptionNetwork("medium", 16, (8, 8, 8)).state_dict()
    prefixed = {f"model.teacher.{key}": value for key, value in source.items()}
    converted = convert_pdn_state_dict(prefixed)
    assert sorted(converted) == sorted(source)
    for key in source:
        torch.testing.assert_close(converted[key], source[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="no convolution weights"):
        convert_pdn_state_dict({"fc.bias": torch.zeros(3)})


def test_a_teacher_of_the_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "teacher_medium.pth"
    torch.save(PatchDescriptionNetwork("medium", 16, (8, 8, 8)).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit a small PDN"):
        load_teacher_file(path, PatchDescriptionNetwork("small", 16, (8, 8, 8)))
    with pytest.raises(FileNotFoundError, match="no teacher file"):
        load_teacher_file(tmp_path / "missing.pth", PatchDescriptionNetwork("small", 16, (8, 8, 8)))


def test_teacher_file_option_uses_the_given_weights(tmp_path, washer):
    train, _ = washer
    torch.manual_seed(3)
    weights = reference_pdn_small(32, (16, 16, 16)).state_dict()
    path = tmp_path / "teacher_small.pth"
    torch.save(weights, path)
    detector = EfficientAD.from_profile("quick", teacher="file", teacher_path=str(path), steps=1)
    detector.fit(train, progress=False, device="cpu")
    assert detector.info["teacher"] == "file (published weights)"
    torch.testing.assert_close(detector.teacher.conv1.weight, weights["0.weight"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="teacher='file' needs teacher_path"):
        EfficientAD.from_profile("quick", teacher="file")


def test_distillation_targets_are_pooled_patchcore_features():
    extractor = FeatureExtractor("efficientnet_lite0", strides=(4, 8, 16, 32))
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        targets = distillation_targets(extractor, images, grid=8, channels=384)
    assert targets.shape == (2, 384, 8, 8)
    with pytest.raises(ValueError, match="fewer than the 1000"):
        distillation_targets(extractor, images, grid=8, channels=1000)


def test_distillation_lowers_the_loss_and_gives_an_unpadded_teacher():
    from adlearn.data.textures import fallback_textures

    images = fallback_textures(8, image_size=96, dtype=torch.uint8)  # photographs and drawn patterns
    teacher = distill_teacher(images, widths=(16, 16, 16), out_channels=32, image_size=64, view_size=48,
                              backbone="efficientnet_lite0", steps=60, batch_size=8, lr=3e-3, progress=False)
    losses = [record["loss"] for record in teacher.history.records]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10
    assert not teacher.network.padding and not any(p.requires_grad for p in teacher.network.parameters())
    assert teacher.info["teacher"] == "distilled" and teacher.info["teacher_backbone_pretrained"] is True


def test_distilled_teacher_is_saved_once_and_reused(tmp_path, washer, monkeypatch):
    train, _ = washer
    path = tmp_path / "teachers" / "quick.pt"
    first = EfficientAD.from_profile("quick", teacher_path=str(path), steps=1).fit(train, progress=False, device="cpu")
    assert path.is_file() and first.info["teacher"] == "distilled"

    def no_distillation(*args, **kwargs):
        raise AssertionError("the saved teacher should have been read")

    monkeypatch.setattr(efficientad_teacher, "distill_teacher", no_distillation)
    monkeypatch.setattr("adlearn.methods.efficientad.distill_teacher", no_distillation)
    second = EfficientAD.from_profile("quick", teacher_path=str(path), steps=1).fit(train, progress=False, device="cpu")
    assert second.info["teacher"] == "file (distilled by adlearn)"
    for key, value in first.teacher.state_dict().items():
        torch.testing.assert_close(second.teacher.state_dict()[key], value, rtol=0, atol=0)
    other = EfficientAD.from_profile("quick", teacher_path=str(path), steps=1, distill_steps=5)
    with pytest.raises(ValueError, match="made with other settings"):
        other.fit(train, progress=False, device="cpu")
    assert path.is_file()  # the user's file is kept


# ----------------------------------------------------------------------------- training and prediction


def test_registered_profiles_and_validation():
    assert methods.get("efficientad") is EfficientAD
    paper = EfficientAD.profile_config("paper")
    assert (paper.image_size, paper.model_size, paper.out_channels, paper.p_hard) == (256, "small", 384, 0.999)
    assert (paper.steps, paper.batch_size, paper.lr, paper.quantile_low, paper.quantile_high) == (
        70_000, 1, 1e-4, 0.9, 0.995)
    assert paper.distill_backbone == "wide_resnet101_2"
    assert EfficientAD.profile_config("book").distill_backbone == "efficientnet_lite0"
    with pytest.raises(ValueError, match="teacher must be one of"):
        EfficientAD.from_profile("quick", teacher="imagenet")
    with pytest.raises(ValueError, match="p_hard"):
        EfficientAD.from_profile("quick", p_hard=1.0)
    with pytest.raises(ValueError, match="multiple of 32"):
        EfficientAD.from_profile("quick", image_size=100)


def test_training_lowers_the_losses(trained):
    frame = trained.history.to_frame()
    assert {"hard", "penalty", "autoencoder", "student_autoencoder", "loss"} <= set(frame.columns)
    first, last = frame.iloc[:10].mean(), frame.iloc[-10:].mean()
    assert last["hard"] < 0.7 * first["hard"]
    assert last["autoencoder"] < first["autoencoder"]
    assert trained.info["teacher"].startswith("random initialisation")


def test_defective_image_scores_higher_than_good_after_short_training(trained, washer128):
    _, test = washer128
    good = [i for i in range(len(test)) if test[i]["label"] == 0]
    defective = [i for i in range(len(test)) if test[i]["label"] == 1]
    largest = max(defective, key=lambda i: float(test[i]["mask"].sum()))
    scores = trained.predict(stack(test, [largest] + good)).scores
    assert float(scores[0]) > float(scores[1:].max())
    heat = trained.predict(stack(test, [largest])).maps[0, 0]
    mask = test[largest]["mask"][0] > 0
    assert float(heat[mask].mean()) > float(heat[~mask].mean())


def test_local_only_option_and_branch_maps(washer):
    train, test = washer
    detector = EfficientAD.from_profile("quick", steps=2, teacher="random", use_autoencoder=False)
    detector.fit(train, progress=False, device="cpu")
    assert "autoencoder" not in detector.networks and "global_low" not in detector.calibration
    images = stack(test, [0, 1])
    branches = detector.branch_maps(images)
    assert set(branches) == {"local"} and branches["local"].shape == (2, 1, 64, 64)
    torch.testing.assert_close(detector.predict(images).maps, branches["local"])


def test_both_memory_layouts_compute_the_same_maps(trained, washer128, monkeypatch):
    from adlearn.methods import efficientad

    _, test = washer128
    images = stack(test, range(3))
    results = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        monkeypatch.setattr(efficientad, "CPU_MEMORY_FORMAT", layout)
        trained.to("cpu")  # puts the weights in the layout
        assert trained.memory_format == layout
        assert trained.teacher.conv2.weight.is_contiguous(memory_format=layout)
        results[layout] = trained.predict(images)
    monkeypatch.undo()
    trained.to("cpu")
    first, second = results.values()
    torch.testing.assert_close(first.maps, second.maps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first.scores, second.scores, rtol=1e-4, atol=1e-5)


def test_save_load_is_exact(trained, washer, tmp_path):
    _, test = washer
    images = stack(test, range(4))
    path = trained.save(tmp_path / "efficientad.pt")
    loaded = EfficientAD.load(path)
    assert loaded.info["teacher"] == trained.info["teacher"]
    before, after = trained.predict(images), loaded.predict(images)
    torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=0)
    torch.testing.assert_close(after.maps, before.maps, rtol=0, atol=0)
    for key in ("local_low", "local_high", "global_low", "global_high"):
        torch.testing.assert_close(loaded.calibration[key], trained.calibration[key], rtol=0, atol=0)
    torch.testing.assert_close(loaded.networks["teacher_statistics"]["std"], trained.networks["teacher_statistics"]["std"])


def test_cached_teacher_path_follows_the_teacher_settings_and_prepare_runs_once(tmp_path, washer, monkeypatch):
    train, _ = washer
    config = EfficientAD.profile_config("quick")
    path = EfficientAD.cached_teacher_path(config, tmp_path)
    assert path.parent == tmp_path and path.name.startswith("efficientad_teacher_")
    assert EfficientAD.cached_teacher_path(EfficientAD.profile_config("quick", seed=5), tmp_path) == path  # any seed
    assert EfficientAD.cached_teacher_path(EfficientAD.profile_config("quick", distill_steps=5), tmp_path) != path
    detector = EfficientAD.from_profile("quick", teacher_path=str(path), steps=1)
    detector.prepare_teacher(progress=False)  # a chapter shows the teacher before training
    assert detector.info["teacher"] == "distilled" and len(detector.teacher_history) == config.distill_steps
    monkeypatch.setattr(detector, "prepare_teacher", lambda **kwargs: pytest.fail("prepared twice"))
    detector.fit(train, progress=False, device="cpu")
    assert detector.info["teacher"] == "distilled"
    again = EfficientAD.from_profile("quick", teacher_path=str(path), steps=1)
    again.prepare_teacher(progress=False)  # read from the file, with the loss history it saved
    assert again.info["teacher"] == "file (distilled by adlearn)"
    assert again.teacher_history.records == detector.teacher_history.records
    assert EfficientAD.from_profile("quick", teacher="random").teacher_settings()["images"] in ("dtd", "stand-in")


def test_padded_pdn_maps_cover_the_frame_the_unpadded_one_leaves_blind(washer):
    """pdn_padding=True: the maps are the full H/4 grid, and a change at the image corner reaches the map's corner."""
    train, test = washer
    images = stack(test, [0])
    changed = images.clone()
    changed[..., :8, :8] = 1.0 - changed[..., :8, :8]  # an 8-px square at the top-left corner, inside the blind frame
    corners = {}
    for padding in (False, True):
        detector = EfficientAD.from_profile("quick", steps=2, teacher="random", pdn_padding=padding)
        detector.fit(train, progress=False, device="cpu")
        local, global_ = detector.raw_maps(images)
        assert local.shape[-1] == global_.shape[-1] == (16 if padding else 8)  # 64 // 4, or 8 without the frame
        assert detector.autoencoder.output_size == local.shape[-1]
        before, after = detector.predict(images).maps, detector.predict(changed).maps
        assert before.shape == after.shape == (1, 1, 64, 64)
        corners[padding] = float((after - before)[..., :8, :8].abs().max())
    assert corners[False] == 0.0  # the unpadded PDN's zero-padded frame cannot see the corner
    assert corners[True] > 0.0
