"""AnoGAN: the DCGAN shapes, the score's parts, the batched latent search, the encoder and the Detector contract."""

import pytest
import torch

from adlearn.data.mnist import one_class_split
from adlearn.methods.anogan import (
    AnoGAN,
    DCGANDiscriminator,
    DCGANGenerator,
    LatentEncoder,
    initial_latents,
    latent_search,
    latent_search_per_image,
    score_latents,
)


@pytest.fixture(scope="module")
def split():
    return one_class_split((7,), seed=0, verbose=False)


@pytest.fixture(scope="module")
def trained(split):
    """A ``quick`` AnoGAN trained on the digit 7 (a few seconds on one CPU core)."""
    return AnoGAN.from_profile("quick").fit(split.train, device="cpu", progress=False)


@pytest.mark.parametrize("image_size, feature_size", [(28, 7), (64, 4)])
def test_network_shapes(image_size, feature_size):
    generator = DCGANGenerator(latent_dim=12, width=4, image_size=image_size)
    discriminator = DCGANDiscriminator(width=4, image_size=image_size)
    encoder = LatentEncoder(latent_dim=12, width=4, image_size=image_size)
    images = generator(torch.randn(3, 12))
    assert images.shape == (3, 1, image_size, image_size)
    assert float(images.detach().min()) >= -1 and float(images.detach().max()) <= 1  # tanh output
    assert generator(torch.randn(3, 12, 1, 1)).shape == images.shape
    logits, features = discriminator(images)
    widest = 2 * 4 if image_size == 28 else 8 * 4
    assert logits.shape == (3,) and features.shape == (3, widest * feature_size**2) == (3, discriminator.feature_dim)
    assert torch.equal(discriminator.features(images), features)
    assert encoder(images).shape == (3, 12)


def test_network_arguments_are_checked():
    with pytest.raises(ValueError, match=r"image_size must be one of \(28, 64\)"):
        DCGANGenerator(image_size=32)
    with pytest.raises(ValueError, match="latent_dim must be a positive int"):
        LatentEncoder(latent_dim=0)
    with pytest.raises(ValueError, match="scorer must be one of"):
        AnoGAN(scorer="nearest")
    with pytest.raises(ValueError, match="discrimination_weight"):
        AnoGAN(discrimination_weight=1.5)
    with pytest.raises(ValueError, match="gan_steps must be an int >= 0"):
        AnoGAN(gan_steps=-1)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        AnoGAN(batch_size=0)
    with pytest.raises(ValueError, match="search_batch_size must be an int >= 1 or None"):
        AnoGAN(search_batch_size=0)


def test_training_records_losses_and_samples(split):
    seen = []
    detector = AnoGAN.from_profile("quick", gan_steps=6, encoder_steps=3)
    def watch(step, history):  # every 3rd GAN step, five samples from fixed latents
        if step % 3 == 0 and step <= 6:
            seen.append((step, detector.sample(5, seed=1)))

    detector.fit(split.train, progress=False, callback=watch)
    assert [step for step, _ in seen] == [3, 6]
    assert all(images.shape == (5, 1, 28, 28) and 0 <= float(images.min()) <= float(images.max()) <= 1 for _, images in seen)
    assert list(detector.gan_history.index) == list(range(6))
    assert list(detector.encoder_history.index) == list(range(3)) and detector.stage_steps_done == (6, 3)
    assert {"generator_loss", "discriminator_loss", "D(real)", "D(fake)"} <= set(detector.gan_history.columns)
    assert {"encoder_loss", "image_loss", "feature_loss"} <= set(detector.encoder_history.columns)
    assert not detector.generator.training and not detector.discriminator.training  # left ready to predict
    # same seed, same training: the generator's samples repeat exactly
    again = AnoGAN.from_profile("quick", gan_steps=6, encoder_steps=0).fit(split.train, progress=False)
    torch.testing.assert_close(again.sample(4), detector.sample(4), rtol=0, atol=0)


def test_score_parts_add_up(trained, split):
    images = split.holdout.images[:6]
    result = trained.anomaly_scores(images, steps=5)
    assert result.score.shape == result.residual_score.shape == result.discrimination_score.shape == (6,)
    assert result.z.shape == (6, 16) and result.generated.shape == result.residual_map.shape == (6, 1, 28, 28)
    assert result.loss_history.shape == (6, 6)  # before each of 5 steps, and at the end
    torch.testing.assert_close(result.score, 0.9 * result.residual_score + 0.1 * result.discrimination_score)
    torch.testing.assert_close(result.residual_map, (images - result.generated).abs())
    torch.testing.assert_close(result.residual_map.flatten(1).sum(1), result.residual_score)
    torch.testing.assert_close(result.loss_history[-1], result.score)
    # the parts are what they say: G(z) is the generator's image of z, D compares discriminator features
    torch.testing.assert_close(result.generated, trained.sample(result.z))
    features = trained.discriminator.features
    with torch.no_grad():
        expected = (features(images * 2 - 1) - features(result.generated * 2 - 1)).abs().sum(1)
    torch.testing.assert_close(result.discrimination_score, expected, rtol=1e-4, atol=1e-3)


def test_search_lowers_the_loss(trained, split):
    images = torch.cat([split.holdout.images[:4], split.test.images[split.test.labels == 1][:4]])
    result = latent_search(trained.generator, trained.discriminator, images, steps=40, lr=0.1, seed=3)
    start, end = result.loss_history[0], result.loss_history[-1]
    assert bool((end < start).all()), (start, end)
    assert float(end.mean()) < 0.9 * float(start.mean())
    no_search = score_latents(trained.generator, trained.discriminator, images, initial_latents(8, 16, seed=3))
    torch.testing.assert_close(no_search.score, start)


def test_batched_search_equals_the_per_image_loop(trained, split):
    images = split.test.images[:5]
    batched = latent_search(trained.generator, trained.discriminator, images, steps=15, lr=0.05, seed=7)
    looped = latent_search_per_image(trained.generator, trained.discriminator, images, steps=15, lr=0.05, seed=7)
    for name in ("score", "residual_score", "discrimination_score", "z", "generated", "loss_history"):
        torch.testing.assert_close(getattr(batched, name), getattr(looped, name), rtol=1e-4, atol=1e-4, msg=name)


def test_predict_contract_and_scorers(trained, split):
    images = split.holdout.images[:4]
    for scorer in ("search", "encoder"):
        prediction = trained.predict(images, scorer=scorer)
        assert prediction.scores.shape == (4,) and prediction.maps.shape == (4, 1, 28, 28)
        assert float(prediction.maps.min()) >= 0 and bool(torch.isfinite(prediction.scores).all())
    # predictions repeat exactly (the search starts from seeded latents), and chunking changes nothing
    torch.testing.assert_close(trained.predict(images).scores, trained.predict(images).scores, rtol=0, atol=0)
    whole = trained.anomaly_scores(images)
    chunked = trained.anomaly_scores(images, batch_size=3)
    assert chunked.loss_history.shape == whole.loss_history.shape
    torch.testing.assert_close(chunked.score, whole.score, rtol=1e-4, atol=1e-3)
    # the encoder's score is the same formula at z = E(x)
    encoded = trained.anomaly_scores(images, scorer="encoder")
    torch.testing.assert_close(encoded.z, trained.encode(images))
    assert encoded.loss_history.shape == (1, 4)


def test_other_input_sizes_are_resized_and_maps_come_back_at_input_size():
    detector = AnoGAN(image_size=64, latent_dim=8, width=4, search_steps=2)
    detector.steps_done, detector.fitted = 1, True  # shapes only: an (almost) untrained GAN is enough
    prediction = detector.predict(torch.rand(2, 1, 28, 28))
    assert prediction.maps.shape == (2, 1, 28, 28)
    assert detector.anomaly_scores(torch.rand(2, 1, 28, 28)).residual_map.shape == (2, 1, 64, 64)


def test_save_load_round_trips_predictions_exactly(trained, split, tmp_path):
    path = trained.save(tmp_path / "anogan.pt")
    loaded = AnoGAN.load(path)
    assert loaded.hparams == trained.hparams
    images = split.test.images[:6]
    for scorer in ("search", "encoder"):
        before, after = trained.predict(images, scorer=scorer), loaded.predict(images, scorer=scorer)
        torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=0)
        torch.testing.assert_close(after.maps, before.maps, rtol=0, atol=0)
    assert loaded.gan_history.equals(trained.gan_history)


def test_obviously_different_images_score_higher_than_held_out_normal_digits(trained, split):
    normal = trained.predict(split.holdout.images).scores
    inverted = trained.predict(1.0 - split.holdout.images).scores
    anomalous = trained.predict(split.test.images[split.test.labels == 1][:40]).scores
    assert float(inverted.min()) > float(normal.max())
    assert float(anomalous.median()) > float(normal.median())  # other digits too, on the whole
    encoded_normal = trained.predict(split.holdout.images, scorer="encoder").scores
    encoded_inverted = trained.predict(1.0 - split.holdout.images, scorer="encoder").scores
    assert float(encoded_inverted.min()) > float(encoded_normal.max())


def test_bad_input_is_rejected(trained):
    with pytest.raises(RuntimeError, match="not trained yet"):
        AnoGAN.from_profile("quick").predict(torch.rand(1, 1, 28, 28))
    untrained_encoder = AnoGAN.from_profile("quick")
    untrained_encoder.steps_done, untrained_encoder.fitted = 1, True  # one GAN step, no encoder step
    with pytest.raises(RuntimeError, match="needs a trained encoder"):
        untrained_encoder.predict(torch.rand(1, 1, 28, 28), scorer="encoder")
    with pytest.raises(ValueError, match=r"shape \[B, 1, H, W\]"):
        trained.predict(torch.rand(2, 3, 28, 28))
    with pytest.raises(TypeError, match="float tensor"):
        trained.predict(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        trained.predict(torch.rand(2, 1, 28, 28) * 2 - 1)
    with pytest.raises(ValueError, match="scorer must be one of"):
        trained.predict(torch.rand(1, 1, 28, 28), scorer="knn")
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        latent_search(trained.generator, trained.discriminator, torch.rand(1, 1, 28, 28), steps=-1)
    with pytest.raises(ValueError, match=r"AnoGAN.fit images must have shape \[B, 1, H, W\]"):
        AnoGAN.from_profile("quick").fit([{"image": torch.rand(3, 28, 28)}], progress=False)
