"""Tests of adlearn.methods.cutpaste: the Gaussian density, dense patch scoring, SSPCAB, training, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.covariance import LedoitWolf

from adlearn import methods
from adlearn.data import MVTecAD
from adlearn.methods.cutpaste import (
    CutPaste,
    CutPasteNet,
    dense_patch_scores,
    dense_patch_scores_loop,
    extract_patches,
    fit_gaussian_density,
    mahalanobis_distance,
    patch_scores_to_map,
)
from adlearn.methods.feature_knn import gaussian_blur
from adlearn.nn import SSPCAB

#: a short quick-profile training that separates the built-in washer's defects (about 7 s on one core)
TRAINED = dict(steps=80, batch_size=8)


@pytest.fixture(scope="module")
def washer(builtin_root):
    return MVTecAD(builtin_root, "washer", "train", image_size=64), MVTecAD(builtin_root, "washer", "test", image_size=64)


@pytest.fixture(scope="module")
def trained(washer):
    train, _ = washer
    return CutPaste.from_profile("quick", **TRAINED).fit(train, progress=False, device="cpu")


def stack(dataset, indices):
    return torch.stack([dataset[i]["image"] for i in indices])


# ----------------------------------------------------------------------------- Gaussian density estimation


@pytest.mark.parametrize("count, dim", [(60, 8), (12, 30)])  # more embeddings than dimensions, and fewer
def test_density_is_ledoit_wolf_mahalanobis(count, dim):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(count, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)
    test = rng.normal(size=(7, dim)) * 2
    mean, precision = fit_gaussian_density(torch.tensor(train, dtype=torch.float32))
    assert mean.shape == (dim,) and precision.shape == (dim, dim) and mean.dtype == torch.float32

    # the direct computation: sample mean, scikit-learn's shrunk covariance, its inverse, one distance at a time
    covariance = LedoitWolf().fit(train.astype(np.float32).astype(np.float64)).covariance_
    inverse = np.linalg.inv(covariance)
    centre = train.astype(np.float32).astype(np.float64).mean(axis=0)
    expected = np.array([np.sqrt((x - centre) @ inverse @ (x - centre)) for x in test])
    got = mahalanobis_distance(torch.tensor(test, dtype=torch.float32), mean, precision).double().numpy()
    np.testing.assert_allclose(mean.numpy(), centre, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    if count < dim:  # the plain sample covariance is singular here; the shrunk one is not
        assert np.linalg.matrix_rank(np.cov(train.T)) < dim
        assert np.all(np.isfinite(got))


def test_mahalanobis_with_identity_precision_is_euclidean_and_zero_at_the_mean():
    embeddings = torch.tensor([[3.0, 4.0], [1.0, 2.0]])
    distances = mahalanobis_distance(embeddings, torch.tensor([1.0, 2.0]), torch.eye(2))
    torch.testing.assert_close(distances, torch.tensor([np.hypot(2.0, 2.0), 0.0], dtype=torch.float32))
    scaled = mahalanobis_distance(embeddings, torch.tensor([1.0, 2.0]), torch.diag(torch.tensor([4.0, 1.0])))
    torch.testing.assert_close(scaled, torch.tensor([np.sqrt(4 * 4.0 + 4.0), 0.0], dtype=torch.float32))
    with pytest.raises(ValueError, match="N >= 2"):
        fit_gaussian_density(torch.zeros(1, 3))


# ----------------------------------------------------------------------------- dense patch scoring


def test_extract_patches_is_every_strided_window():
    images = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    view = extract_patches(images, 4, 2)
    assert view.shape == (2, 5, 5, 3, 4, 4)
    for sample, row, col in [(0, 0, 0), (1, 4, 4), (1, 2, 3)]:
        torch.testing.assert_close(view[sample, row, col],
                                   images[sample, :, 2 * row : 2 * row + 4, 2 * col : 2 * col + 4], rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiple of the stride"):
        extract_patches(images, 5, 2)


def test_batched_scoring_equals_the_loop_for_any_chunk_size():
    images = torch.rand(3, 3, 20, 20)
    weights = torch.randn(3, 6, 6)

    def score(patches):  # any function of the patch's pixels
        return (patches * weights).sum(dim=(1, 2, 3)) + patches[:, 0, 0, 0]

    loop = dense_patch_scores_loop(score, images, 6, 2)
    assert loop.shape == (3, 8, 8)
    for chunk in (1, 7, 64, 1000):  # chunks that cut across images and rows
        torch.testing.assert_close(dense_patch_scores(score, images, 6, 2, batch_size=chunk), loop)
    assert loop[2, 3, 5] == pytest.approx(float(score(images[2:3, :, 6:12, 10:16])[0]), rel=1e-6)


def test_batched_and_loop_give_the_same_maps_of_a_trained_model(trained, washer):
    _, test = washer
    images = stack(test, range(2))
    c = trained.config
    with torch.no_grad():
        batched = dense_patch_scores(trained.score_patches, images, c.patch_size, c.patch_stride, batch_size=10)
        loop = dense_patch_scores_loop(trained.score_patches, images, c.patch_size, c.patch_stride)
    assert batched.shape == (2, 5, 5) and float(batched.std()) > 0
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-5 * float(loop.abs().max()))
    maps_batched = patch_scores_to_map(batched, c.patch_size, c.patch_stride, c.map_blur_sigma)
    maps_loop = patch_scores_to_map(loop, c.patch_size, c.patch_stride, c.map_blur_sigma)
    torch.testing.assert_close(maps_batched, maps_loop, rtol=1e-5, atol=1e-5 * float(loop.abs().max()))
    # and it is what predict uses
    grid = trained.patch_score_grid(images)
    torch.testing.assert_close(grid, batched, rtol=1e-5, atol=1e-5 * float(loop.abs().max()))


def test_patch_scores_spread_to_the_mean_of_the_covering_patches():
    scores = torch.rand(2, 4, 3)  # rows x cols of 6-px patches at stride 2 on a 12 x 10 image
    maps = patch_scores_to_map(scores, 6, 2)
    assert maps.shape == (2, 1, 12, 10)
    expected = torch.zeros(2, 12, 10)
    for y in range(12):
        for x in range(10):
            covering = [scores[:, r, c] for r in range(4) for c in range(3) if 2 * r <= y < 2 * r + 6 and 2 * c <= x < 2 * c + 6]
            expected[:, y, x] = torch.stack(covering).mean(0)
    torch.testing.assert_close(maps[:, 0], expected)
    torch.testing.assert_close(patch_scores_to_map(scores, 6, 2, sigma=1.5), gaussian_blur(maps, 1.5))
    constant = patch_scores_to_map(torch.full((1, 4, 3), 2.5), 6, 2, sigma=2.0)
    torch.testing.assert_close(constant, torch.full((1, 1, 12, 10), 2.5))


# ----------------------------------------------------------------------------- the network and SSPCAB


def test_network_shapes_and_sspcab_placement():
    plain = CutPasteNet("efficientnet_lite0", head_widths=(32, 16), weights="random")
    with_block = CutPasteNet("efficientnet_lite0", head_widths=(32, 16), weights="random", sspcab=True)
    images = torch.rand(4, 3, 32, 32)
    output = plain(images)
    assert output.embeddings.shape == (4, 320) and output.logits.shape == (4, 3) and output.sspcab_loss is None
    assert plain.sspcab is None and not any(isinstance(m, SSPCAB) for m in plain.modules())
    # the block sits at the entry of the stride-32 stage, on the first block's expansion: 6 x 112 channels at stride 16
    assert isinstance(with_block.sspcab, SSPCAB) and with_block.sspcab.channels == 672
    assert with_block.sspcab_site == "expansion"
    seen = []
    with_block.sspcab.register_forward_hook(lambda module, inputs, result: seen.append(tuple(inputs[0].shape)))
    output = with_block(images)
    assert seen == [(4, 672, 2, 2)]
    assert output.sspcab_loss.ndim == 0 and float(output.sspcab_loss.detach()) > 0
    output.sspcab_loss.backward()
    assert with_block.sspcab.corner_convs[0].weight.grad is not None


def test_sspcab_sits_on_a_non_negative_tensor_it_can_reconstruct():
    # SSPCAB's output is non-negative (ReLU, then a sigmoid gate). Lite0's stage outputs are linear, so on them
    # the block's loss could never vanish and it dragged the features to zero (every image scored the same).
    net = CutPasteNet("efficientnet_lite0", head_widths=(16,), weights="imagenet", sspcab=True).eval()
    seen = []
    net.sspcab.register_forward_hook(lambda module, inputs, result: seen.append(inputs[0]))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net(images)
        stage_output = net.backbone(images)[0]  # the stride-16 stage output: where the block used to sit
    assert float(seen[0].min()) >= 0.0 and float(seen[0].max()) > 0.0
    assert float(stage_output.min()) < -1.0
    # what the block passes on stays in the range of the ReLU6 it stands in for, however large its weights grow
    # (unbounded, its output reached 1e5 and the embeddings went NaN in a book-profile training)
    passed_on = []
    net.backbone.stages[-1][0]._depthwise_conv.register_forward_hook(
        lambda module, inputs, result: passed_on.append(inputs[0]))
    with torch.no_grad():
        for conv in net.sspcab.corner_convs:
            conv.weight.mul_(100.0)
        net(images)
    assert float(passed_on[0].max()) <= 6.0 and float(passed_on[0].min()) >= 0.0
    # ResNet's stage outputs end in a ReLU: there the block stays between layer3 and layer4, as in the reference
    resnet = CutPasteNet("resnet18", head_widths=(16,), weights="random", sspcab=True)
    assert resnet.sspcab_site == "stage_input" and resnet.sspcab.channels == 256
    seen.clear()
    resnet.sspcab.register_forward_hook(lambda module, inputs, result: seen.append(inputs[0]))
    with torch.no_grad():
        resnet.eval()(images)
    assert seen[0].shape == (2, 256, 4, 4) and float(seen[0].min()) >= 0.0


def test_grad_clip_bounds_each_step(washer):
    train, _ = washer

    def largest_change(grad_clip):
        detector = CutPaste.from_profile("quick", steps=1, grad_clip=grad_clip, weight_decay=0.0)
        before = {name: p.detach().clone() for name, p in detector.networks.named_parameters()}
        detector.fit(train, progress=False)
        return max(float((p.detach() - before[name]).abs().max()) for name, p in detector.networks.named_parameters())

    # one SGD step moves a weight by at most lr x the clipped gradient norm
    assert largest_change(1e-6) <= 0.01 * 1e-6 * 1.01
    assert largest_change(None) > 1e-4
    with pytest.raises(ValueError, match="grad_clip"):
        CutPaste.from_profile("quick", grad_clip=0.0)


def test_sspcab_loss_is_added_with_its_weight_only_when_asked(washer):
    train, _ = washer
    with_block = CutPaste.from_profile("quick", steps=3, sspcab=True, sspcab_weight=0.25).fit(train, progress=False)
    history = with_block.history.to_frame()
    assert "patch_sspcab" in history.columns and bool((history["patch_sspcab"] > 0).all())
    expected = history["patch_ce"] + 0.25 * history["patch_sspcab"]
    np.testing.assert_allclose(history["loss"].values, expected.values, rtol=1e-5)
    without = CutPaste.from_profile("quick", steps=3).fit(train, progress=False)
    history = without.history.to_frame()
    assert not any("sspcab" in column for column in history.columns)
    np.testing.assert_allclose(history["loss"].values, history["patch_ce"].values, rtol=0)
    assert not any(isinstance(m, SSPCAB) for m in without.networks.modules())


def test_backbone_is_frozen_for_the_first_steps_only(washer):
    train, _ = washer
    detector = CutPaste.from_profile("quick", steps=4, freeze_fraction=1.0)
    backbone_before = [p.detach().clone() for p in detector.patch_model.backbone.parameters()]
    head_before = [p.detach().clone() for p in detector.patch_model.head.parameters()]
    detector.fit(train, progress=False)
    assert detector.history.to_frame()["frozen"].tolist() == [1.0] * 4
    assert all(torch.equal(a, b) for a, b in zip(backbone_before, detector.patch_model.backbone.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(head_before, detector.patch_model.head.parameters()))

    partly = CutPaste.from_profile("quick", steps=4, freeze_fraction=0.5)
    before = [p.detach().clone() for p in partly.patch_model.backbone.parameters()]
    partly.fit(train, progress=False)
    assert partly.history.to_frame()["frozen"].tolist() == [1.0, 1.0, 0.0, 0.0] and partly.info["frozen_steps"] == 2
    assert not all(torch.equal(a, b) for a, b in zip(before, partly.patch_model.backbone.parameters()))
    # the reference set-up: 20 of 256 steps
    assert round(CutPaste.profile_config("paper").freeze_fraction * 256) == 20


def test_frozen_norm_keeps_the_backbone_statistics(washer):
    train, _ = washer
    detector = CutPaste.from_profile("quick", steps=3, freeze_fraction=0.0)
    assert detector.config.freeze_backbone_norm
    before = {k: v.clone() for k, v in detector.patch_model.backbone.state_dict().items() if "running" in k}
    detector.fit(train, progress=False)
    after = detector.patch_model.backbone.state_dict()
    assert all(torch.equal(value, after[key]) for key, value in before.items())
    moving = CutPaste.from_profile("quick", steps=3, freeze_fraction=0.0, freeze_backbone_norm=False)
    before = {k: v.clone() for k, v in moving.patch_model.backbone.state_dict().items() if "running_mean" in k}
    moving.fit(train, progress=False)
    after = moving.patch_model.backbone.state_dict()
    assert not all(torch.equal(value, after[key]) for key, value in before.items())


# ----------------------------------------------------------------------------- the detector


def test_registered_profiles_and_validation():
    assert methods.get("cutpaste") is CutPaste and methods.CutPaste is CutPaste
    paper = CutPaste.profile_config("paper")
    assert paper == CutPaste.Config()
    assert (paper.image_size, paper.backbone, paper.batch_size, paper.steps) == (256, "resnet18", 32, 256)
    assert (paper.lr, paper.momentum, paper.weight_decay) == (0.03, 0.9, 3e-5)
    assert paper.head_widths == (512,) * 8 + (128,) and paper.image_model and paper.sspcab_weight == 0.1
    assert (paper.patch_size, paper.patch_stride, paper.map_blur_sigma) == (64, 4, 4.0)
    book = CutPaste.profile_config("book")
    assert (book.image_size, book.backbone, book.patch_size, book.image_model) == (128, "efficientnet_lite0", 48, False)
    with pytest.raises(ValueError, match="must be a multiple of patch_stride"):
        CutPaste(image_size=64, patch_size=32, patch_stride=5)
    with pytest.raises(ValueError, match="backbone must be one of"):
        CutPaste(backbone="vgg16")
    with pytest.raises(ValueError, match="synthesis takes the keys"):
        CutPaste(synthesis={"scars": {}})
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        CutPaste.from_profile("quick", patchsize=3)


def test_scar_sizes_scale_with_the_image_and_can_be_overridden():
    options = CutPaste.from_profile("book").synthesis_options()
    assert options["scar"] == {"width": (1.0, 8.0), "height": (5.0, 12.5)}  # 2-16 x 10-25 px at 256 -> 128
    options = CutPaste.from_profile("quick", synthesis={"scar": {"width": (3.0, 4.0)}}).synthesis_options()
    assert options["scar"]["width"] == (3.0, 4.0) and options["scar"]["height"] == (2.5, 6.25)


def test_training_lowers_the_loss_and_raises_the_3way_accuracy(trained):
    history = trained.history.to_frame()
    assert len(history) == TRAINED["steps"]
    first, last = history.head(15).mean(), history.tail(15).mean()
    assert last["patch_ce"] < first["patch_ce"] - 0.1
    assert last["patch_accuracy"] > first["patch_accuracy"] + 0.1
    assert history["lr"].iloc[0] == pytest.approx(trained.config.lr) and history["lr"].iloc[-1] < 0.01 * trained.config.lr


def test_predict_shapes_real_maps_and_calibration(trained, washer):
    _, test = washer
    images = stack(test, range(3))
    prediction = trained.predict(images)
    assert prediction.scores.shape == (3,) and prediction.maps.shape == (3, 1, 64, 64)
    assert float(prediction.maps.std(dim=(1, 2, 3)).min()) > 0  # a real map, not a constant
    # the image score is the largest patch score (one patch model)
    torch.testing.assert_close(prediction.scores, trained.patch_score_grid(images).flatten(1).amax(1))
    larger = F.interpolate(images, size=(96, 80), mode="bilinear", align_corners=False).clamp(0, 1)
    assert trained.predict(larger).maps.shape == (3, 1, 96, 80)
    mean, precision = trained.calibration["patch_density_mean"], trained.calibration["patch_density_precision"]
    assert mean.shape == (320,) and precision.shape == (320, 320)
    torch.testing.assert_close(precision, precision.T, rtol=1e-4, atol=1e-3)
    assert trained.info["density_patches"] == trained.info["train_images"] * 25  # every grid patch in quick


def test_density_is_fitted_on_the_training_embeddings(trained, washer):
    train, _ = washer
    from adlearn.methods.base import held_out_split

    train_index, _ = held_out_split(len(train), trained.config.held_out_fraction, trained.config.seed)
    images = stack(train, train_index)
    c = trained.config
    with torch.no_grad():
        patches = extract_patches(images, c.patch_size, c.patch_stride).reshape(-1, 3, c.patch_size, c.patch_size)
        embeddings = F.normalize(trained.patch_model.embed(patches)[0], dim=1)
    mean, precision = fit_gaussian_density(embeddings)
    torch.testing.assert_close(trained.calibration["patch_density_mean"], mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(trained.calibration["patch_density_precision"], precision, rtol=1e-3, atol=1e-2)


def test_save_load_is_exact(trained, washer, tmp_path):
    _, test = washer
    images = stack(test, range(4))
    loaded = CutPaste.load(trained.save(tmp_path / "cutpaste.pt"))
    assert loaded.hparams == trained.hparams and loaded.info == trained.info
    before, after = trained.predict(images), loaded.predict(images)
    torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=0)
    torch.testing.assert_close(after.maps, before.maps, rtol=0, atol=0)
    for key in ("patch_density_mean", "patch_density_precision", "map_quantiles"):
        torch.testing.assert_close(loaded.calibration[key], trained.calibration[key], rtol=0, atol=0)


def test_defective_image_scores_higher_than_good_after_short_training(trained, washer):
    _, test = washer
    good = [i for i in range(len(test)) if test[i]["label"] == 0]
    defective = [i for i in range(len(test)) if test[i]["label"] == 1]
    largest = max(defective, key=lambda i: float(test[i]["mask"].sum()))
    scores = trained.predict(stack(test, [largest] + good)).scores
    assert float(scores[0]) > float(scores[1:].max())
    # and the map is hottest on the defect
    prediction = trained.predict(stack(test, [largest]))
    mask = test[largest]["mask"][0] > 0
    heat = prediction.maps[0, 0]
    assert float(heat[mask].mean()) > float(heat[~mask].mean())


def test_image_model_option_scores_with_its_own_gaussian(washer):
    train, test = washer
    detector = CutPaste.from_profile("quick", steps=2, image_model=True).fit(train, progress=False)
    assert set(detector.networks) == {"patch_model", "image_model"}
    history = detector.history.to_frame()
    assert {"patch_ce", "image_ce"} <= set(history.columns)
    np.testing.assert_allclose(history["loss"].values, (history["patch_ce"] + history["image_ce"]).values, rtol=1e-5)
    images = stack(test, range(3))
    prediction = detector.predict(images)
    with torch.no_grad():
        embeddings = F.normalize(detector.image_model.embed(images)[0], dim=1)
    expected = mahalanobis_distance(embeddings, detector.calibration["image_density_mean"],
                                    detector.calibration["image_density_precision"])
    torch.testing.assert_close(prediction.scores, expected, rtol=1e-5, atol=1e-5)
    assert prediction.maps.shape == (3, 1, 64, 64)


def test_an_image_model_beside_the_patch_model_leaves_the_patch_model_unchanged(washer):
    # its own optimiser (clipping bounds each model's step, not their sum) and its own synthesis stream:
    # the patch model's weights, Gaussian and scores are those of a patch-only run, to the bit
    train, test = washer
    settings = dict(steps=3, batch_size=4, grad_clip=0.05)  # a small clip, so clipping acts on every step
    alone = CutPaste.from_profile("quick", **settings).fit(train, progress=False)
    beside = CutPaste.from_profile("quick", image_model=True, image_batch_size=2, **settings).fit(train, progress=False)
    for (name, value), (other_name, other) in zip(alone.patch_model.state_dict().items(),
                                                  beside.patch_model.state_dict().items()):
        assert name == other_name and torch.equal(value, other), name
    images = stack(test, range(4))
    with torch.no_grad():
        torch.testing.assert_close(beside.image_score_variants(images)["patch_max"], alone.predict(images).scores,
                                   rtol=0, atol=0)
    plan = beside.training_plan(stack(train, range(4)), 1)
    assert set(plan.optimizers) == {"sgd", "image_sgd"} and set(plan.random_state) == {"batches", "synthesis", "image_synthesis"}


def test_fused_image_score_is_the_larger_standardised_score(washer, tmp_path):
    from adlearn.methods.base import held_out_split

    train, test = washer
    detector = CutPaste.from_profile("quick", steps=2, image_model=True, image_score="fused").fit(train, progress=False)
    assert detector.image_score_name == "fused"
    # the standardisation: mean and std of each raw score on the held-out normal training images, nothing else
    _, held_index = held_out_split(len(train), detector.config.held_out_fraction, detector.config.seed)
    held = stack(train, held_index)
    with torch.no_grad():
        raw = detector.raw_image_scores(held, detector.patch_score_grid(held))
    expected_stats = torch.tensor([[raw["patch_max"].mean(), raw["patch_max"].std()],
                                   [raw["image_model"].mean(), raw["image_model"].std()]])
    torch.testing.assert_close(detector.calibration["image_score_stats"], expected_stats, rtol=1e-4, atol=1e-5)
    images = stack(test, range(4))
    with torch.no_grad():
        variants = detector.image_score_variants(images)
    assert set(variants) == {"patch_max", "image_model", "fused"}
    stats = detector.calibration["image_score_stats"]
    direct = torch.maximum((variants["patch_max"] - stats[0, 0]) / stats[0, 1],
                           (variants["image_model"] - stats[1, 0]) / stats[1, 1])
    torch.testing.assert_close(variants["fused"], direct)
    torch.testing.assert_close(detector.predict(images).scores, direct, rtol=1e-5, atol=1e-5)
    # saved and loaded, the same scores; a patch-only model offers only the patch maximum
    detector.save(tmp_path / "fused.pt")
    torch.testing.assert_close(CutPaste.load(tmp_path / "fused.pt").predict(images).scores, direct, rtol=1e-5, atol=1e-5)
    assert CutPaste.from_profile("quick").image_score_name == "patch_max"
    assert CutPaste.from_profile("quick", image_model=True).image_score_name == "image_model"
    with pytest.raises(ValueError, match="image_score='fused' needs the image model"):
        CutPaste.from_profile("quick", image_score="fused")
    with pytest.raises(ValueError, match="image_score must be None or one of patch_max, image_model, fused"):
        CutPaste.from_profile("quick", image_model=True, image_score="mean")


def test_image_batch_size_feeds_the_image_model_part_of_each_batch(washer):
    train, _ = washer
    detector = CutPaste.from_profile("quick", steps=2, batch_size=4, image_model=True, image_batch_size=2)
    seen = {"patch_model": [], "image_model": []}
    for name in seen:
        detector.networks[name].register_forward_pre_hook(lambda module, args, name=name: seen[name].append(
            tuple(args[0].shape)))
    detector.fit(train, progress=False)
    # three versions of each image: 3 x 4 patches and 3 x 2 whole images per step (then the calibration's passes)
    assert seen["patch_model"][:2] == [(12, 3, 32, 32)] * 2
    assert seen["image_model"][:2] == [(6, 3, 64, 64)] * 2
    assert CutPaste.from_profile("quick", batch_size=4).config.image_batch_size is None
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match="image_batch_size must be None or an int from 1 to batch_size=4"):
            CutPaste.from_profile("quick", batch_size=4, image_batch_size=bad)


def test_diverged_embeddings_are_a_clear_error():
    embeddings = torch.randn(10, 4)
    embeddings[3, 1] = float("nan")
    with pytest.raises(ValueError, match="training diverged"):
        fit_gaussian_density(embeddings)
