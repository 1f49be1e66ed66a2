"""Photographed people, animals, objects and vehicles cut out by hand, and photographs of places, from Scratch 1.4.

Why: the demo model fails most on people in real photos, and its composites had only drawn people; the media
library of Debian's `scratch` package (Scratch 1.4, downloaded with `apt-get download`, never installed) holds
about sixty photographs of real people cut out by hand (dancers, players, people standing, sitting, jumping), a
few photographed animals, objects and vehicles, and photographs of streets, halls, parks and courts, exactly
the places where people are photographed. The costumes are GIF or PNG with transparency; only the photographed
ones listed below are kept (the others are drawings). The alpha is the costume's own: binary for GIFs, so the
composites' edge softening matters for these. One cut-out in ten (by a hash of its name) goes to
OUT/cutouts/validation and is never trained on. None of this comes from the U-2-Net repository.
    usage: python train/fetch_scratch_media.py --out runs/scratch [--cache runs/photo-debs]
writes OUT/cutouts/{train,validation}/*.png (RGBA, at most 384 px) and OUT/photos/train/*.jpg.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debian_package import unpack  # noqa: E402

PACKAGE = "scratch"
MEDIA = "usr/share/scratch/Media"
MAX_SIDE = 384
# Photographed costumes (by looking at each one; the rest of the library is drawn).
PEOPLE = """amon1 anjuli-1 anjuli-2 anjuli-3 anjuli-4 anjuli-5 anna-1 anna-2 anna-3 breakdancer1 breakdancer2
breakdancer3 calvrett calvrett-jumping calvrett-thinking cassy-chillin cassy-dancing-1 cassy-dancing-2
cassy-dancing-3 cassy-dancing-4 cassy-jumping-1 cassy-jumping-2 cassy-phone-1 cassy-sitting-1 cassy-standing-1
chamak1 chamak2 dan1 dan2 dan3 dan4 dan6 ed football-run football-stand jay jodi1 jodi2 lee-fan mako-laughing
mako-screaming mako-stop marissa marissa-crouching marissa-sitting nathan nina1 paul1 referee1 referee2
ribbon-dancer sam thai-dancer thai-dancer2""".split()
THINGS = """bird-flying buffalo1 cow1 elephant giraffe1-a giraffe1-b grasshopper2 insect1-a insect1-b insect2
squirrel1 cheesy-puffs fire-hydrant flower-vase fortune_cookie fruit_platter lamp lego marble-building palmtree
tennisball trampoline umbrella airplane bike bus car-blue car-bug car-cow sail-boat street-cleaner-mit tug-boat
yacht""".split()
# Photographs of places without a subject of their own (the drawn backdrops and those centred on one thing,
# a flower, a rock, a tree, are left out).
BACKGROUNDS = """clothing-store hall kitchen the-movies-inside beach-malibu canyon forest grand-canyon gravel-desert
hill lake moon pathway water-and-rocks wave all-sports-mural atom-playground bench-with-view berkeley-mural
boardwalk brick-wall-and-stairs brick-wall1 brick-wall2 building-at-mit building-fireproof castle
city-with-water city-with-water2 driveway hallway_outdoors hay_field houses mansion parking-ramp pool route66
silos the-movies train-tracks1 train-tracks2 village wooden-house baseball-field basketball-court1-a
basketball-court1-b""".split()


def find(folder: Path, stem: str) -> Path:
    matches = [p for p in folder.glob(f"*/{stem}.*") if p.suffix.lower() in {".gif", ".png", ".jpg"}]
    if not matches:
        raise SystemExit(f"error: {stem} is not in {folder} (another version of the package?)")
    return matches[0]


def cutout(path: Path) -> Image.Image:
    """The costume as RGBA, cropped to its visible pixels, at most MAX_SIDE."""
    image = Image.open(path).convert("RGBA")
    box = image.getchannel("A").point(lambda a: 255 if a > 127 else 0).getbbox()
    image = image.crop(box)
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/scratch"))
    parser.add_argument("--cache", type=Path, default=Path("runs/photo-debs"))
    args = parser.parse_args(argv)
    media = unpack(PACKAGE, args.cache, args.cache / "scratch-root", MEDIA)
    counts = {"train": 0, "validation": 0, "photos": 0, "people": 0}
    for pool in ("train", "validation"):
        (args.out / "cutouts" / pool).mkdir(parents=True, exist_ok=True)
    for stem in PEOPLE + THINGS:
        pool = "validation" if int(hashlib.md5(stem.encode()).hexdigest(), 16) % 10 == 0 else "train"
        prefix = "person" if stem in PEOPLE else "thing"
        cutout(find(media / "Costumes", stem)).save(args.out / "cutouts" / pool / f"scratch-{prefix}-{stem}.png")
        counts[pool] += 1
        counts["people"] += pool == "train" and stem in PEOPLE
    (args.out / "photos" / "train").mkdir(parents=True, exist_ok=True)
    for stem in BACKGROUNDS:
        Image.open(find(media / "Backgrounds", stem)).convert("RGB").save(
            args.out / "photos" / "train" / f"scratch-{stem}.jpg", quality=95)
        counts["photos"] += 1
    print(f"{counts['train']} cut-outs for training ({counts['people']} of them people), "
          f"{counts['validation']} held out, {counts['photos']} photographs of places, in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
