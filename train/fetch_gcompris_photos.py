"""Unlabelled real photographs with a subject, from GCompris' data package, for self-training the demo model.

Why: the demo model is weak on real photographs and no labelled salient-object set is reachable here, but
Debian's `gcompris-qt-data` (GPL-3+, downloaded with `apt-get download`, never installed) holds a few hundred
photographs of exactly what salient-object sets show: animals (the "erase" and "explore" activities), tools,
dishes and toys on a table, fish, monuments, musicians. They sit inside compiled Qt resource files (`*.rcc`),
stored as they were (JPEG, WebP, PNG), so this script cuts each encoded image out of the file by its signature
and keeps the photographs of the activities listed below (the others hold drawings, paintings or puzzles).
Duplicates (the monuments appear in two activities) are dropped by a small image hash. None of these photos is
in the real-photo validation set (train/make_real_validation.py) or comes from the U-2-Net repository.
    usage: python train/fetch_gcompris_photos.py --out runs/gcompris [--cache runs/photo-debs]
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debian_package import unpack  # noqa: E402

PACKAGE = "gcompris-qt-data"
# activity (rcc file) -> what its photographs show; all other activities hold drawings, paintings or shapes.
ACTIVITIES = {
    "erase": "wild animals, full HD",
    "explore_farm_animals": "farm animals",
    "explore_world_animals": "wild animals",
    "explore_world_music": "musicians and instruments",
    "categorization": "tools, dishes, toys, fish, windmills, monuments",
    "explore_monuments": "monuments",
}
MIN_SIDE = 200
MAX_SIDE = 640
SIGNATURES = {  # start of an encoded image -> how to find where it ends (PIL reads past the end harmlessly)
    "jpeg": re.compile(rb"\xff\xd8\xff"),
    "webp": re.compile(rb"RIFF....WEBP", re.S),
    "png": re.compile(rb"\x89PNG\r\n\x1a\n"),
}


def encoded_images(data: bytes):
    """Yield every image PIL can decode that starts at a known signature in ``data``."""
    for kind, signature in SIGNATURES.items():
        for match in signature.finditer(data):
            start = match.start()
            end = start + int.from_bytes(data[start + 4:start + 8], "little") + 8 if kind == "webp" else None
            try:
                image = Image.open(io.BytesIO(data[start:end]))
                image.load()
            except Exception:  # a signature by chance inside other data, or a truncated image
                continue
            yield image


def is_photo(image: Image.Image) -> bool:
    """Large enough, and opaque: the cut-out drawings of these packages carry transparency."""
    if min(image.size) < MIN_SIDE:
        return False
    if image.mode in ("RGBA", "LA", "P"):
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        if alpha.min() < 250:
            return False
    return True


def image_hash(image: Image.Image) -> bytes:
    small = np.asarray(image.convert("L").resize((12, 12), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.packbits(small > small.mean()).tobytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gcompris"))
    parser.add_argument("--cache", type=Path, default=Path("runs/photo-debs"),
                        help="where the .deb is downloaded and unpacked")
    args = parser.parse_args(argv)
    rcc_dir = unpack(PACKAGE, args.cache, args.cache / "root", "usr/share/gcompris-qt/rcc/erase.rcc").parent
    args.out.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()
    kept = 0
    for activity in ACTIVITIES:
        count = 0
        for image in encoded_images((rcc_dir / f"{activity}.rcc").read_bytes()):
            if not is_photo(image):
                continue
            key = image_hash(image)
            if key in seen:
                continue
            seen.add(key)
            photo = image.convert("RGB")
            photo.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            photo.save(args.out / f"{activity}-{count:03d}.jpg", quality=95)
            count += 1
        print(f"{activity}: {count} photos ({ACTIVITIES[activity]})")
        kept += count
    print(f"{kept} photos in {args.out}")
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
