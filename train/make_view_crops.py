"""Random views of photos: square crops at many scales and places, for a teacher to label one by one.

Why: fine-tuning the released tiny model on the demo mix (a third real photos labelled by the released model,
two thirds composites and synthetic scenes with exact masks), every further step took it further from the
released model on held-out real photos (maxF 0.892 after run D's 160 steps, 0.831 after 120 more, 0.810
after 240; docs/demo-model-journal.md, session 18), while the synthetic scenes did not improve. The few hundred real
photos, seen over and over, anchor it too weakly. Views multiply them: each crop is a new framing (a subject
cut by the border, a small subject in a wide view, a patch of background alone) and is labelled by the teacher
on the crop itself, since the mask of a crop is not the crop of the mask.

    python train/make_view_crops.py --photos runs/teach/gcompris/images --out runs/views/gcompris/images --per_photo 8
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from PIL import Image, ImageOps

from u2net_hub.processing import IMAGE_EXTENSIONS


def view_box(size: tuple[int, int], rng: random.Random, smallest: float = 0.45) -> tuple[int, int, int, int]:
    """A square crop whose side is ``smallest``-100 % of the photo's shorter side, anywhere in the photo."""
    width, height = size
    side = int(min(width, height) * rng.uniform(smallest, 1.0))
    x0 = rng.randint(0, width - side)
    y0 = rng.randint(0, height - side)
    return x0, y0, x0 + side, y0 + side


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True, help="a folder of photos (links are followed)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write the views to (JPEG)")
    parser.add_argument("--per_photo", type=int, default=8)
    parser.add_argument("--smallest", type=float, default=0.45, help="the smallest side, as a share of the shorter one")
    parser.add_argument("--size", type=int, default=320, help="the views are resized to this square (the network's input)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--whole", action="store_true",
                        help="write one view per photo, the whole photo resized to the square as the network's input "
                             "is (PNG; a distillation pool that decodes fast: 25 s a CPU step against 31 s)")
    args = parser.parse_args(argv)
    if not 0 < args.smallest <= 1:
        sys.exit("error: --smallest must lie in (0, 1]")

    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
        sys.exit(f"error: {args.photos} holds no photos")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in photos:
        rng = random.Random(f"{args.seed}-{path.stem}")
        with Image.open(path) as opened:
            photo = ImageOps.exif_transpose(opened).convert("RGB")
        if args.whole:
            # bilinear and lossless: the pixels the training transform's own resize gives
            photo.resize((args.size, args.size), Image.BILINEAR).save(args.out / f"{path.stem}.png")
            continue
        for index in range(args.per_photo):
            view = photo.crop(view_box(photo.size, rng, args.smallest)).resize((args.size, args.size), Image.BICUBIC)
            view.save(args.out / f"{path.stem}-v{index}.jpg", quality=92)
    count = len(photos) * (1 if args.whole else args.per_photo)
    print(f"wrote {count} views of {len(photos)} photos to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
