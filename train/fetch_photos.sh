#!/usr/bin/env bash
# Real photographs for the demo model, from Debian wallpaper packages and the photos of KDE's jigsaw puzzles
# (palapeli-data; downloaded, unpacked in a cache, never installed), split into a TRAINING pool (backgrounds
# and textures of the composites) and a VALIDATION pool (photos with a salient subject, masked by
# train/make_real_validation.py). No photo is in both pools, and
# none comes from the U-2-Net repository. Each is stored at most 1024 px on its longer side.
#   usage: train/fetch_photos.sh [OUT_DIR]     (default runs/photos; needs apt-get and dpkg)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/photos}
CACHE=${CACHE:-runs/photo-debs}
mkdir -p "$CACHE" "$OUT/train" "$OUT/validation"
PACKAGES="mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-20.04 lomiri-wallpapers lomiri-wallpapers-16.04
          ukui-wallpapers gnome-backgrounds palapeli-data"
for package in $PACKAGES; do
  [ -f "$CACHE/.unpacked-$package" ] && continue
  ls "$CACHE/${package}"_*.deb >/dev/null 2>&1 || (cd "$CACHE" && apt-get download "$package")
  dpkg -x "$CACHE/${package}"_*.deb "$CACHE/root"
  touch "$CACHE/.unpacked-$package"
done
"$PY" - "$CACHE/root" "$OUT" <<'PYTHON'
import sys
from pathlib import Path
from PIL import Image

root, out = Path(sys.argv[1]), Path(sys.argv[2])
Image.MAX_IMAGE_PIXELS = None
mate = root / "usr/share/backgrounds/mate/nature"
plasma = root / "usr/share/wallpapers"
lomiri = root / "usr/share/backgrounds"
jigsaw = root / "usr/share/palapeli/collection"  # KDE's jigsaw puzzles: public-domain and GFDL photos
# Photographs only (the packages also hold drawings and renders, left out). No person or animal among the
# training ones beyond what a landscape holds; the salient subjects are kept for validation.
pools = {
    "train": [mate / f"{n}.jpg" for n in ("Blinds", "Dune", "GreenMeadow", "RainDrops", "Storm", "Wood",
                                           "TwoWings", "FreshFlower")]
    + [plasma / n / "contents/images/2560x1600.jpg" for n in ("BytheWater", "ColdRipple", "ColorfulCups",
                                                            "DarkestHour", "EveningGlow", "Grey", "Path",
                                                            "summer_1am")]
    + [plasma / "Volna/contents/images/5120x2880.jpg", lomiri / "Infinite-Sea_by_Aury88.jpg"]
    # Lomiri 16.04/20.04, UKUI and GNOME: landscapes, foliage, textures and abstract graphics without a subject
    # (the photos with one, a fig in a bowl, a bird, two dogs, are left out).
    + [lomiri / f"{n}.jpg" for n in ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "aitzgorri_by_Aitzol_Berasategi",
                                       "analogpattern_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
                                       "picosdeeuropa_by_Aitzol_Berasategi", "sunset_by_Aitzol_Berasategi",
                                       "rhythm", "string", "umang_by_Abhishek_Mudgal")]
    + [lomiri / f"{n}.png" for n in ("city", "desert", "fluent-color", "lomiri-default-background",
                                       "warty-final-ubuntu")]
    + [lomiri / f"gnome/{n}-{shade}.webp" for n in ("adwaita", "grid", "licorice", "truchet", "vnc", "wood")
       for shade in "ld"],
    "validation": [mate / f"{n}.jpg" for n in ("Garden", "LadyBird", "YellowFlower", "Aqua")]
    + [plasma / n / "contents/images/2560x1600.jpg" for n in ("FallenLeaf", "Kite", "OneStandsOut")]
    + [lomiri / "Kleiber_by_Lukas_Baubkus.jpg"]
    + [lomiri / f"{n}.jpg" for n in ("Picture_0B_by_freespace", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi")]
    + [jigsaw / f"{n}.jpg" for n in ("panther-chameleon-female", "castle-maintenon")],
}
for pool, files in pools.items():
    for path in files:
        name = path.parts[-4] if path.parent.name == "images" else path.stem
        if path.parent.name == "gnome":
            name = f"gnome-{name}"
        image = Image.open(path)
        image.draft("RGB", (2048, 2048))
        image = image.convert("RGB")
        image.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
        image.save(out / pool / f"{name.split('_by_')[0]}.jpg", quality=95)
    print(f"{pool}: {len(files)} photos in {out / pool}")
PYTHON
