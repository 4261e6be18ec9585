"""Anomaly-source textures: the Describable Textures Dataset (DTD) when present, an offline stand-in otherwise.

DRÆM and MemSeg paste pieces of *textures that have nothing to do with the
product* into normal images; the papers use DTD (Cimpoi et al., CVPR 2014:
5640 photographs in 47 classes, ``dtd/images/<class>/*.jpg``, research use).

* :func:`download_dtd` fetches the official archive (about 600 MB), checks its
  SHA-256 digest and unpacks it into ``<root>/dtd``.
* :func:`load_texture_images` reads DTD images as a float tensor
  ``[N, 3, S, S]``; without DTD it prints a notice and returns the offline
  stand-in from :func:`fallback_textures`: crops of scikit-image's bundled
  photographs (never the brick, grass and gravel photographs the built-in data
  set is made of) and procedurally drawn patterns (stripes, checks, dots,
  waves, marble, cells), in muted, natural colours (as most DTD photographs are).

Example:
    >>> textures = load_texture_images(image_size=256, count=64, seed=0)  # DTD or the stand-in
    >>> textures.shape
    torch.Size([64, 3, 256, 256])
"""

from __future__ import annotations

import colorsys
import functools
from pathlib import Path

import cv2
import numpy as np
import torch

from adlearn.data.download import download_file, extract_archive
from adlearn.data.paths import default_data_root, display_path, find_local_copy

__all__ = [
    "DTD_URL",
    "DTD_SHA256",
    "FALLBACK_PHOTOGRAPHS",
    "FALLBACK_PATTERNS",
    "download_dtd",
    "find_dtd_images",
    "dtd_image_paths",
    "load_texture_images",
    "load_image_folder",
    "load_natural_images",
    "natural_image_kind",
    "fallback_textures",
]

DTD_URL = "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"
#: SHA-256 of ``dtd-r1.0.1.tar.gz`` (torchvision checks its MD5 ``fff73e5086ae6bdbea199a49dfb8a4c1``)
DTD_SHA256 = "e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: scikit-image photographs used by the stand-in (brick, grass and gravel are left out:
#: the built-in data set's normal images are made of them)
FALLBACK_PHOTOGRAPHS: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "colorwheel", "camera", "coins", "moon", "page", "text", "cell", "clock",
)
#: procedural patterns of the stand-in (named after DTD classes they resemble)
FALLBACK_PATTERNS: tuple[str, ...] = ("banded", "chequered", "dotted", "wavy", "marbled", "cellular")


def download_dtd(root: str | Path | None = None, *, keep_archive: bool = False, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download DTD from the official address into ``<root>/dtd`` (checksummed, resumable).

    Args:
        root: the data root; default :func:`adlearn.data.default_data_root`.
        keep_archive: keep ``dtd-r1.0.1.tar.gz`` after unpacking.
        progress: show a progress bar.
        timeout: seconds to wait for the server.

    Returns:
        ``root``, for :func:`load_texture_images`.

    Raises:
        FileExistsError: ``<root>/dtd`` exists but holds no images (it is left alone).
        ConnectionError / ChecksumError / OSError: see :func:`adlearn.data.download_file`.
    """
    root = Path(root).expanduser() if root is not None else default_data_root()
    images = root / "dtd" / "images"
    if images.is_dir() and dtd_image_paths(images):
        return root
    if (root / "dtd").exists():
        raise FileExistsError(
            f"{root / 'dtd'} exists but holds no DTD images under {images}; adlearn does not touch it: "
            "move it away and call download_dtd again."
        )
    archive = root / "dtd-r1.0.1.tar.gz"
    had_archive = archive.exists()
    download_file(DTD_URL, archive, sha256=DTD_SHA256, progress=progress, timeout=timeout)
    extract_archive(archive, root)  # the archive's top folder is dtd/
    if not keep_archive and not had_archive:
        archive.unlink()
    return root


def dtd_image_paths(images_dir: str | Path) -> list[Path]:
    """Sorted image files in ``images_dir/<class>/``."""
    images_dir = Path(images_dir)
    return sorted(
        path for path in images_dir.glob("*/*") if path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file()
    )


def find_dtd_images(root: str | Path) -> Path | None:
    """The ``images`` folder of DTD under ``root``: ``root/dtd/images``, ``root/images`` or ``root`` itself.

    Returns:
        The first of those that exists as a folder, or ``None``.
    """
    root = Path(root).expanduser()
    for candidate in (root / "dtd" / "images", root / "images"):
        if candidate.is_dir():
            return candidate
    if root.is_dir() and any(child.is_dir() for child in root.iterdir()) and dtd_image_paths(root):
        return root
    return None


def _read_rgb(path: Path, image_size: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read the texture image {path}: not an image file, or damaged.")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    # As DRÆM's loader: resize to a square, whatever the aspect ratio.
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) > image_size else cv2.INTER_LINEAR
    return cv2.resize(image, (image_size, image_size), interpolation=interpolation)


def _to_tensor(arrays: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, S, S]
    return stacked if dtype == torch.uint8 else stacked.to(dtype) / 255.0


def load_texture_images(
    root: str | Path | None = None,
    image_size: int = 256,
    count: int | None = None,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    fallback: bool = True,
    verbose: bool = True,
    grey: bool = False,
) -> torch.Tensor:
    """Anomaly-source textures as ``[N, 3, image_size, image_size]``, from DTD or the offline stand-in.

    Args:
        root: data root holding ``dtd/images/<class>/*.jpg`` (also accepted: the
            ``dtd`` folder or the ``images`` folder itself); default
            :func:`adlearn.data.default_data_root`, then a local copy
            (``find_local_copy("dtd")``, e.g. through ``$ADLEARN_LOCAL_DATA``).
        image_size: side of the square textures (images are resized, as DRÆM does).
        count: how many; a random subset when DTD has more (default: all of DTD,
            or 48 stand-in textures).
        generator: random source for the subset and the stand-in (default: ``seed``).
        seed: used when no generator is given (default 0), so loading is repeatable.
        dtype: ``torch.float32`` (values in ``[0, 1]``) or ``torch.uint8`` (4x less memory;
            the anomaly makers accept both).
        fallback: use the stand-in when DTD is missing; with ``False`` a missing DTD is an error.
        verbose: print where the textures came from.
        grey: return them grey (:func:`grey_textures`), as anomaly sources for grey products.

    Raises:
        ValueError: the DTD images folder exists but is empty, or bad ``image_size``/``count``.
        FileNotFoundError: no DTD and ``fallback=False``.
        OSError: an unreadable image file (its path is named).
    """
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int of at least 8 pixels, got {image_size!r}.")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a positive int or None, got {count!r}.")
    if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8):
        raise ValueError(f"dtype must be a float dtype or torch.uint8, got {dtype}.")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    searched = Path(root).expanduser() if root is not None else default_data_root()
    images_dir = find_dtd_images(searched)
    if images_dir is None and root is None:  # the default also looks for local copies ($ADLEARN_LOCAL_DATA)
        local = find_local_copy("dtd")
        images_dir = find_dtd_images(local) if local is not None else None
    if images_dir is not None:
        paths = dtd_image_paths(images_dir)
        if not paths:
            raise ValueError(
                f"the texture folder {images_dir} holds no images; expected DTD's layout "
                f"{images_dir}/<class>/*.jpg (download it with adlearn.data.textures.download_dtd)."
            )
        if count is not None and count < len(paths):
            chosen = torch.randperm(len(paths), generator=generator)[:count].sort().values.tolist()
            paths = [paths[i] for i in chosen]
        if verbose:
            classes = sorted({path.parent.name for path in paths})
            print(f"anomaly-source textures: {len(paths)} DTD images of {len(classes)} classes "
                  f"({', '.join(classes)}) from {display_path(images_dir)}")
        textures = _to_tensor([_read_rgb(path, image_size) for path in paths], dtype)
        return grey_textures(textures) if grey else textures
    if not fallback:
        raise FileNotFoundError(
            f"no DTD textures under {searched} (looked for {searched / 'dtd' / 'images'}); "
            "download them with adlearn.data.textures.download_dtd(root) or pass fallback=True."
        )
    count = 48 if count is None else count
    fallback_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    if verbose:
        print(
            f"anomaly-source textures: DTD not found under {display_path(searched)}; using {count} offline stand-in textures "
            "(scikit-image photographs and drawn patterns). Download DTD with "
            "adlearn.data.textures.download_dtd() to train as the papers do."
        )
    textures = _to_tensor(list(_fallback_arrays(count, image_size, fallback_seed)), dtype)
    return grey_textures(textures) if grey else textures


def load_image_folder(root: str | Path, image_size: int, count: int | None = None, *, seed: int = 0) -> torch.Tensor:
    """Every image under ``root`` (any depth: an ImageNet or Imagenette folder), resized square: uint8 ``[N, 3, S, S]``.

    ``count`` picks a seeded random subset. Raises ``FileNotFoundError`` for a
    missing folder and ``ValueError`` for one without images.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}; give a folder of natural images (e.g. ImageNet's or "
                                "Imagenette's train folder), or None to use the DTD copy.")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"{root} holds no images ({', '.join(_IMAGE_SUFFIXES)} files, at any depth).")
    if count is not None and count < len(paths):
        chosen = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:count].sort().values
        paths = [paths[i] for i in chosen.tolist()]
    return _to_tensor([_read_rgb(path, image_size) for path in paths], torch.uint8)


def load_natural_images(root: str | Path | None, image_size: int, count: int | None = None, *, seed: int = 0,
                        verbose: bool = True) -> tuple[torch.Tensor, str]:
    """Natural images (uint8 ``[N, 3, S, S]``) and where they came from, in words.

    ``root``: a folder of images (:func:`load_image_folder`); ``None``: the DTD
    copy, else the offline stand-in (:func:`load_texture_images`). EfficientAD
    distils its teacher on them and uses them as the student's penalty images,
    where the paper uses ImageNet.
    """
    if root is not None:
        images = load_image_folder(root, image_size, count, seed=seed)
        source = f"{images.shape[0]} images from {display_path(Path(root).expanduser())}"
        if verbose:
            print(f"natural images: {source}")
        return images, source
    images = load_texture_images(None, image_size=image_size, count=count, seed=seed, dtype=torch.uint8,
                                 verbose=verbose)
    found = natural_image_kind() == "dtd"
    source = f"{images.shape[0]} DTD images" if found else f"{images.shape[0]} offline stand-in textures"
    return images, source


def natural_image_kind() -> str:
    """Which natural images :func:`load_natural_images` reads without a folder: ``"dtd"`` (a copy is found) or ``"stand-in"``."""
    found = find_local_copy("dtd") is not None or find_dtd_images(default_data_root()) is not None
    return "dtd" if found else "stand-in"


def grey_textures(textures: torch.Tensor) -> torch.Tensor:
    """``textures`` ``[N, 3, H, W]`` (float or uint8) turned grey: ITU-R 601 luma in all three channels."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    luma = (textures.float() * weights).sum(dim=1, keepdim=True)
    if textures.dtype == torch.uint8:
        luma = luma.round().clamp(0, 255)
    return luma.to(textures.dtype).expand(-1, 3, -1, -1).contiguous()


def fallback_textures(count: int = 48, image_size: int = 256, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The offline stand-in: ``count`` textures, alternating photograph crops and drawn patterns."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}.")
    return _to_tensor(list(_fallback_arrays(count, image_size, seed)), dtype)


# --------------------------------------------------------------------------- the stand-in


@functools.lru_cache(maxsize=None)
def _photograph(name: str) -> np.ndarray:
    """A bundled scikit-image photograph as uint8 RGB (grey ones repeated to 3 channels)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) - image.min()) / max(np.ptp(image), 1e-9)).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """One HSV colour (each in [0, 1]) as RGB in [0, 255]."""
    return 255 * np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


def _colourise(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map a grey image in [0, 1] to a ramp between a dark and a light colour of one muted hue.

    Most DTD photographs are natural materials: their colours vary mostly in
    brightness, with a little saturation around one hue. The stand-in follows
    that. With vivid random colours (the first stand-in) a pasted patch on a
    grey product can be told apart by its colour alone, an easier task than
    DTD sets and one no real defect teaches.
    """
    hue = rng.uniform(0, 1)
    dark_value = rng.uniform(0.0, 0.55)
    light_value = rng.uniform(dark_value + 0.15, 1.0)
    # saturation rarely above 0.3: Beta(1.2, 3) has mean 0.29, scaled by 0.6
    dark = _hsv_to_rgb(hue, 0.6 * rng.beta(1.2, 3.0), dark_value)
    light = _hsv_to_rgb(hue + rng.normal(0, 0.05), 0.6 * rng.beta(1.2, 3.0), light_value)
    if rng.random() < 0.5:  # bright patterns on dark ground as often as the reverse
        dark, light = light, dark
    return grey[..., None] * light + (1 - grey[..., None]) * dark


def _photo_crop(index: int, size: int, rng: np.random.Generator) -> np.ndarray:
    photo = _photograph(FALLBACK_PHOTOGRAPHS[index % len(FALLBACK_PHOTOGRAPHS)])
    height, width = photo.shape[:2]
    side = int(rng.uniform(0.3, 0.9) * min(height, width))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = cv2.resize(photo[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if np.ptp(crop.astype(np.int16), axis=2).mean() < 4:  # a grey photograph: give it colours
        crop = _colourise(crop[..., 0].astype(np.float64) / 255, rng)
    return np.clip(crop, 0, 255).astype(np.uint8)


def _pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) / size
    angle = rng.uniform(0, np.pi)
    along = rows * np.cos(angle) + cols * np.sin(angle)
    across = -rows * np.sin(angle) + cols * np.cos(angle)
    frequency = rng.uniform(4, 20)
    if kind == "banded":
        grey = (np.sin(2 * np.pi * frequency * along) > rng.uniform(-0.5, 0.5)).astype(np.float64)
    elif kind == "chequered":
        grey = ((np.floor(frequency * along) + np.floor(frequency * across)) % 2).astype(np.float64)
    elif kind == "dotted":
        cell_along, cell_across = (frequency * along) % 1 - 0.5, (frequency * across) % 1 - 0.5
        grey = (np.hypot(cell_along, cell_across) < rng.uniform(0.15, 0.4)).astype(np.float64)
    elif kind == "wavy":
        grey = 0.5 + 0.25 * (np.sin(2 * np.pi * frequency * along + 3 * np.sin(2 * np.pi * 3 * across)) + np.sin(2 * np.pi * frequency * across))
    elif kind == "marbled":
        from adlearn.simulation.perlin import perlin_noise_np

        turbulence = sum(0.5**o * np.abs(perlin_noise_np((size, size), (2 * 2**o, 2 * 2**o), rng=rng)) for o in range(4))
        grey = 0.5 + 0.5 * np.sin(2 * np.pi * (frequency / 4) * along + 6 * turbulence)
    elif kind == "cellular":
        seeds = rng.uniform(0, 1, size=(int(frequency * 2), 2))
        distances = np.sqrt((rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2)
        nearest = np.sort(distances, axis=-1)
        grey = np.clip((nearest[..., 1] - nearest[..., 0]) * frequency, 0, 1)
    else:  # pragma: no cover - FALLBACK_PATTERNS lists every kind
        raise ValueError(f"unknown pattern {kind!r}")
    texture = _colourise(np.clip(grey, 0, 1), rng) + rng.normal(0, 6, size=(size, size, 3))  # a little grain
    return np.clip(texture, 0, 255).astype(np.uint8)


def _fallback_arrays(count: int, size: int, seed: int) -> list[np.ndarray]:
    arrays = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        if index % 2 == 0:
            arrays.append(_photo_crop(index // 2, size, rng))
        else:
            arrays.append(_pattern(FALLBACK_PATTERNS[(index // 2) % len(FALLBACK_PATTERNS)], size, rng))
    return arrays
