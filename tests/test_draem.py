"""Tests of adlearn.methods.draem: the two networks, scoring, training, save/load and prediction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adlearn.data import MVTecAD
from adlearn.methods.base import Prediction
from adlearn.methods.draem import (
    DRAEM,
    DiscriminativeSubNetwork,
    ReconstructiveSubNetwork,
    RepairReport,
    anomaly_map_from_logits,
    image_score_from_map,
    init_draem_weights,
    measure_repair,
    repair_report,
    random_crops,
    rotate_some,
)
from adlearn.data.textures import grey_textures
from adlearn.nn import SSPCAB
from adlearn.simulation import DraemSynthesizer

TINY = dict(image_size=64, reconstructive_width=4, discriminative_width=4, batch_size=4, texture_count=6)


# ----------------------------------------------------------------------------- networks


def test_reconstructive_network_shapes_and_bottleneck():
    net = ReconstructiveSubNetwork(3, 3, base_width=4)
    x = torch.rand(2, 3, 64, 32)
    features, block_loss = net.encoder(x)
    assert features.shape == (2, 32, 4, 2)  # 8w channels, four 2x poolings
    assert block_loss is None
    assert net(x).shape == (2, 3, 64, 32)


def test_discriminative_network_takes_six_channels_and_gives_two_classes():
    net = DiscriminativeSubNetwork(6, 2, base_width=4)
    joined = torch.rand(2, 6, 64, 64)
    features = net.encoder_segment(joined)
    assert [tuple(f.shape[1:]) for f in features] == [
        (4, 64, 64), (8, 32, 32), (16, 16, 16), (32, 8, 8), (32, 4, 4), (32, 2, 2),
    ]
    assert net(joined).shape == (2, 2, 64, 64)
    with pytest.raises(RuntimeError):
        net(torch.rand(1, 3, 64, 64))


def test_paper_widths_have_the_published_size_and_reference_layout():
    reconstructive = ReconstructiveSubNetwork()  # base width 128
    discriminative = DiscriminativeSubNetwork()  # base width 64
    count = sum(p.numel() for p in reconstructive.parameters()) + sum(p.numel() for p in discriminative.parameters())
    assert count == 69_048_579 + 28_374_146  # 97.4 M, as the reference model_unet.py
    keys = set(reconstructive.state_dict()) | {f"seg.{k}" for k in discriminative.state_dict()}
    # module names of the authors' code, so their checkpoints load with load_state_dict
    for key in ("encoder.block1.0.weight", "encoder.block5.4.running_var", "decoder.db1.3.weight",
                "decoder.fin_out.0.weight", "seg.encoder_segment.block6.3.weight", "seg.decoder_segment.up_b.1.weight",
                "seg.decoder_segment.db_b.0.weight", "seg.decoder_segment.fin_out.0.bias"):
        assert key in keys
    assert reconstructive.state_dict()["decoder.db1.3.weight"].shape == (512, 1024, 3, 3)
    assert discriminative.state_dict()["decoder_segment.db_b.0.weight"].shape == (512, 1024, 3, 3)


def test_sspcab_replaces_the_penultimate_convolution_of_the_reconstructive_encoder():
    plain = ReconstructiveSubNetwork(base_width=4)
    with_block = ReconstructiveSubNetwork(base_width=4, sspcab=True)
    block5 = with_block.encoder.block5
    assert isinstance(block5[0], SSPCAB) and block5[0].channels == 32
    assert isinstance(block5[1], torch.nn.Conv2d)  # the last convolution stays
    assert all(not isinstance(m, SSPCAB) for m in plain.modules())
    assert all(not isinstance(m, SSPCAB) for name, m in with_block.named_modules() if not name.startswith("encoder.block5"))
    x = torch.rand(2, 3, 64, 64)
    reconstruction, block_loss = with_block.forward_with_sspcab_loss(x)
    assert reconstruction.shape == x.shape
    assert block_loss.ndim == 0 and float(block_loss.detach()) > 0
    block_loss.backward()
    assert block5[0].corner_convs[0].weight.grad is not None


def test_reference_initialisation():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3)
    norm = torch.nn.BatchNorm2d(512)
    init_draem_weights(conv)
    init_draem_weights(norm)
    with torch.no_grad():
        assert float(conv.weight.std()) == pytest.approx(0.02, rel=0.05)
        assert float(norm.weight.mean()) == pytest.approx(1.0, abs=0.01)
        assert float(norm.bias.abs().max()) == 0.0


# ----------------------------------------------------------------------------- scoring


def test_anomaly_map_is_the_softmax_of_the_anomalous_class():
    logits = torch.randn(2, 2, 8, 8)
    expected = torch.exp(logits[:, 1]) / (torch.exp(logits[:, 0]) + torch.exp(logits[:, 1]))
    torch.testing.assert_close(anomaly_map_from_logits(logits), expected[:, None])


def test_image_score_is_max_of_mean_filtered_map():
    maps = torch.zeros(3, 1, 64, 64)
    maps[0, 0, 30, 30] = 1.0  # one hot pixel: diluted by the 21x21 mean
    maps[1, 0, 20:41, 20:41] = 1.0  # a 21x21 blob: the filter keeps its full value
    maps[2, 0, 0:21, 0:21] = 1.0  # the same blob in a corner: zero padding counts
    scores = image_score_from_map(maps, 21)
    assert scores.shape == (3,)
    assert float(scores[0]) == pytest.approx(1 / 441)
    assert float(scores[1]) == pytest.approx(1.0)
    assert float(scores[2]) == pytest.approx(1.0)
    # against an explicit moving average over the padded map
    padded = F.pad(maps, (10, 10, 10, 10))
    windows = padded.unfold(2, 21, 1).unfold(3, 21, 1).mean(dim=(-1, -2))
    torch.testing.assert_close(scores, windows.flatten(1).amax(1))
    with pytest.raises(ValueError, match="odd"):
        image_score_from_map(maps, 20)


def test_rotate_some_rotates_only_the_chosen_share():
    images = torch.rand(6, 3, 16, 16)
    generator = torch.Generator().manual_seed(0)
    assert rotate_some(images, 0.0, 90.0, generator) is images
    rotated = rotate_some(images, 1.0, 90.0, generator)
    assert not torch.equal(rotated, images) and rotated.shape == images.shape
    partly = rotate_some(images, 0.5, 90.0, torch.Generator().manual_seed(0))
    unchanged = [torch.equal(partly[i], images[i]) for i in range(6)]
    assert 0 < sum(unchanged) < 6  # untouched images come back bit for bit


def test_random_crops_cut_the_same_window_from_every_tensor():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    masks = images[:, :1] * 10
    crop_images, crop_masks = random_crops((images, masks), 4, torch.Generator().manual_seed(0))
    assert crop_images.shape == (2, 3, 4, 4) and crop_masks.shape == (2, 1, 4, 4)
    for sample in range(2):
        # find the window by its top-left value, then compare with plain slicing
        top, left = divmod(int(crop_images[sample, 0, 0, 0].item()) - sample * 192, 8)
        torch.testing.assert_close(crop_images[sample], images[sample, :, top:top + 4, left:left + 4])
        torch.testing.assert_close(crop_masks[sample], masks[sample, :, top:top + 4, left:left + 4])
    # same seed, same windows; a full-size window is the input itself
    again, _ = random_crops((images, masks), 4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, crop_images)
    assert random_crops((images,), 8, torch.Generator())[0] is images
    with pytest.raises(ValueError, match="larger than the training images"):
        random_crops((images,), 16, torch.Generator())


def test_train_crop_trains_on_windows_and_predicts_whole_images(grass):
    train, test = grass
    shapes = []
    detector = DRAEM.from_profile("quick", **TINY, steps=2, train_crop=32)
    original_forward = detector.discriminative_net.forward_with_sspcab_loss  # training and prediction both call it

    def spy(joined):
        shapes.append(tuple(joined.shape))
        return original_forward(joined)

    detector.discriminative_net.forward_with_sspcab_loss = spy
    detector.fit(train, progress=False)
    assert shapes[:2] == [(4, 6, 32, 32)] * 2  # training: windows
    assert all(shape[-2:] == (64, 64) for shape in shapes[2:])  # calibration: whole held-out images
    prediction = detector.predict(torch.stack([test[i]["image"] for i in range(2)]))
    assert prediction.maps.shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="train_crop must be None or a multiple of 32"):
        DRAEM(image_size=64, train_crop=48)
    with pytest.raises(ValueError, match="train_crop must be None or a multiple of 32"):
        DRAEM(image_size=64, train_crop=128)


# ----------------------------------------------------------------------------- the detector


def test_profiles_and_validation():
    assert DRAEM.INPUT_CHANNELS == 3
    for profile in ("quick", "book"):
        assert DRAEM.from_profile(profile).hparams["image_size"] % 32 == 0
    assert DRAEM.PROFILES["paper"] == {}  # the paper's values are the Config's defaults
    paper = DRAEM.from_profile("paper", reconstructive_width=4, discriminative_width=4).hparams
    paper.update(reconstructive_width=128, discriminative_width=64)
    assert paper == DRAEM.Config().__dict__
    assert (paper["image_size"], paper["reconstructive_width"], paper["discriminative_width"]) == (256, 128, 64)
    assert (paper["lr"], paper["batch_size"], paper["epochs"], paper["lr_gamma"]) == (1e-4, 8, 700, 0.2)
    assert paper["lr_milestones"] == (0.8, 0.9) and paper["score_filter_size"] == 21
    # 700 epochs of ceil(209 / 8) = 27 batches (the paper's widths are not built here: 97 M parameters)
    assert DRAEM.from_profile("paper", reconstructive_width=4, discriminative_width=4).training_steps(209) == 700 * 27
    with pytest.raises(ValueError, match="multiple of 32"):
        DRAEM(image_size=100)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        DRAEM.from_profile("quick", widths=3)
    with pytest.raises(ValueError, match="steps or epochs"):
        DRAEM(steps=None, epochs=None)


@pytest.fixture(scope="module")
def grass(builtin_root):
    train = MVTecAD(builtin_root, "grass", "train", image_size=64)
    test = MVTecAD(builtin_root, "grass", "test", image_size=64)
    return train, test


@pytest.fixture(scope="module")
def trained(grass):
    """A tiny DRÆM trained briefly on the built-in grass images.

    200 steps: at 120 the largest defect beat every good image by less than the difference between one and two
    threads' rounding (0.251 vs 0.244 on one thread, 0.288 vs 0.310 on two); at 200 it wins by 0.03-0.06 on
    seeds 0-2.
    """
    train, _ = grass
    detector = DRAEM.from_profile("quick", **TINY, steps=200, lr=2e-3)
    detector.fit(train, progress=False)
    return detector


def test_training_lowers_the_losses(trained):
    history = trained.history.to_frame()
    assert len(history) == 200
    assert set(history.columns) >= {"loss", "l2", "ssim", "focal"}
    first, last = history.head(5).mean(), history.tail(5).mean()
    for name in ("loss", "l2", "focal"):
        assert last[name] < first[name], name


def test_learning_rate_follows_the_multistep_schedule(grass):
    train, _ = grass
    seen = []
    detector = DRAEM.from_profile("quick", **TINY, steps=10, lr=1e-3)
    synthesizer = detector.build_synthesizer(verbose=False)

    def spy(images, generator):
        seen.append(images.shape)
        return synthesizer(images, generator)

    detector.synthesizer = spy
    detector.fit(train, progress=False)
    assert seen == [(4, 3, 64, 64)] * 10  # one synthetic batch per step
    # x0.2 after 80 % and after 90 % of the steps
    rates = detector.history.to_frame()["lr"].tolist()
    assert rates[:8] == pytest.approx([1e-3] * 8)
    assert rates[8] == pytest.approx(2e-4) and rates[9] == pytest.approx(4e-5)


def test_sspcab_option_adds_its_loss_to_training(grass):
    train, _ = grass
    detector = DRAEM.from_profile("quick", **TINY, steps=3, sspcab=True, sspcab_weight=0.1)
    detector.fit(train, progress=False)
    history = detector.history.to_frame()
    assert "sspcab" in history.columns
    expected = history["l2"] + history["ssim"] + history["focal"] + 0.1 * history["sspcab"]
    torch.testing.assert_close(torch.tensor(history["loss"].values), torch.tensor(expected.values), rtol=1e-5, atol=1e-6)


def test_training_is_repeatable_with_a_seed(grass):
    train, _ = grass
    first = DRAEM.from_profile("quick", **TINY, steps=3).fit(train, progress=False)
    second = DRAEM.from_profile("quick", **TINY, steps=3).fit(train, progress=False)
    images = torch.stack([train[i]["image"] for i in range(2)])
    torch.testing.assert_close(first.predict(images).maps, second.predict(images).maps, rtol=0, atol=0)


def test_predict_shapes_ranges_and_resizing(trained, grass):
    _, test = grass
    images = torch.stack([test[i]["image"] for i in range(3)])
    prediction = trained.predict(images)
    assert isinstance(prediction, Prediction)
    assert prediction.scores.shape == (3,) and prediction.maps.shape == (3, 1, 64, 64)
    assert float(prediction.maps.min()) >= 0 and float(prediction.maps.max()) <= 1
    output = trained.inspect(images)
    assert output.reconstruction.shape == images.shape
    torch.testing.assert_close(output.scores, image_score_from_map(output.maps, 21))
    larger = F.interpolate(images, size=(96, 80), mode="bilinear", align_corners=False).clamp(0, 1)
    assert trained.predict(larger).maps.shape == (3, 1, 96, 80)  # maps come back at input size
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        trained.predict(images[:, :1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        trained.predict(images * 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochz'"):
        trained.fit(grass[0], epochz=3)


def test_save_load_is_exact(trained, grass, tmp_path):
    _, test = grass
    images = torch.stack([test[i]["image"] for i in range(4)])
    path = trained.save(tmp_path / "draem.pt")
    loaded = DRAEM.load(path)
    assert loaded.hparams == trained.hparams
    assert len(loaded.history) == len(trained.history)
    before, after = trained.inspect(images), loaded.inspect(images)
    torch.testing.assert_close(after.maps, before.maps, rtol=0, atol=0)
    torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=0)
    torch.testing.assert_close(after.reconstruction, before.reconstruction, rtol=0, atol=0)


def test_defective_image_scores_higher_than_good_after_short_training(trained, grass):
    _, test = grass
    good = [test[i] for i in range(len(test)) if test[i]["label"] == 0]
    defective = [test[i] for i in range(len(test)) if test[i]["label"] == 1]
    largest = max(defective, key=lambda item: float(item["mask"].sum()))
    scores = trained.predict(torch.stack([largest["image"]] + [item["image"] for item in good])).scores
    assert float(scores[0]) > float(scores[1:].max())


def test_synthesizer_uses_the_textures_at_the_detector_size():
    detector = DRAEM.from_profile("quick", **TINY)
    synthesizer = detector.build_synthesizer(verbose=False)
    assert isinstance(synthesizer, DraemSynthesizer)
    assert len(synthesizer.textures) == 6
    assert synthesizer.beta == (0.1, 1.0)  # the paper's opacity range
    assert synthesizer.keep_sources is False


def test_build_synthesizer_options_override_the_synthesis_hyper_parameter():
    detector = DRAEM.from_profile("quick", **TINY, synthesis={"beta": (0.5, 1.0), "anomaly_probability": 0.8})
    synthesizer = detector.build_synthesizer(verbose=False, keep_sources=True, beta=(0.2, 0.3))
    assert synthesizer.beta == (0.2, 0.3) and synthesizer.anomaly_probability == 0.8 and synthesizer.keep_sources
    batch = synthesizer(torch.rand(4, 3, 64, 64), torch.Generator().manual_seed(0))
    assert batch.sources is not None and batch.sources.shape == (4, 3, 64, 64)
    with pytest.raises(TypeError):
        detector.build_synthesizer(verbose=False, no_such_option=1)


# ----------------------------------------------------------------------------- ablation, grey sources, repair


def test_ablation_without_reconstruction_trains_the_discriminative_net_on_the_image_alone(grass, tmp_path):
    train, test = grass
    detector = DRAEM.from_profile("quick", **TINY, steps=3, use_reconstruction=False).fit(train, progress=False)
    assert list(detector.networks) == ["discriminative"] and detector.reconstructive_net is None
    assert detector.discriminative_net.encoder_segment.block1[0].in_channels == 3
    history = detector.history.to_frame()
    assert {"loss", "focal"} <= set(history.columns) and "l2" not in history.columns
    torch.testing.assert_close(torch.tensor(history["loss"].values), torch.tensor(history["focal"].values))
    images = torch.stack([test[i]["image"] for i in range(2)])
    output = detector.inspect(images)
    assert output.reconstruction is None and output.maps.shape == (2, 1, 64, 64)
    loaded = DRAEM.load(detector.save(tmp_path / "ablation.pt"))
    torch.testing.assert_close(loaded.predict(images).maps, detector.predict(images).maps, rtol=0, atol=0)
    with pytest.raises(ValueError, match="without its reconstructive sub-network"):
        measure_repair(detector, images, detector.build_synthesizer(verbose=False), torch.Generator().manual_seed(0))


def test_grey_textures_are_luma_in_every_channel():
    textures = torch.tensor([[[[255]], [[0]], [[0]]], [[[0]], [[0]], [[255]]]], dtype=torch.uint8)  # red, blue
    grey = grey_textures(textures)
    assert grey.dtype == torch.uint8 and grey.shape == (2, 3, 1, 1)
    assert grey[:, :, 0, 0].tolist() == [[76, 76, 76], [29, 29, 29]]  # 0.299 * 255, 0.114 * 255
    floats = grey_textures(torch.rand(3, 3, 8, 8))
    assert torch.equal(floats[:, 0], floats[:, 1]) and torch.equal(floats[:, 1], floats[:, 2])
    detector = DRAEM.from_profile("quick", **TINY, grey_textures=True)
    synthesizer = detector.build_synthesizer(verbose=False, keep_sources=True, anomaly_probability=1.0)
    bank = synthesizer.textures.gather(torch.arange(len(synthesizer.textures)), (64, 64), torch.device("cpu"), torch.float32)
    assert torch.equal(bank[:, 0], bank[:, 1]) and torch.equal(bank[:, 1], bank[:, 2])


class _Identity(torch.nn.Module):
    def forward(self, x):
        return x


class _Constant(torch.nn.Module):
    def __init__(self, clean):
        super().__init__()
        self.clean = clean

    def forward(self, x):
        return self.clean[: len(x)]


def test_measure_repair_compares_input_and_reconstruction_inside_the_masks(trained, grass):
    train, _ = grass
    clean = torch.stack([train[i]["image"] for i in range(6)])
    synthesizer = DraemSynthesizer(torch.rand(4, 3, 64, 64), anomaly_probability=1.0)

    def report_with(reconstructive):
        trained.networks["reconstructive"], original = reconstructive, trained.networks["reconstructive"]
        try:
            return measure_repair(trained, clean, synthesizer, torch.Generator().manual_seed(3))
        finally:
            trained.networks["reconstructive"] = original

    copying = report_with(_Identity())  # a "reconstruction" that copies the input repairs nothing
    torch.testing.assert_close(copying.l1_reconstruction, copying.l1_input)
    torch.testing.assert_close(copying.ssim_reconstruction, copying.ssim_input)
    assert not copying.repairs and float(copying.l1_input.min()) > 0
    # the same draw by hand: mean |input - clean| over each mask
    synthetic = synthesizer(clean, torch.Generator().manual_seed(3))
    masks = synthetic.masks
    by_hand = ((synthetic.images - clean).abs().mean(1, keepdim=True) * masks).flatten(1).sum(1) / masks.flatten(1).sum(1)
    torch.testing.assert_close(copying.l1_input, by_hand[masks.flatten(1).sum(1) > 0])
    perfect = report_with(_Constant(clean[masks.flatten(1).sum(1) > 0]))  # gives back the clean image
    assert perfect.repairs and float(perfect.l1_reconstruction.max()) < 1e-6
    torch.testing.assert_close(perfect.ssim_reconstruction, torch.ones_like(perfect.ssim_reconstruction), atol=1e-4, rtol=0)
    summary = perfect.summary()
    assert summary["share repaired (L1)"] == 1.0 and summary["samples"] == len(perfect.l1_input)
    assert isinstance(perfect, RepairReport)
    # repair_report is the comparison measure_repair makes, on any reconstruction (here the input itself)
    keep = masks.flatten(1).sum(1) > 0
    direct = repair_report(clean[keep], synthetic.images[keep], synthetic.images[keep], masks[keep])
    torch.testing.assert_close(direct.l1_input, copying.l1_input)
    torch.testing.assert_close(direct.ssim_reconstruction, copying.ssim_reconstruction)
    # outside the masks the perfect reconstruction is the clean image (SSIM 1); the copy is the input, which equals
    # the clean image there except within SSIM's window of the mask's edge; a constant grey image is far from both
    torch.testing.assert_close(perfect.ssim_outside, torch.ones_like(perfect.ssim_outside), atol=1e-4, rtol=0)
    grey = repair_report(clean[keep], synthetic.images[keep], torch.full_like(clean[keep], 0.5), masks[keep])
    assert float(direct.ssim_outside.min()) > 0.8 and float(direct.ssim_outside.max()) < 1.0
    assert bool((grey.ssim_outside < direct.ssim_outside - 0.5).all())
    assert summary["SSIM outside the masks, reconstruction"] == pytest.approx(float(perfect.ssim_outside.mean()))


def test_sspcab_in_both_networks_adds_both_blocks_losses(grass):
    both = DRAEM.from_profile("quick", **TINY, sspcab=True, sspcab_placement="both")
    blocks = [name for name, module in both.networks.named_modules() if isinstance(module, SSPCAB)]
    assert blocks == ["reconstructive.encoder.block5.0", "discriminative.encoder_segment.block6.0"]
    only_rec = DRAEM.from_profile("quick", **TINY, sspcab=True)
    assert [n for n, m in only_rec.networks.named_modules() if isinstance(m, SSPCAB)] == ["reconstructive.encoder.block5.0"]
    logits, block_loss = both.discriminative_net.forward_with_sspcab_loss(torch.rand(2, 6, 64, 64))
    assert logits.shape == (2, 2, 64, 64) and block_loss.ndim == 0
    train, _ = grass
    both.fit(train, steps=2, progress=False)
    history = both.history.to_frame()
    expected = history["l2"] + history["ssim"] + history["focal"] + 0.1 * history["sspcab"]
    torch.testing.assert_close(torch.tensor(history["loss"].values), torch.tensor(expected.values), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="sspcab_placement"):
        DRAEM.from_profile("quick", sspcab=True, sspcab_placement="discriminative")


def test_reconstruction_warmup_trains_the_reconstructive_net_alone_first(grass):
    train, _ = grass
    detector = DRAEM.from_profile("quick", **TINY, steps=2, reconstruction_warmup_steps=2)
    before = {k: v.clone() for k, v in detector.discriminative_net.state_dict().items()}
    rec_before = {k: v.clone() for k, v in detector.reconstructive_net.state_dict().items()}
    detector.fit(train, progress=False)
    history = detector.history.to_frame()
    assert "focal" not in history.columns or history["focal"].isna().all()
    torch.testing.assert_close(torch.tensor(history["loss"].values), torch.tensor((history["l2"] + history["ssim"]).values))
    after = detector.discriminative_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("num_batches_tracked"))
    assert any(not torch.equal(rec_before[k], v) for k, v in detector.reconstructive_net.state_dict().items())
    joint = DRAEM.from_profile("quick", **TINY, steps=3, reconstruction_warmup_steps=1).fit(train, progress=False)
    focal = joint.history.to_frame()["focal"]
    assert focal.isna().tolist() == [True, False, False]
    with pytest.raises(ValueError, match="reconstruction_warmup_steps"):
        DRAEM.from_profile("quick", reconstruction_warmup_steps=-1)
    with pytest.raises(ValueError, match="needs the reconstructive"):
        DRAEM.from_profile("quick", reconstruction_warmup_steps=2, use_reconstruction=False)
