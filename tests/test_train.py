import torch
from torch import nn

from adlearn.train import History, Trainer, random_batches, stack_images
import pytest


def make_problem(seed=0):
    torch.manual_seed(seed)
    inputs = torch.randn(64, 3)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return inputs, targets, model, optimizer


def make_step(trainer, model, inputs, targets):
    def step(index):
        with trainer.autocast():
            loss = nn.functional.mse_loss(model(inputs), targets)
        trainer.backward(loss)
        return {"loss": loss}

    return step


def test_fit_lowers_the_loss_and_records_history():
    inputs, targets, model, optimizer = make_problem()
    trainer = Trainer({"model": model}, {"model": optimizer}, device="cpu")
    history = trainer.fit(make_step(trainer, model, inputs, targets), steps=50, progress=False)
    frame = history.to_frame()
    assert list(frame.index[:3]) == [0, 1, 2] and len(frame) == 50
    assert frame["loss"].iloc[-1] < 0.01 * frame["loss"].iloc[0]
    assert not model.training  # left in eval mode for prediction


def test_schedulers_step_once_per_training_step():
    inputs, targets, model, optimizer = make_problem()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[8], gamma=0.5)
    trainer = Trainer({"model": model}, {"model": optimizer}, schedulers={"lr": scheduler}, device="cpu")
    trainer.fit(make_step(trainer, model, inputs, targets), steps=10, progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path):
    inputs, targets, model, optimizer = make_problem()
    trainer = Trainer({"model": model}, {"model": optimizer}, device="cpu")
    trainer.fit(make_step(trainer, model, inputs, targets), steps=20, progress=False)
    uninterrupted = model.weight.detach().clone()

    checkpoint = tmp_path / "ckpt" / "run.pt"
    inputs, targets, model, optimizer = make_problem()
    first = Trainer({"model": model}, {"model": optimizer}, device="cpu", checkpoint_path=checkpoint)
    first.fit(make_step(first, model, inputs, targets), steps=12, progress=False)
    assert checkpoint.is_file()

    _, _, fresh_model, fresh_optimizer = make_problem(seed=99)  # different weights: must be overwritten by resume
    second = Trainer({"model": fresh_model}, {"model": fresh_optimizer}, device="cpu", checkpoint_path=checkpoint)
    history = second.fit(make_step(second, fresh_model, inputs, targets), steps=20, progress=False)
    assert second.step_index == 20 and len(history) == 20
    torch.testing.assert_close(fresh_model.weight.detach(), uninterrupted)


def test_periodic_checkpoints_and_callback(tmp_path):
    inputs, targets, model, optimizer = make_problem()
    calls = []
    trainer = Trainer({"model": model}, {"model": optimizer}, device="cpu",
                      checkpoint_path=tmp_path / "c.pt", checkpoint_every=5)
    trainer.fit(make_step(trainer, model, inputs, targets), steps=10, progress=False,
                callback=lambda step, history: calls.append((step, len(history))), callback_every=5)
    assert calls == [(5, 5), (10, 10)]
    assert torch.load(tmp_path / "c.pt", weights_only=False)["step"] == 10


def test_log_every_keeps_last_step():
    inputs, targets, model, optimizer = make_problem()
    trainer = Trainer({"model": model}, {"model": optimizer}, device="cpu")
    history = trainer.fit(make_step(trainer, model, inputs, targets), steps=10, progress=False, log_every=4)
    assert list(history.to_frame().index) == [0, 4, 8, 9]


def test_bad_arguments_are_clear():
    _, _, model, optimizer = make_problem()
    with pytest.raises(ValueError, match="at least one module"):
        Trainer({}, {})
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Trainer({"m": model}, {"m": optimizer}, device="cpu", amp=True)
    trainer = Trainer({"m": model}, {"m": optimizer}, device="cpu")
    with pytest.raises(ValueError, match="steps must be >= 0"):
        trainer.fit(lambda i: {}, steps=-1)


def test_random_batches_cover_each_epoch_once():
    images = torch.arange(10).float().view(10, 1, 1, 1)
    batches = random_batches(images, batch_size=5, generator=torch.Generator().manual_seed(0))
    epoch = torch.cat([next(batches), next(batches)]).flatten()
    assert sorted(epoch.tolist()) == list(range(10))
    assert next(batches).shape == (5, 1, 1, 1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(random_batches(images, 0))


def test_stack_images_and_empty_dataset():
    data = [{"image": torch.full((3, 4, 4), float(i))} for i in range(3)]
    stacked = stack_images(data)
    assert stacked.shape == (3, 3, 4, 4) and stacked[2].max() == 2
    with pytest.raises(ValueError, match="training dataset is empty"):
        stack_images([])


def test_history_frame_of_empty_history():
    assert History().to_frame().empty
