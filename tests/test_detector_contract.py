"""The Detector contract: the base on a toy detector, then every registered method on `quick` budgets.

A new method gets the second half of this file by registering itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from adlearn import methods
from adlearn.data import MVTecAD
from adlearn.methods.base import (
    MIN_HELD_OUT, BufferDict, Detector, DetectorConfig, Prediction, TrainingPlan, check_images,
)
from adlearn.train import random_batches

# --------------------------------------------------------------------------- the base, on a toy detector


@dataclass(frozen=True)
class ToyConfig(DetectorConfig):
    image_size: int = 32
    lr: float = 0.1


class MeanImageDetector(Detector):
    """Scores the distance to a learned image that starts at the mean normal image (setup) and is trained."""

    Config = ToyConfig
    PROFILES = {"quick": {"image_size": 8}, "book": {"image_size": 16}, "paper": {}}

    def build_networks(self):
        return {"mean": BufferDict(), "offset": nn.Conv2d(3, 3, 1)}

    def setup(self, images):
        self.networks["mean"]["image"] = images.mean(0)

    def default_steps(self, num_images):
        return 3

    def training_plan(self, images, steps):
        offset = self.networks["offset"]
        optimizer = torch.optim.SGD(offset.parameters(), lr=self.config.lr)
        batches = random_batches(images, 2, torch.Generator().manual_seed(self.config.seed))

        def step(_):
            loss = (offset(next(batches)) - self.networks["mean"]["image"]).pow(2).mean()
            self.trainer.backward(loss)
            return {"loss": loss.detach()}

        return TrainingPlan(step, {"sgd": optimizer}, random_state={"batches": batches})

    def score_batch(self, images):
        maps = (self.networks["offset"](images) - self.networks["mean"]["image"]).abs().mean(1, keepdim=True)
        return Prediction(scores=maps.flatten(1).amax(1), maps=maps)


def toy_data(count=10, size=8):
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, size, size, generator=generator), "label": 0} for _ in range(count)]


def test_config_defaults_profiles_and_unknown_keys():
    assert MeanImageDetector.from_profile("paper").config == ToyConfig()  # the paper's values are the defaults
    assert MeanImageDetector.from_profile("quick").hparams["image_size"] == 8
    assert MeanImageDetector.from_profile("paper", image_size=64).config.image_size == 64
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['imagesize'\]; known ones are \[.*'image_size'"):
        MeanImageDetector.from_profile("book", imagesize=3)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        MeanImageDetector(imagesize=3)
    with pytest.raises(ValueError, match="held_out_fraction must be in"):
        MeanImageDetector(held_out_fraction=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        MeanImageDetector().config.image_size = 4  # the networks were built for the old value


def test_fit_runs_setup_training_and_calibration():
    detector = MeanImageDetector.from_profile("quick").fit(toy_data(12), progress=False)
    assert detector.fitted and detector.steps_done == 3 and len(detector.history) == 3
    assert detector.info["train_images"] == 12 - MIN_HELD_OUT and detector.info["held_out_images"] == MIN_HELD_OUT
    quantiles = detector.calibration["map_quantiles"]
    assert quantiles.shape == (4,) and bool((quantiles[1:] >= quantiles[:-1]).all())
    assert detector.calibration["held_out_scores"].shape == (MIN_HELD_OUT,)
    normalizer = detector.map_normalizer()
    assert normalizer.low == pytest.approx(float(quantiles[0])) and normalizer.high == pytest.approx(float(quantiles[3]))


def test_held_out_split_is_seeded_and_fixed():
    images = torch.rand(40, 3, 8, 8)
    detector = MeanImageDetector.from_profile("quick")
    train, held = detector.split_held_out(images)
    assert held.shape[0] == 4 and train.shape[0] == 36  # 10 %, at least MIN_HELD_OUT
    again_train, again_held = MeanImageDetector.from_profile("quick").split_held_out(images)
    assert torch.equal(held, again_held) and torch.equal(train, again_train)
    _, other = MeanImageDetector.from_profile("quick", seed=1).split_held_out(images)
    assert not torch.equal(held, other)
    with pytest.raises(ValueError, match="at least 2 normal images"):
        detector.split_held_out(images[:1])


def test_predict_resizes_in_and_maps_out_and_batches():
    detector = MeanImageDetector.from_profile("quick").fit(toy_data(), progress=False)
    images = torch.rand(5, 3, 20, 12)
    whole = detector.predict(images)
    assert whole.scores.shape == (5,) and whole.maps.shape == (5, 1, 20, 12)
    in_twos = detector.predict(images, batch_size=2)
    torch.testing.assert_close(in_twos.maps, whole.maps)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        detector.predict(images, batch_size=0)


def test_save_never_replaces_a_file_unless_asked(tmp_path):
    detector = MeanImageDetector.from_profile("quick").fit(toy_data(), progress=False)
    precious = tmp_path / "model.pt"
    precious.write_bytes(b"a user's file")
    with pytest.raises(FileExistsError, match="already exists; choose another path or pass overwrite=True"):
        detector.save(precious)
    assert precious.read_bytes() == b"a user's file"
    detector.save(precious, overwrite=True)
    assert MeanImageDetector.load(precious).hparams == detector.hparams
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no partial file left behind
    with pytest.raises(IsADirectoryError, match="is a folder"):
        detector.save(tmp_path, overwrite=True)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved MeanImageDetector"):
        MeanImageDetector.load(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file written by adlearn"):
        MeanImageDetector.load(tmp_path / "other.pt")
    torch.save({"format": 1, "class": "MeanImageDetector"}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="another version of adlearn"):
        MeanImageDetector.load(tmp_path / "old.pt")

    class OtherDetector(MeanImageDetector):
        pass

    detector = MeanImageDetector.from_profile("quick").fit(toy_data(), progress=False)
    detector.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="holds a MeanImageDetector, not a OtherDetector"):
        OtherDetector.load(tmp_path / "m.pt")


def test_checkpoint_dir_is_never_overwritten_without_resume(tmp_path):
    MeanImageDetector.from_profile("quick").fit(toy_data(), progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(FileExistsError, match="pass resume=True to continue it"):
        MeanImageDetector.from_profile("quick").fit(toy_data(), progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another training run"):  # other settings, same folder
        MeanImageDetector.from_profile("quick", lr=0.5).fit(toy_data(), progress=False, checkpoint_dir=tmp_path,
                                                            resume=True)
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_dir"):
        MeanImageDetector.from_profile("quick").fit(toy_data(), progress=False, resume=True)


@pytest.mark.parametrize(
    "images, error, message",
    [
        ([[0.0]], TypeError, "must be a torch.Tensor"),
        ("images/001.png", TypeError, "got the path 'images/001.png'; load the images first"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), TypeError, r"float\(\) / 255"),
        (torch.zeros(3, 4, 4), ValueError, r"shape \[B, 3, H, W\]"),
        (torch.zeros(1, 1, 4, 4), ValueError, r"shape \[B, 3, H, W\], got \(1, 1, 4, 4\) \(a grey image\?"),
        (torch.zeros(0, 3, 4, 4), ValueError, "non-empty batch"),
        (torch.full((1, 3, 4, 4), 255.0), ValueError, r"values in \[0, 1\], got range \[255, 255\]"),
        (torch.full((1, 3, 4, 4), float("nan")), ValueError, r"values in \[0, 1\], got range \[nan"),
    ],
)
def test_check_images_errors(images, error, message):
    with pytest.raises(error, match=message):
        check_images(images, 3)


def test_prediction_validates_shapes():
    with pytest.raises(ValueError, match=r"maps must be \[B, 1, H, W\]"):
        Prediction(scores=torch.zeros(2), maps=torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"scores must be \[B\]"):
        Prediction(scores=torch.zeros(2, 1), maps=torch.zeros(2, 1, 4, 4))


def test_registry():
    assert methods.available() == sorted(methods.available())
    assert {"anogan", "draem", "feature_knn"} <= set(methods.available())
    assert methods.get("DRAEM") is methods.DRAEM and methods.DRAEM.name == "draem"
    with pytest.raises(KeyError, match="unknown method 'patchcore'; available: anogan, cutpaste, draem, efficientad, feature_knn, memseg"):
        methods.get("patchcore")
    with pytest.raises(ValueError, match="already registered"):
        methods.register("draem")(MeanImageDetector)


# --------------------------------------------------------------------------- every registered method

STEPS = 4  # a few optimiser steps: the contract, not the accuracy


@pytest.fixture(scope="module")
def surface_data(builtin_root):
    train = MVTecAD(builtin_root, "washer", "train", image_size=64)
    test = MVTecAD(builtin_root, "washer", "test", image_size=64)
    return train, test


@pytest.fixture(scope="module")
def digit_data():
    from adlearn.data.mnist import one_class_split

    split = one_class_split((3,), seed=0, verbose=False)
    return [split.train[i] for i in range(48)], split.test


def data_for(method, surface_data, digit_data):
    return digit_data if method.INPUT_CHANNELS == 1 else surface_data


def sample_images(method, surface_data, digit_data, count=3):
    _, test = data_for(method, surface_data, digit_data)
    return torch.stack([test[i]["image"] for i in range(count)])


@pytest.fixture(scope="module", params=methods.available())
def fitted(request, surface_data, digit_data):
    method = methods.get(request.param)
    train, _ = data_for(method, surface_data, digit_data)
    return method.from_profile("quick").fit(train, steps=STEPS, progress=False, device="cpu")


@pytest.mark.parametrize("name", methods.available())
def test_profiles_name_only_known_hyper_parameters_and_paper_is_the_default(name):
    method = methods.get(name)
    for profile in ("quick", "book", "paper"):
        method.profile_config(profile)  # a typo in PROFILES raises here
    assert method.profile_config("paper") == method.Config()
    with pytest.raises(ValueError, match="known ones are"):
        method.from_profile("quick", no_such_setting=1)


def test_fitted_method_predicts_shapes_and_calibration(fitted, surface_data, digit_data):
    images = sample_images(type(fitted), surface_data, digit_data)
    prediction = fitted.predict(images)
    assert prediction.scores.shape == (3,) and prediction.maps.shape == (3, 1, *images.shape[-2:])
    assert bool(torch.isfinite(prediction.scores).all()) and bool(torch.isfinite(prediction.maps).all())
    assert prediction.maps.device.type == "cpu"
    larger = torch.nn.functional.interpolate(images, size=(72, 56), mode="bilinear").clamp(0, 1)
    assert fitted.predict(larger).maps.shape == (3, 1, 72, 56)  # maps come back at the input size
    assert "map_quantiles" in fitted.calibration.keys() and fitted.map_normalizer().high >= fitted.map_normalizer().low


def test_save_load_gives_identical_predictions_on_the_requested_device(fitted, surface_data, digit_data, tmp_path):
    images = sample_images(type(fitted), surface_data, digit_data)
    path = fitted.save(tmp_path / "model.pt")
    for location in ("cpu", torch.device("cpu")):
        loaded = type(fitted).load(path, map_location=location)
        assert loaded.device == torch.device("cpu")
        assert all(p.device.type == "cpu" for p in loaded.networks.parameters())
        assert loaded.hparams == fitted.hparams and loaded.info == fitted.info
        before, after = fitted.predict(images), loaded.predict(images)
        torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=0)
        torch.testing.assert_close(after.maps, before.maps, rtol=0, atol=0)
        torch.testing.assert_close(loaded.calibration["map_quantiles"], fitted.calibration["map_quantiles"])


@pytest.mark.parametrize("name", methods.available())
def test_predict_or_save_before_fit_is_a_clear_error(name, tmp_path):
    method = methods.get(name)
    detector = method.from_profile("quick")
    size = detector.config.image_size
    with pytest.raises(RuntimeError, match=f"{method.__name__} is not (fitted|trained) yet"):
        detector.predict(torch.rand(1, method.INPUT_CHANNELS, size, size))
    with pytest.raises(RuntimeError, match="not (fitted|trained) yet"):
        detector.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def bad_inputs(channels):
    wrong = 1 if channels == 3 else 3
    return [
        ("a path", "test/good/000.png", TypeError, "got the path"),
        ("wrong channels", torch.rand(1, wrong, 16, 16), ValueError, rf"shape \[B, {channels}, H, W\]"),
        ("outside [0, 1]", torch.rand(1, channels, 16, 16) * 4, ValueError, r"values in \[0, 1\]"),
        ("uint8", torch.zeros(1, channels, 16, 16, dtype=torch.uint8), TypeError, "float tensor"),
        ("NaN", torch.full((1, channels, 16, 16), float("nan")), ValueError, r"values in \[0, 1\]"),
        ("empty batch", torch.rand(0, channels, 16, 16), ValueError, "non-empty batch"),
        ("no batch axis", torch.rand(channels, 16, 16), ValueError, rf"shape \[B, {channels}, H, W\]"),
    ]


def test_bad_inputs_say_what_was_expected(fitted):
    for what, images, error, message in bad_inputs(type(fitted).INPUT_CHANNELS):
        with pytest.raises(error, match=message):
            fitted.predict(images)


@pytest.mark.parametrize("name", methods.available())
def test_fit_refuses_defective_items(name, surface_data, digit_data):
    method = methods.get(name)
    train, test = data_for(method, surface_data, digit_data)
    defective = next(test[i] for i in range(len(test)) if int(test[i]["label"]) == 1)
    with pytest.raises(ValueError, match="defective image.*trains on anomaly-free images only"):
        method.from_profile("quick").fit([train[0], train[1], defective], steps=1, progress=False)
    with pytest.raises(ValueError, match="defective image"):  # a mask alone marks an item defective too
        normal = dict(train[0])
        normal["mask"] = torch.ones(1, *normal["image"].shape[-2:])
        method.from_profile("quick").fit([train[1], normal], steps=1, progress=False)
    with pytest.raises(TypeError, match="needs a dataset of images, got the path"):
        method.from_profile("quick").fit("data/train", progress=False)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", methods.available())
def test_resumed_training_equals_an_uninterrupted_run(name, surface_data, digit_data, tmp_path):
    method = methods.get(name)
    train, _ = data_for(method, surface_data, digit_data)
    uninterrupted = method.from_profile("quick").fit(train, steps=STEPS, progress=False, device="cpu")

    def stop_after_three(step, history):
        if step == 3:
            raise Interrupt

    interrupted = method.from_profile("quick")
    try:
        interrupted.fit(train, steps=STEPS, progress=False, device="cpu", checkpoint_dir=tmp_path,
                        checkpoint_every=2, callback=stop_after_three)
    except Interrupt:
        assert not interrupted.fitted  # a half-trained model cannot be used by mistake
    resumed = method.from_profile("quick").fit(train, steps=STEPS, progress=False, device="cpu",
                                               checkpoint_dir=tmp_path, resume=True)
    assert resumed.steps_done == uninterrupted.steps_done
    assert resumed.history.records == uninterrupted.history.records  # bit for bit
    expected = uninterrupted.networks.state_dict()
    for key, value in resumed.networks.state_dict().items():
        assert torch.equal(value, expected[key]), key
