"""Write a folder of ordinary-sized real photos for the folder benchmark (nothing large is committed).

The photographs are scikit-image's bundled data images (they ship with the wheel): each is cropped to a
camera aspect ratio and resized to a common photo size (up to 3000x2000, both orientations), with a little
sensor-like noise so the JPEGs cost what camera JPEGs cost to decode. A few are PNGs, one is greyscale, two
carry an EXIF orientation (stored sideways, shown upright). Deterministic: the same files every run.

    python benchmarks/photos.py OUT_DIR [--count 36]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "camera")
#: (width, height): phone and camera sizes, portrait and landscape, down to web sizes.
SIZES = (
    (3000, 2000), (2000, 3000), (2400, 1600), (1920, 1080), (1600, 1200), (2048, 1536),
    (1080, 1920), (1280, 960), (1024, 768), (1200, 800), (800, 600), (640, 480),
)


def _crop_to_aspect(image: Image.Image, width: int, height: int) -> Image.Image:
    w, h = image.size
    target = width / height
    if w / h > target:
        new_w = round(h * target)
        left = (w - new_w) // 2
        return image.crop((left, 0, left + new_w, h))
    new_h = round(w / target)
    top = (h - new_h) // 2
    return image.crop((0, top, w, top + new_h))


def make_photos(folder: Path, count: int = 36, seed: int = 0) -> list[Path]:
    """Write `count` photos into `folder` (skipping files already there) and return their paths in name order."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        name = SOURCES[index % len(SOURCES)]
        width, height = SIZES[index % len(SIZES)]
        suffix = ".png" if index % 12 == 5 else ".jpg"
        path = folder / f"photo_{index:03d}_{name}_{width}x{height}{suffix}"
        paths.append(path)
        if path.exists():
            continue
        source = Image.fromarray(np.asarray(getattr(data, name)())[..., :3] if name != "camera" else data.camera())
        photo = _crop_to_aspect(source, width, height).resize((width, height), Image.Resampling.LANCZOS)
        array = np.asarray(photo, dtype=np.float32)
        array = array + rng.normal(0.0, 3.0, array.shape[:2] + ((1,) if array.ndim == 3 else ())).astype(np.float32)
        photo = Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8))
        exif = None
        if index in (7, 20):  # stored sideways with an EXIF orientation, as phones do
            photo = photo.transpose(Image.Transpose.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6 if index == 7 else 8
            if index == 20:
                photo = photo.transpose(Image.Transpose.ROTATE_180)
        options = {"quality": 90} if suffix == ".jpg" else {}
        if exif is not None:
            options["exif"] = exif.tobytes()
        photo.save(path, **options)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=36)
    args = parser.parse_args()
    paths = make_photos(args.folder, args.count)
    total = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{len(paths)} photos in {args.folder} ({total:.0f} MB)")


if __name__ == "__main__":
    main()
