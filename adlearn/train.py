"""The one training loop every method shares.

A method writes only its *step*: a function that takes the step index, computes
its losses under :meth:`Trainer.autocast` and calls :meth:`Trainer.backward`.
The :class:`Trainer` does the rest the same way for every chapter: the device,
mixed precision on CUDA, learning-rate schedules, a ``tqdm.auto`` progress bar,
a loss history, and checkpoints that a re-run resumes from.

Example::

    trainer = Trainer({"net": net}, {"net": torch.optim.Adam(net.parameters())})
    def step(i):
        batch = next(batches)
        with trainer.autocast():
            loss = criterion(net(batch), batch)
        trainer.backward(loss)
        return {"loss": loss}
    history = trainer.fit(step, steps=1000)
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from adlearn.runtime import pick_device

StepFn = Callable[[int], Mapping[str, Any]]


@dataclass
class History:
    """Losses logged during training, one record per logged step."""

    records: list[dict[str, float]] = field(default_factory=list)

    def append(self, step: int, values: Mapping[str, Any]) -> None:
        record = {"step": float(step)}
        for key, value in values.items():
            record[key] = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        self.records.append(record)

    def to_frame(self) -> pd.DataFrame:
        """The history as a DataFrame indexed by step."""
        if not self.records:
            return pd.DataFrame()
        frame = pd.DataFrame(self.records)
        frame["step"] = frame["step"].astype(int)
        return frame.set_index("step")

    def __len__(self) -> int:
        return len(self.records)


class Trainer:
    """Runs a method's step function with progress, mixed precision, schedules and checkpoints.

    Args:
        modules: the networks being trained, by name (saved in checkpoints).
        optimizers: their optimisers, by name.
        schedulers: learning-rate schedulers stepped once per training step.
        device: where to train; chosen automatically when ``None``.
        amp: mixed precision; ``None`` means "on for CUDA, off elsewhere".
        checkpoint_path: where to keep a checkpoint; when the file exists, :meth:`fit` resumes from it.
        checkpoint_every: save every this many steps (0 = only at the end).
        grad_clip: clip the gradient norm of each optimiser's parameters to this value.
        random_state: every random generator the step function draws from, by name: objects with
            ``get_state()`` / ``set_state(state)`` such as :class:`torch.Generator` or
            :class:`BatchSampler`. Their states go into checkpoints, so a resumed run draws the same
            numbers as an uninterrupted one (the global generators are saved as well).
        fingerprint: a string naming what is trained (method and hyper-parameters); a checkpoint
            with another fingerprint is refused instead of silently resumed.
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        *,
        schedulers: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        amp: bool | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 0,
        grad_clip: float | None = None,
        random_state: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        if not modules:
            raise ValueError("Trainer needs at least one module to train.")
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}.")
        self.device = pick_device(device)
        self.modules = {name: module.to(self.device) for name, module in modules.items()}
        self.optimizers = dict(optimizers)
        self.schedulers = dict(schedulers or {})
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        if self.amp and self.device.type != "cuda":
            raise ValueError(f"mixed precision (amp=True) needs a CUDA device, got {self.device}.")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.checkpoint_every = checkpoint_every
        self.grad_clip = grad_clip
        self.random_state = dict(random_state or {})
        for name, source in self.random_state.items():
            if not (callable(getattr(source, "get_state", None)) and callable(getattr(source, "set_state", None))):
                raise TypeError(f"random_state[{name!r}] must have get_state() and set_state(); got {type(source).__name__}.")
        self.fingerprint = fingerprint
        self.history = History()
        self.step_index = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass: float16 autocast on CUDA when ``amp`` is on, else nothing."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, optimizers: str | list[str] | None = None) -> None:
        """Zero the gradients, back-propagate ``loss`` and step the named optimisers (default: all)."""
        names = list(self.optimizers) if optimizers is None else [optimizers] if isinstance(optimizers, str) else optimizers
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for name in names:
            optimizer = self.optimizers[name]
            if self.grad_clip is not None:
                self.scaler.unscale_(optimizer)
                params = [p for group in optimizer.param_groups for p in group["params"]]
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.scaler.step(optimizer)
        self.scaler.update()

    def fit(
        self,
        step_fn: StepFn,
        steps: int,
        *,
        progress: bool = True,
        desc: str = "training",
        log_every: int = 1,
        callback: Callable[[int, History], None] | None = None,
        callback_every: int = 0,
        resume: bool = True,
    ) -> History:
        """Run ``step_fn(i)`` for ``i`` from the resumed step to ``steps - 1``.

        ``step_fn`` returns a mapping of losses (tensors or floats); every
        ``log_every`` steps they are recorded in :attr:`history`. ``callback``
        (e.g. a live loss plot) is called as ``callback(steps_done, history)``
        every ``callback_every`` steps. With ``resume`` and an existing
        checkpoint file, training continues from it.
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}.")
        if resume and self.checkpoint_path is not None and self.checkpoint_path.is_file():
            self.load_checkpoint(self.checkpoint_path)
        for module in self.modules.values():
            module.train()
        bar = tqdm(total=steps, initial=min(self.step_index, steps), desc=desc, disable=not progress, leave=False)
        try:
            while self.step_index < steps:
                losses = step_fn(self.step_index)
                for scheduler in self.schedulers.values():
                    scheduler.step()
                if log_every and self.step_index % log_every == 0 or self.step_index == steps - 1:
                    self.history.append(self.step_index, losses or {})
                    if losses:
                        bar.set_postfix({k: f"{self.history.records[-1][k]:.4f}" for k in losses}, refresh=False)
                self.step_index += 1
                bar.update(1)
                if callback is not None and callback_every and self.step_index % callback_every == 0:
                    callback(self.step_index, self.history)
                if self.checkpoint_path is not None and self.checkpoint_every and self.step_index % self.checkpoint_every == 0:
                    self.save_checkpoint(self.checkpoint_path)
        finally:
            bar.close()
        if self.checkpoint_path is not None:
            self.save_checkpoint(self.checkpoint_path)
        for module in self.modules.values():
            module.eval()
        return self.history

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write networks, optimisers, schedulers, history and random states to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step_index,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "history": self.history.records,
            "fingerprint": self.fingerprint,
            "random_state": {k: source.get_state() for k, source in self.random_state.items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # atomic: an interrupted save never leaves half a checkpoint
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote, so :meth:`fit` continues where it stopped."""
        path = Path(path)
        state = torch.load(path, map_location="cpu", weights_only=False)
        if self.fingerprint is not None and state.get("fingerprint") not in (None, self.fingerprint):
            raise ValueError(
                f"checkpoint {path} was written by another training run ({state.get('fingerprint')}); "
                f"this run is {self.fingerprint}. Use another checkpoint folder or delete the file to start over."
            )
        missing_random = set(self.random_state) - set(state.get("random_state", {}))
        if missing_random:
            raise ValueError(f"checkpoint {path} has no state for random generator(s) {sorted(missing_random)}.")
        missing = set(self.modules) - set(state.get("modules", {}))
        if missing:
            raise ValueError(f"checkpoint {path} has no state for module(s) {sorted(missing)}.")
        for key, module in self.modules.items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        self.scaler.load_state_dict(state["scaler"])
        self.history = History(list(state["history"]))
        self.step_index = int(state["step"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        for key, source in self.random_state.items():
            source.set_state(state["random_state"][key])


def stack_images(dataset: Any, key: str = "image") -> torch.Tensor:
    """Stack every item's ``key`` of a dataset into one ``[N, C, H, W]`` tensor.

    Small training sets (a few hundred images) fit in memory, so methods sample
    batches from one tensor on the device instead of a DataLoader per step.
    """
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty; expected at least one anomaly-free image.")
    return torch.stack([dataset[i][key] for i in range(len(dataset))])


class BatchSampler:
    """Endless batches drawn as shuffled epochs from ``images``, with a state that checkpoints can save.

    Indices are drawn on the CPU from ``generator`` (the global generator when
    ``None``) and gathered on the images' device. :meth:`get_state` /
    :meth:`set_state` capture the generator and the rest of the current epoch,
    so a resumed run continues with exactly the batches an uninterrupted run draws.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if images.shape[0] == 0:
            raise ValueError("cannot draw batches from an empty tensor of images.")
        self.images = images
        self.batch_size = batch_size
        self.generator = generator
        self.order = torch.empty(0, dtype=torch.long)

    def __iter__(self) -> BatchSampler:
        return self

    def __next__(self) -> torch.Tensor:
        while self.order.numel() < self.batch_size:
            self.order = torch.cat([self.order, torch.randperm(self.images.shape[0], generator=self.generator)])
        batch, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return self.images[batch.to(self.images.device)]

    def get_state(self) -> dict[str, torch.Tensor | None]:
        return {
            "generator": self.generator.get_state() if self.generator is not None else None,
            "order": self.order.clone(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])
        self.order = state["order"].clone()


def random_batches(images: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> BatchSampler:
    """Endless batches drawn as shuffled epochs from ``images`` (see :class:`BatchSampler`)."""
    return BatchSampler(images, batch_size, generator)
