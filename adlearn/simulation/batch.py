"""What every anomaly maker returns, and the bank of anomaly-source textures DRÆM and MemSeg draw from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from adlearn.simulation._validation import generator_device

__all__ = ["SyntheticBatch", "TextureBank", "RowSplit"]


@dataclass
class SyntheticBatch:
    """A batch with synthetic anomalies.

    Attributes:
        images: ``[B, 3, H, W]`` floats in ``[0, 1]``, the inputs with anomalies pasted in.
        masks: ``[B, 1, H, W]`` floats in ``{0, 1}``: 1 where an anomaly was placed.
            Pixels outside the mask are bit-for-bit the original ones.
        labels: ``[B]``: float 1/0 (anomalous or not, i.e. the mask is non-empty),
            or long class ids for multi-class makers (CutPaste 3-way: 0 normal,
            1 cut-paste, 2 scar).
        sources: ``[B, 3, H, W]`` the anomaly source that was blended in (where the
            mask is 1); the original image for untouched samples. ``None`` if not kept.
        opacity: ``[B]`` the weight of the source in the blend
            ``out = (1 - opacity) * image + opacity * source`` inside the mask
            (0 for untouched samples). ``None`` if not kept.
        kinds: ``[B]`` long, maker-specific kind of anomaly (MemSeg: 0 none,
            1 texture, 2 structure; CutPaste: as ``labels``). ``None`` if not kept.
    """

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    sources: torch.Tensor | None = None
    opacity: torch.Tensor | None = None
    kinds: torch.Tensor | None = None

    @classmethod
    def unchanged(cls, images: torch.Tensor, *, keep_sources: bool, with_kinds: bool = False) -> "SyntheticBatch":
        """The batch a maker returns when no sample got an anomaly: a copy of ``images``, empty masks, zero labels."""
        batch, _, height, width = images.shape
        copy = images.clone()
        zeros = images.new_zeros(batch)
        return cls(
            images=copy,
            masks=images.new_zeros(batch, 1, height, width),
            labels=zeros,
            sources=copy if keep_sources else None,
            opacity=zeros.clone(),
            kinds=torch.zeros(batch, dtype=torch.long, device=images.device) if with_kinds else None,
        )

    def to(self, device: torch.device | str) -> "SyntheticBatch":
        """The same batch on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in moved.items()})

    def __len__(self) -> int:
        return self.images.shape[0]


class RowSplit:
    """The rows of a batch that get an anomaly (``members``) and the rest, with cheap merging.

    Makers compute anomalies for the members only and then need full-batch
    tensors again. The full batch is put together with one ``torch.cat`` of
    slices (each run of consecutive member or non-member rows is one slice), which
    is one copy, several times faster on a CPU than ``index_copy_`` into a
    clone, and needs no device synchronisation (the bookkeeping is on the CPU).

    Args:
        chosen: bool ``[B]`` (any device), which rows are members.
        device: the device of the tensors to merge.
    """

    def __init__(self, chosen: torch.Tensor, device: torch.device) -> None:
        chosen = chosen.cpu()
        self.batch = chosen.numel()
        self.members = torch.nonzero(chosen).flatten()
        self.others = torch.nonzero(~chosen).flatten()
        self.device = torch.device(device)
        self.members_device = self.members.to(self.device)
        self.others_device = self.others.to(self.device)
        # Runs of consecutive rows on the same side: (is_member, first row, position on its side, length).
        flags = chosen.tolist()
        self._runs: list[tuple[bool, int, int, int]] = []
        seen = {True: 0, False: 0}
        for row, flag in enumerate(flags):
            flag = bool(flag)
            if self._runs and self._runs[-1][0] == flag:
                member, first, position, length = self._runs[-1]
                self._runs[-1] = (member, first, position, length + 1)
            else:
                self._runs.append((flag, row, seen[flag], 1))
            seen[flag] += 1

    @property
    def count(self) -> int:
        """Number of members."""
        return self.members.numel()

    def _side(self, values: torch.Tensor, member: bool) -> torch.Tensor:
        runs = [run for run in self._runs if run[0] == member]
        if len(runs) == 1:
            return values[runs[0][1] : runs[0][1] + runs[0][3]]  # consecutive rows: a view, no copy
        return values.index_select(0, self.members_device if member else self.others_device)

    def select_members(self, values: torch.Tensor) -> torch.Tensor:
        """The members' rows of a full batch (a view when they are consecutive rows)."""
        return self._side(values, True)

    def select_others(self, values: torch.Tensor) -> torch.Tensor:
        """The other rows of a full batch (a view when they are consecutive rows)."""
        return self._side(values, False)

    def merge(self, member_values: torch.Tensor, other_values: torch.Tensor) -> torch.Tensor:
        """The full batch: ``member_values`` in the members' rows, ``other_values`` in the others'."""
        if not self.others.numel():
            return member_values
        if not self.members.numel():
            return other_values
        return torch.cat(
            [
                (member_values if member else other_values)[position : position + length]
                for member, _, position, length in self._runs
            ]
        )

    def merge_over(self, member_values: torch.Tensor, full_values: torch.Tensor) -> torch.Tensor:
        """The full batch: ``member_values`` in the members' rows, the others' rows taken from ``full_values`` ``[B, ...]``."""
        if not self.members.numel():
            return full_values.clone()
        if not self.others.numel():
            return member_values
        return torch.cat(
            [
                member_values[position : position + length] if member else full_values[first : first + length]
                for member, first, position, length in self._runs
            ]
        )


class TextureBank:
    """Anomaly-source images kept once per device and resized to the batch on demand.

    Args:
        textures: ``[N, 3, h, w]`` floats in ``[0, 1]``, or ``uint8`` (4x less memory,
            converted per batch).
        name: the argument name used in error messages.

    Raises:
        TypeError/ValueError: not a tensor, wrong dtype, shape or range, or empty.
    """

    def __init__(self, textures: torch.Tensor, name: str = "textures") -> None:
        if not isinstance(textures, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [N, 3, H, W] (floats in [0, 1] or uint8), got {type(textures).__name__}.")
        if textures.ndim != 4 or textures.shape[1] != 3:
            raise ValueError(f"{name} must have shape [N, 3, H, W] (RGB), got {tuple(textures.shape)}.")
        if textures.shape[0] == 0:
            raise ValueError(f"{name} is empty (N = 0); load some with adlearn.data.textures.load_texture_images().")
        if textures.is_floating_point():
            low, high = float(textures.min()), float(textures.max())
            if low < -1e-6 or high > 1 + 1e-6:
                raise ValueError(f"{name} must have values in [0, 1], got range [{low:.4g}, {high:.4g}].")
        elif textures.dtype != torch.uint8:
            raise TypeError(f"{name} must be float in [0, 1] or uint8, got dtype {textures.dtype}.")
        self._textures = textures
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def __len__(self) -> int:
        return self._textures.shape[0]

    @property
    def textures(self) -> torch.Tensor:
        """The textures as given."""
        return self._textures

    def _bank(self, device: torch.device) -> torch.Tensor:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._on_device:
            self._on_device[device] = self._textures.to(device)
        return self._on_device[device]

    def random_indices(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` indices drawn uniformly (with replacement), on the generator's device."""
        return torch.randint(len(self), (count,), generator=generator, device=generator_device(generator))

    def as_is(self, size: Sequence[int], device: torch.device | str, dtype: torch.dtype) -> torch.Tensor | None:
        """The bank on ``device`` when its textures need no conversion to ``size`` and ``dtype``, else ``None``.

        Then a maker can use its rows directly (views) instead of copying them with :meth:`gather`.
        """
        bank = self._bank(torch.device(device))
        if bank.dtype != dtype or tuple(bank.shape[-2:]) != (int(size[0]), int(size[1])):
            return None
        return bank

    def gather(
        self, indices: torch.Tensor, size: Sequence[int], device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Textures ``indices`` as ``[len(indices), 3, H, W]`` floats in ``[0, 1]`` on ``device``."""
        bank = self._bank(torch.device(device))
        chosen = bank.index_select(0, indices.to(bank.device))
        chosen = chosen.to(dtype) / 255.0 if chosen.dtype == torch.uint8 else chosen.to(dtype)
        height, width = int(size[0]), int(size[1])
        if chosen.shape[-2:] != (height, width):
            chosen = F.interpolate(chosen, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
            chosen = chosen.clamp(0, 1)
        return chosen
