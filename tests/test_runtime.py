import numpy as np
import pytest
import torch

from adlearn.runtime import describe_run, pick_device, seed_everything


def test_seed_everything_repeats_all_generators():
    gen = seed_everything(123)
    first = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=gen))
    gen = seed_everything(123)
    second = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=gen))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(1.5)


def test_pick_device_defaults_to_an_available_device():
    device = pick_device()
    assert device.type in {"cpu", "cuda", "mps"}
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is missing")
def test_asking_for_missing_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pick_device("cuda")


def test_describe_run_names_profile_device_and_data():
    line = describe_run("book", "cpu", "built-in brick")
    assert line.startswith("profile: book | device: cpu (")
    assert line.endswith("| data: built-in brick")
