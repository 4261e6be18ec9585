"""Tests of adlearn.methods.memseg: every stage's shapes, the memory module (batched = reference loop),
the attention maps and loss against hand computations, training, save/load and a separation test."""

from __future__ import annotations

import math

import pytest
import torch

from adlearn.data import MVTecAD
from adlearn.methods import MemSeg, get
from adlearn.methods.memseg import (
    MemoryModule, MemSegDecoder, MemSegEncoder, MemSegModel, MultiScaleFeatureFusion, image_score_top_k,
    memseg_loss, select_memory_per_sample, spatial_attention_maps, warmup_cosine_factor,
)
from adlearn.nn import CoordinateAttention
from adlearn.simulation import MemSegSynthesizer, foreground_masks

LITE0_CHANNELS = dict(skip=16, levels=(24, 40, 112), deep=320)


@pytest.fixture(scope="module")
def lite_model():
    torch.manual_seed(0)
    return MemSegModel("efficientnet_lite0", "imagenet", decoder_width=8).eval()


# ----------------------------------------------------------------------------- building blocks


def test_coordinate_attention_gates_rows_and_columns():
    torch.manual_seed(0)
    attention = CoordinateAttention(64).eval()
    assert attention.hidden == 8  # max(8, 64 // 32)
    x = torch.randn(2, 64, 12, 7)
    a_h, a_w = attention.gates(x)
    assert a_h.shape == (2, 64, 12, 1) and a_w.shape == (2, 64, 1, 7)
    assert float(a_h.detach().min()) > 0 and float(a_h.detach().max()) < 1
    torch.testing.assert_close(attention(x), x * a_h * a_w)
    # zero gate convolutions: every gate is sigmoid(0) = 1/2, so the block scales by 1/4
    for conv in (attention.conv_h, attention.conv_w):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    torch.testing.assert_close(attention(x), x / 4)


def test_encoder_stages_shapes_and_freezing():
    encoder = MemSegEncoder("efficientnet_lite0", "imagenet")
    assert encoder.extractor.pretrained
    features = encoder(torch.rand(2, 3, 64, 64))
    assert features.skip.shape == (2, 16, 32, 32)
    assert [tuple(f.shape) for f in features.levels] == [(2, 24, 16, 16), (2, 40, 8, 8), (2, 112, 4, 4)]
    assert features.deep.shape == (2, 320, 2, 2)
    assert (encoder.skip_channels, encoder.level_channels, encoder.deep_channels) == tuple(LITE0_CHANNELS.values())
    # frozen up to stride 16, the stride-32 stage trains
    frozen = encoder.frozen_modules()
    assert all(not p.requires_grad for module in frozen for p in module.parameters())
    assert all(p.requires_grad for p in encoder.extractor.stages[-1].parameters())
    encoder.train()
    assert all(not m.training for module in frozen for m in module.modules())
    assert encoder.extractor.stages[-1].training
    statistics = {k: v.clone() for k, v in encoder.state_dict().items() if "running" in k}
    encoder(torch.rand(2, 3, 64, 64))  # a training-mode forward moves only the trained stage's statistics
    moved = {k for k, v in encoder.state_dict().items() if "running" in k and not torch.equal(v, statistics[k])}
    assert moved and all(k.startswith("extractor.stages.4.") for k in moved)


def test_resnet18_encoder_has_the_papers_shapes():
    encoder = MemSegEncoder("resnet18", "random")  # random on purpose: no download, no warning
    features = encoder(torch.rand(1, 3, 64, 64))
    assert features.skip.shape == (1, 64, 32, 32)  # conv1 + bn1 + relu, before the max-pool
    assert [tuple(f.shape) for f in features.levels] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4)]
    assert features.deep.shape == (1, 512, 2, 2)
    assert all(not p.requires_grad for p in encoder.extractor.stem.parameters())


def test_fusion_and_decoder_shapes_and_attention_weighting():
    torch.manual_seed(0)
    channels = (4, 6, 8)
    fusion = MultiScaleFeatureFusion(channels).eval()
    sizes = (16, 8, 4)
    concatenated = [torch.randn(2, 2 * c, s, s) for c, s in zip(channels, sizes)]
    differences = [ci[:, c:] ** 2 for ci, c in zip(concatenated, channels)]
    fused, attention = fusion(concatenated, differences)
    assert [tuple(f.shape) for f in fused] == [(2, c, s, s) for c, s in zip(channels, sizes)]
    assert [tuple(m.shape) for m in attention] == [(2, 1, s, s) for s in sizes]
    # no difference to the memory anywhere: the attention is 0, so are the fused features
    zero = [torch.zeros_like(d) for d in differences]
    fused_zero, _ = fusion(concatenated, zero)
    assert all(float(f.detach().abs().max()) == 0 for f in fused_zero)
    decoder = MemSegDecoder(deep_channels=10, level_channels=channels, skip_channels=3, width=5).eval()
    logits = decoder(torch.randn(2, 10, 2, 2), fused, torch.randn(2, 3, 32, 32), (64, 64))
    assert logits.shape == (2, 2, 64, 64)


def test_spatial_attention_maps_by_hand():
    d1, d2, d3 = torch.full((1, 3, 8, 8), 0.5), torch.full((1, 2, 4, 4), 3.0), torch.zeros(1, 4, 2, 2)
    d3[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 6.0])  # channel mean 3 at one position, 0 elsewhere
    d3[0, :, 1, 1] = 2.0
    m1, m2, m3 = spatial_attention_maps([d1, d2, d3])
    torch.testing.assert_close(m3, torch.tensor([[[[3.0, 0.0], [0.0, 2.0]]]]))
    # M2 = mean(DI_2) * up(M3) = 3 * up(M3), M1 = 0.5 * up(M2)
    up = torch.nn.functional.interpolate(m3, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(m2, 3.0 * up)
    torch.testing.assert_close(m1, 0.5 * torch.nn.functional.interpolate(m2, size=(8, 8), mode="bilinear",
                                                                       align_corners=False))
    assert float(m2[0, 0, 0, 0]) == pytest.approx(9.0)  # the corner keeps M3's value: 3 * 3


# ----------------------------------------------------------------------------- the memory module


def random_levels(batch, generator):
    shapes = [(8, 16, 16), (12, 8, 8), (16, 4, 4)]
    return [torch.randn(batch, *shape, generator=generator) for shape in shapes]


def test_batched_selection_equals_the_per_sample_reference_loop():
    generator = torch.Generator().manual_seed(0)
    memory_features = random_levels(7, generator)
    features = random_levels(5, generator)
    memory = MemoryModule()
    memory.store(memory_features)
    assert len(memory) == 7 and memory.levels == 3
    batched = memory.select(features)
    loop = select_memory_per_sample(features, memory_features)
    assert torch.equal(batched.indices, loop.indices)
    torch.testing.assert_close(batched.distances, loop.distances, rtol=1e-5, atol=1e-6)
    for b, l in zip(batched.differences + batched.concatenated, loop.differences + loop.concatenated):
        assert torch.equal(b, l)
    # the distance is sum over levels of the mean squared difference, checked element by element
    expected = torch.zeros(5, 7)
    for x, m in zip(features, memory_features):
        for i in range(5):
            for n in range(7):
                expected[i, n] += float(((x[i] - m[n]) ** 2).mean())
    torch.testing.assert_close(batched.distances, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(batched.indices, expected.argmin(1))
    # the concatenation is (input features, squared difference to the chosen sample)
    chosen = memory_features[1][batched.indices]
    assert torch.equal(batched.concatenated[1][:, :12], features[1])
    assert torch.equal(batched.concatenated[1][:, 12:], (features[1] - chosen) ** 2)
    # storing another memory replaces what the batched product reads (no stale transposed copy)
    other_memory = random_levels(3, generator)
    memory.store(other_memory)
    again = memory.select(features)
    assert len(memory) == 3 and again.distances.shape == (5, 3)
    assert torch.equal(again.indices, select_memory_per_sample(features, other_memory).indices)


def test_memory_picks_the_identical_memory_image(lite_model):
    generator = torch.Generator().manual_seed(1)
    memory_images = torch.rand(6, 3, 64, 64, generator=generator)
    model = lite_model
    model.memory.store(model.memory_features(memory_images), images=memory_images)
    queries = torch.cat((memory_images[[4, 1]], torch.rand(1, 3, 64, 64, generator=generator)))
    match = model.memory.select(model.memory_features(queries))
    assert match.indices[:2].tolist() == [4, 1]
    # distance 0 up to float32 rounding of |x|^2 - 2 x.m + |m|^2 (about 1e-6 of |x|^2 / D, here ~100)
    for row, index in ((0, 4), (1, 1)):
        others = match.distances[row][torch.arange(6) != index]
        assert 0.0 <= float(match.distances[row, index]) < 1e-5 * float(others.min())
        assert float(others.min()) > 1.0  # every other memory image is far away
    assert all(float(d[:2].abs().max()) == 0.0 for d in match.differences)  # exactly no difference
    assert float(match.differences[0][2].mean()) > 0
    loop = select_memory_per_sample(model.memory_features(queries), model.memory.features())
    assert torch.equal(loop.indices, match.indices)
    # the stored images come back to within uint8 rounding
    assert float((model.memory.images() - memory_images).abs().max()) <= 0.5 / 255 + 1e-6


def test_memory_can_leave_one_sample_out_of_each_match():
    generator = torch.Generator().manual_seed(2)
    memory_features = random_levels(5, generator)
    memory = MemoryModule()
    memory.store(memory_features)
    queries = [level[[3, 1, 0]] for level in memory_features]  # three memory samples themselves
    free = memory.select(queries)
    assert free.indices.tolist() == [3, 1, 0]
    left_out = memory.select(queries, exclude=torch.tensor([3, -1, 0]))
    # the excluded rows pick their nearest *other* sample; the row without exclusion is unchanged
    for row, own in ((0, 3), (2, 0)):
        others = free.distances[row].clone()
        others[own] = float("inf")
        assert int(left_out.indices[row]) == int(others.argmin()) != own
    assert int(left_out.indices[1]) == 1
    assert torch.equal(left_out.distances, free.distances)  # the distances reported are all of them
    chosen = memory_features[0][left_out.indices]
    torch.testing.assert_close(left_out.differences[0], (queries[0] - chosen) ** 2)
    with pytest.raises(ValueError, match="exclude must have shape"):
        memory.select(queries, exclude=torch.tensor([0, 1]))
    single = MemoryModule()
    single.store([level[:1] for level in memory_features])
    with pytest.raises(ValueError, match="at least 2 samples"):
        single.select([level[:1] for level in memory_features], exclude=torch.tensor([0]))


@pytest.mark.parametrize("category, foreground", [("grass", False), ("washer", True)])
def test_training_never_matches_an_image_with_itself_when_asked(builtin_root, category, foreground, monkeypatch):
    train = MVTecAD(builtin_root, category, "train", image_size=64)
    smallest = {}
    for excludes in (False, True):
        # a memory of every training image: each training image is in it
        detector = MemSeg.from_profile("quick", steps=6, memory_size=1000, match_excludes_self=excludes,
                                       foreground=foreground)
        distances = []
        original = MemoryModule.select

        def spy(self, features, exclude=None):
            match = original(self, features, exclude)
            if torch.is_grad_enabled():  # training steps only, not the memory's own set-up
                distances.append(match.distances.gather(1, match.indices[:, None]).squeeze(1))
                if excludes:
                    assert exclude is not None and bool((exclude >= 0).all())
                    assert not bool((match.indices == exclude).any())
            return match

        monkeypatch.setattr(MemoryModule, "select", spy)
        detector.fit(train, progress=False, device="cpu")
        monkeypatch.setattr(MemoryModule, "select", original)
        assert len(detector.memory) == detector.info["memory_images"] and len(distances) == 6
        smallest[excludes] = float(torch.cat(distances).min())
    # without leaving itself out, a normal training image matches itself at distance ~0; with it, never
    assert smallest[False] < 1e-3 * smallest[True]


def test_memory_refuses_mismatched_features():
    memory = MemoryModule()
    with pytest.raises(RuntimeError, match="memory is empty"):
        memory.select(random_levels(1, torch.Generator()))
    memory.store(random_levels(3, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="another image size"):
        memory.select([torch.randn(1, 8, 8, 8), torch.randn(1, 12, 4, 4), torch.randn(1, 16, 2, 2)])


def test_model_forward_shapes(lite_model):
    model = lite_model
    model.memory.store(model.memory_features(torch.rand(3, 3, 64, 64)))
    output = model(torch.rand(2, 3, 64, 64))
    assert output.logits.shape == (2, 2, 64, 64) and output.maps.shape == (2, 1, 64, 64)
    assert output.memory_indices.shape == (2,) and output.memory_distances.shape == (2, 3)
    assert [tuple(d.shape) for d in output.differences] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    assert [tuple(m.shape) for m in output.attention] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    torch.testing.assert_close(output.maps.squeeze(1), torch.softmax(output.logits, 1)[:, 1])


# ----------------------------------------------------------------------------- loss, score, schedule


def test_loss_against_a_hand_computation():
    # two pixels: logits (0, ln 3) -> p_anomalous = 3/4 on an anomalous pixel; (0, 0) -> 1/2 on a normal one
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]])
    masks = torch.tensor([[[[1.0, 0.0]]]])
    losses = memseg_loss(logits, masks)
    l1 = (abs(0.75 - 1) + abs(0.5 - 0)) / 2
    s = 1e-5  # the focal loss's label smoothing (DRÆM's and MemSeg's public code)
    p_true = [s * 0.25 + (1 - s) * 0.75 + s, (1 - s) * 0.5 + s * 0.5 + s]
    focal = sum(-((1 - p) ** 4) * math.log(p) for p in p_true) / 2
    assert float(losses["l1"]) == pytest.approx(l1, rel=1e-6)
    assert float(losses["focal"]) == pytest.approx(focal, rel=1e-5)
    assert float(losses["loss"]) == pytest.approx(0.6 * l1 + 0.4 * focal, rel=1e-5)
    other = memseg_loss(logits, masks, l1_weight=1.0, focal_weight=0.0)
    assert float(other["loss"]) == pytest.approx(l1, rel=1e-6)


def test_image_score_is_the_mean_of_the_top_k():
    maps = torch.arange(32, dtype=torch.float32).view(2, 1, 4, 4)
    torch.testing.assert_close(image_score_top_k(maps, 3), torch.tensor([14.0, 30.0]))
    torch.testing.assert_close(image_score_top_k(maps, 100), maps.flatten(1).mean(1))  # k > pixels: all of them
    with pytest.raises(ValueError, match=">= 1"):
        image_score_top_k(maps, 0)


def test_warmup_cosine_schedule():
    assert warmup_cosine_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine_factor(5, 100, 10, 0.1) == pytest.approx(0.55)
    assert warmup_cosine_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_factor(55, 100, 10, 0.1) == pytest.approx(0.55)  # half-way down the cosine
    assert warmup_cosine_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine_factor(0, 100, 0, 0.1) == pytest.approx(1.0)  # no warm-up: start at the peak


# ----------------------------------------------------------------------------- the detector


def test_profiles_and_validation():
    assert get("memseg") is MemSeg
    paper = MemSeg.profile_config("paper")
    assert paper == MemSeg.Config()
    assert (paper.image_size, paper.backbone, paper.memory_size, paper.batch_size) == (256, "resnet18", 30, 8)
    assert (paper.l1_weight, paper.focal_weight, paper.focal_gamma) == (0.6, 0.4, 4.0)
    assert (paper.lr, paper.steps, paper.score_top_k) == (0.04, 2700, 100)
    assert not paper.match_excludes_self  # the paper's memory: 30 images, sampled from the training set
    for profile in ("quick", "book"):
        config = MemSeg.profile_config(profile)
        assert config.image_size % 32 == 0 and config.backbone == "efficientnet_lite0"
        assert config.match_excludes_self
    assert MemSeg.profile_config("book").memory_size >= 1000  # every training image of the book's data sets
    with pytest.raises(ValueError, match="multiple of 32"):
        MemSeg(image_size=100)
    with pytest.raises(ValueError, match="min_lr <= lr"):
        MemSeg.profile_config("quick", lr=1e-5, min_lr=1e-4)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        MemSeg.profile_config("quick", batch_size=1)
    with pytest.raises(ValueError, match="backbone must be one of"):
        MemSeg.profile_config("quick", backbone="vgg16")


@pytest.fixture(scope="module")
def grass(builtin_root):
    return MVTecAD(builtin_root, "grass", "train", image_size=64), MVTecAD(builtin_root, "grass", "test", image_size=64)


@pytest.fixture(scope="module")
def trained(grass):
    """MemSeg's quick profile trained briefly on the built-in grass images (about 10 s)."""
    detector = MemSeg.from_profile("quick", steps=100)
    detector.fit(grass[0], progress=False, device="cpu")
    return detector


def test_training_lowers_the_loss_and_follows_the_schedule(trained):
    history = trained.history.to_frame()
    assert len(history) == 100 and set(history.columns) >= {"loss", "l1", "focal", "lr"}
    first, last = history.head(10).mean(), history.tail(10).mean()
    assert last["loss"] < 0.5 * first["loss"] and last["l1"] < first["l1"]
    c = trained.config
    expected = [c.lr * warmup_cosine_factor(i, 100, 10, c.min_lr / c.lr) for i in range(100)]
    assert history["lr"].tolist() == pytest.approx(expected)


def test_memory_is_filled_from_the_training_images_and_stays_consistent(trained, grass):
    train, _ = grass
    # 10 training images, 4 held out: the quick profile keeps 4 of the 6 left in its memory
    assert trained.info["memory_images"] == 4 == len(trained.memory)
    memory_images = trained.memory_images()
    assert memory_images.shape == (4, 3, 64, 64)
    train_images = torch.stack([train[i]["image"] for i in range(len(train))])
    nearest = torch.cdist(memory_images.flatten(1), train_images.flatten(1)).min(1).values
    assert float(nearest.max()) < 0.01  # each memory image is a training image (up to uint8 rounding)
    # the encoder is frozen where the memory is read, so after training a memory image still finds itself
    exact = torch.stack([train[i]["image"] for i in torch.cdist(memory_images.flatten(1),
                                                                  train_images.flatten(1)).argmin(1).tolist()])
    output = trained.inspect(exact)
    assert output.memory_indices.tolist() == [0, 1, 2, 3]
    own = output.memory_distances.diagonal()
    others = output.memory_distances[~torch.eye(4, dtype=torch.bool)]
    assert float(own.max()) < 1e-5 * float(others.min())  # 0 up to float32 rounding


def test_predict_and_inspect_agree(trained, grass):
    _, test = grass
    images = torch.stack([test[i]["image"] for i in range(3)])
    prediction = trained.predict(images)
    output = trained.inspect(images)
    assert output.maps.shape == (3, 1, 64, 64) and output.logits.shape == (3, 2, 64, 64)
    torch.testing.assert_close(output.scores, prediction.scores)
    torch.testing.assert_close(output.maps, prediction.maps)
    torch.testing.assert_close(output.scores, image_score_top_k(output.maps, trained.config.score_top_k))
    assert float(output.maps.min()) >= 0 and float(output.maps.max()) <= 1
    assert output.memory_distances.shape == (3, 4) and int(output.memory_indices.max()) < 4


def test_image_scores_map_memory_and_fused(trained, grass):
    _, test = grass
    images = torch.stack([test[i]["image"] for i in range(6)])
    output = trained.inspect(images)
    variants = trained.image_score_variants(images)
    assert set(variants) == {"map", "memory", "fused"}
    torch.testing.assert_close(variants["map"], output.scores)  # the profile's score is the paper's
    torch.testing.assert_close(variants["memory"], output.memory_distances.min(dim=1).values)
    stats = trained.calibration["image_score_stats"]
    assert stats.shape == (2, 2) and bool((stats[:, 1] > 0).all())
    by_hand = torch.maximum((variants["map"] - stats[0, 0]) / stats[0, 1], (variants["memory"] - stats[1, 0]) / stats[1, 1])
    torch.testing.assert_close(variants["fused"], by_hand)
    # the statistics are the held-out normal images': standardised, they have mean 0 and std 1 there
    held_out_map = trained.calibration["held_out_scores"]  # sorted "map" scores of the held-out images
    torch.testing.assert_close(held_out_map.mean(), stats[0, 0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="image_score must be one of"):
        MemSeg.profile_config("quick", image_score="max")


def test_fused_image_score_is_what_predict_returns(grass):
    detector = MemSeg.from_profile("quick", steps=3, image_score="fused").fit(grass[0], progress=False, device="cpu")
    images = torch.stack([grass[1][i]["image"] for i in range(4)])
    torch.testing.assert_close(detector.predict(images).scores, detector.image_score_variants(images)["fused"])


def test_save_load_is_exact(trained, grass, tmp_path):
    _, test = grass
    images = torch.stack([test[i]["image"] for i in range(4)])
    loaded = MemSeg.load(trained.save(tmp_path / "memseg.pt"))
    assert loaded.hparams == trained.hparams and loaded.info == trained.info
    assert sorted(loaded.memory.bank.keys()) == sorted(trained.memory.bank.keys())
    for name in trained.memory.bank.keys():
        assert torch.equal(loaded.memory.bank[name], trained.memory.bank[name]), name
    before, after = trained.inspect(images), loaded.inspect(images)
    assert torch.equal(after.maps, before.maps) and torch.equal(after.scores, before.scores)
    assert torch.equal(after.memory_indices, before.memory_indices)


def test_defective_image_scores_higher_than_good_after_short_training(trained, grass):
    _, test = grass
    good = [test[i] for i in range(len(test)) if test[i]["label"] == 0]
    defective = [test[i] for i in range(len(test)) if test[i]["label"] == 1]
    largest = max(defective, key=lambda item: float(item["mask"].sum()))
    output = trained.inspect(torch.stack([largest["image"]] + [item["image"] for item in good]))
    assert float(output.scores[0]) > float(output.scores[1:].max())
    # and the map is higher inside the defect than outside it
    inside = largest["mask"][0] > 0.5
    assert float(output.maps[0, 0][inside].mean()) > float(output.maps[0, 0][~inside].mean())


def test_foreground_option_passes_object_masks_to_the_synthesizer(builtin_root):
    train = MVTecAD(builtin_root, "washer", "train", image_size=64)
    detector = MemSeg.from_profile("quick", steps=2, foreground=True)
    synthesizer = detector.build_synthesizer(verbose=False)
    assert isinstance(synthesizer, MemSegSynthesizer) and synthesizer.use_foreground
    seen = []

    def spy(images, generator, foreground=None):
        seen.append((images.clone(), foreground))
        return synthesizer(images, generator, foreground=foreground)

    spy.use_foreground, spy.foreground_polarity, spy.morphology_kernel = True, "auto", None
    detector.synthesizer = spy
    detector.fit(train, progress=False, device="cpu")
    assert len(seen) == 2
    for images, foreground in seen:
        assert images.shape == (4, 3, 64, 64) and foreground.shape == (4, 1, 64, 64)
        torch.testing.assert_close(foreground, foreground_masks(images))  # each image with its own mask


def test_grey_textures_option_makes_the_texture_sources_grey():
    detector = MemSeg.from_profile("quick", grey_textures=True, texture_count=4)
    synthesizer = detector.build_synthesizer(verbose=False)
    bank = synthesizer.textures.gather(torch.arange(len(synthesizer.textures)), (32, 32), torch.device("cpu"), torch.float32)
    assert torch.equal(bank[:, 0], bank[:, 1]) and torch.equal(bank[:, 1], bank[:, 2])
    coloured = MemSeg.from_profile("quick", texture_count=4).build_synthesizer(verbose=False)
    bank = coloured.textures.gather(torch.arange(len(coloured.textures)), (32, 32), torch.device("cpu"), torch.float32)
    assert not torch.equal(bank[:, 0], bank[:, 2])
