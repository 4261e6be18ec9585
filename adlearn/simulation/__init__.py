"""Anomaly simulation: the synthetic defects DRÆM, MemSeg and CutPaste/SSPCAB train on.

Batched torch makers (the training path; whole batches on the training device):

* :func:`perlin_noise` / :func:`perlin_masks` — Perlin noise maps and DRÆM's anomaly shapes;
* :class:`DraemSynthesizer` — augmented textures blended in Perlin-shaped regions;
* :class:`MemSegSynthesizer` — texture and structure anomalies inside the foreground;
* :func:`cutpaste`, :func:`cutpaste_scar`, :func:`cutpaste_3way` — CutPaste.

Every maker returns a :class:`SyntheticBatch` (``images``, ``masks``, ``labels``,
plus the ``sources``, ``opacity`` and ``kinds`` used). The per-sample pipelines of
the papers' reference code (imgaug/OpenCV/PIL) live in
:mod:`adlearn.simulation.reference`; the batched torch augmentations in
:mod:`adlearn.simulation.augment`.
"""

from adlearn.simulation.augment import DRAEM_AUGMENTATIONS, random_augment, rotate
from adlearn.simulation.batch import SyntheticBatch, TextureBank
from adlearn.simulation.cutpaste import cutpaste, cutpaste_3way, cutpaste_scar
from adlearn.simulation.draem import DraemSynthesizer
from adlearn.simulation.memseg import MemSegSynthesizer, foreground_masks, shuffle_grid
from adlearn.simulation.perlin import fade, perlin_masks, perlin_noise, perlin_noise_np, random_lattice_resolution

__all__ = [
    "DRAEM_AUGMENTATIONS",
    "DraemSynthesizer",
    "MemSegSynthesizer",
    "SyntheticBatch",
    "TextureBank",
    "cutpaste",
    "cutpaste_3way",
    "cutpaste_scar",
    "fade",
    "foreground_masks",
    "perlin_masks",
    "perlin_noise",
    "perlin_noise_np",
    "random_augment",
    "random_lattice_resolution",
    "rotate",
    "shuffle_grid",
]
