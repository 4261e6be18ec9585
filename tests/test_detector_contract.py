"""The Detector contract, checked on a tiny detector that scores distance to the mean normal image."""

import pytest
import torch

from adlearn.methods.base import Detector, Prediction, check_images


class MeanImageDetector(Detector):
    PROFILES = {"quick": {"image_size": 8}, "book": {"image_size": 16}, "paper": {"image_size": 32}}

    def fit(self, train_dataset, *, device=None, progress=True, **budget):
        self.mean = torch.stack([item["image"] for item in train_dataset]).mean(0)
        return self

    def predict(self, images):
        images = check_images(images, self.INPUT_CHANNELS)
        maps = (images - self.mean).abs().mean(1, keepdim=True)
        return Prediction(scores=maps.flatten(1).max(1).values, maps=maps)

    def _get_state(self):
        return {"mean": self.mean}

    def _set_state(self, state):
        self.mean = state["mean"]


def test_from_profile_and_overrides():
    assert MeanImageDetector.from_profile("quick").hparams == {"image_size": 8}
    assert MeanImageDetector.from_profile("paper", image_size=64).hparams == {"image_size": 64}
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        MeanImageDetector.from_profile("book", imagesize=3)


def test_save_load_round_trip_is_exact(tmp_path):
    train = [{"image": torch.rand(3, 8, 8)} for _ in range(4)]
    detector = MeanImageDetector.from_profile("quick").fit(train)
    images = torch.rand(2, 3, 8, 8)
    path = detector.save(tmp_path / "nested" / "model.pt")
    loaded = MeanImageDetector.load(path)
    assert loaded.hparams == detector.hparams
    torch.testing.assert_close(loaded.predict(images).maps, detector.predict(images).maps, rtol=0, atol=0)


def test_save_never_replaces_a_file_unless_asked(tmp_path):
    detector = MeanImageDetector.from_profile("quick").fit([{"image": torch.rand(3, 8, 8)}])
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

    class OtherDetector(MeanImageDetector):
        pass

    detector = MeanImageDetector.from_profile("quick").fit([{"image": torch.rand(3, 8, 8)}])
    detector.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="holds a MeanImageDetector, not a OtherDetector"):
        OtherDetector.load(tmp_path / "m.pt")


@pytest.mark.parametrize(
    "images, error, message",
    [
        ([[0.0]], TypeError, "must be a torch.Tensor"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), TypeError, r"float\(\) / 255"),
        (torch.zeros(3, 4, 4), ValueError, r"shape \[B, 3, H, W\]"),
        (torch.zeros(1, 1, 4, 4), ValueError, r"shape \[B, 3, H, W\], got \(1, 1, 4, 4\) \(a grey image\?"),
        (torch.zeros(0, 3, 4, 4), ValueError, "non-empty batch"),
        (torch.full((1, 3, 4, 4), 255.0), ValueError, r"values in \[0, 1\], got range \[255, 255\]"),
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
