"""Hairy and furry objects over real photos (images/ + masks/ with soft alpha masks), for the demo model's fine-tune.

The objects are the matting benchmark's (benchmarks/hair_scenes.py: a body with hundreds of thin strands, exact
coverage), but the backgrounds are the training photos (Debian wallpapers, GCompris' photos but the held-out
ones), never the scikit-image textures the benchmark composites over, and the seeds start at 10,000,000, far
from the benchmark's. Why: the model marked the backdrop's own subject (a cup, a cat's eye) as salient beside
the object in front of it, which no matting can undo; these scenes teach that the object in front is the subject.

Each scene is rendered at 400x300 (4x4 sub-samples a pixel) and a random 60-100 % window of it is resized to
``--size`` square, so the object's place and scale vary; the mask is the exact alpha, 0-255.

    python train/make_hair_composites.py --photos runs/photos/train runs/gcompris \\
        --exclude runs/gcompris-labelled/validation/images --out runs/ft-hair --count 2000 --workers 2
    python train/make_hair_composites.py --photos runs/photos/train --out runs/ft-hair-w --count 2000 \
        --exclude_backgrounds FreshFlower TwoWings ColorfulCups EveningGlow      # wallpapers without a subject

Scene i is the same image whatever ``--workers`` renders it.
"""

from __future__ import annotations

import argparse
import sys
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from hair_scenes import render  # noqa: E402
from make_synthetic_split import write_folder  # noqa: E402  (the images/ + masks/ folder, workers, progress)

FIRST_SEED = 10_000_000
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@lru_cache(maxsize=64)
def _photo(path: str) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    image.thumbnail((1024, 1024))  # a backdrop is cropped and resized to 400x300: no need for more
    return np.asarray(image)


def write_scene(index: int, photos: list[str], out: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng([seed, index])
    scene = render(FIRST_SEED + seed * 100_000 + index, 400, 300, supersample=4,
                   backdrop=_photo(photos[rng.integers(len(photos))]))
    share = rng.uniform(0.6, 1.0, 2)
    w, h = int(400 * share[0]), int(300 * share[1])
    x, y = int(rng.integers(0, 400 - w + 1)), int(rng.integers(0, 300 - h + 1))
    box = (x, y, x + w, y + h)
    Image.fromarray(scene.image).resize((size, size), Image.Resampling.BICUBIC, box=box).save(
        out / "images" / f"{index:05d}.jpg", quality=95)
    alpha = Image.fromarray(scene.alpha, mode="F").resize((size, size), Image.Resampling.BILINEAR, box=box)
    mask = np.clip(np.asarray(alpha) * 255 + 0.5, 0, 255).astype(np.uint8)
    Image.fromarray(mask).save(out / "masks" / f"{index:05d}.png")


def list_photos(folders: list[Path], excluded: list[Path], names: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The backdrop photos in ``folders``, but those whose stem is in an ``excluded`` folder or in ``names``."""
    skip = {p.stem for folder in excluded for p in folder.iterdir()} | set(names)
    return sorted(str(p) for folder in folders for p in folder.iterdir()
                  if p.suffix.lower() in PHOTO_SUFFIXES and p.stem not in skip)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, nargs="+", required=True, help="folders of backdrop photos")
    parser.add_argument("--exclude", type=Path, nargs="*", default=[],
                        help="folders whose file stems are skipped among the photos (held-out images)")
    parser.add_argument("--exclude_backgrounds", nargs="*", default=[], metavar="NAME",
                        help="photos (stems) never used as backgrounds, e.g. those full of objects")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0, help="which series of scenes (0-99)")
    parser.add_argument("--size", type=int, default=320, help="the scenes' side in pixels")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the scenes")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    args = parser.parse_args(argv)
    if args.count < 1 or args.count > 100_000 or args.size < 16 or args.workers < 1 or not 0 <= args.seed < 100:
        parser.error("--count must be 1-100000, --size at least 16, --workers at least 1 and --seed 0-99")
    for folder in args.photos + args.exclude:
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    unknown = set(args.exclude_backgrounds) - {p.stem for folder in args.photos for p in folder.iterdir()}
    if unknown:
        parser.error(f"--exclude_backgrounds: no such photo in {', '.join(map(str, args.photos))}: {sorted(unknown)}")
    photos = list_photos(args.photos, args.exclude, args.exclude_backgrounds)
    if not photos:
        parser.error(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {', '.join(map(str, args.photos))}")
    write_folder(args.out, partial(write_scene, photos=photos, out=args.out, size=args.size, seed=args.seed),
                 args.count, args.workers, args.progress)
    print(f"wrote {args.count} scenes of {args.size}x{args.size} over {len(photos)} photos to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
