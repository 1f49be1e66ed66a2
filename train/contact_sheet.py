"""Before/after contact sheet of real photographs: input, reference mask, old model's mask, new model's mask.

    usage: python train/contact_sheet.py --old OLD_MODEL --new NEW_MODEL --dataset runs/real-validation \
        --output docs/demo-model-real-photos.png
A model is a save_pretrained folder, or a train.py checkpoint folder (checkpoint-N, weights only; its
config is taken from --config_from). Per-image MAE of each model is printed on its mask.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from u2net_hub import U2Net


def load_model(path: Path, config_from: Path | None) -> U2Net:
    """A save_pretrained folder, or a checkpoint-N folder of train.py (model.safetensors without config)."""
    if (path / "config.json").exists():
        return U2Net.from_pretrained(path)
    from safetensors.torch import load_file

    if config_from is None:
        raise SystemExit(f"error: {path} has no config.json; give --config_from a folder with the same config")
    model = U2Net.from_pretrained(config_from)
    model.load_state_dict(load_file(path / "model.safetensors"))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, required=True)
    parser.add_argument("--config_from", type=Path, default=None)
    parser.add_argument("--dataset", type=Path, default=Path("runs/real-validation"))
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tile", type=int, default=150)
    args = parser.parse_args()
    old, new = load_model(args.old, args.config_from), load_model(args.new, args.config_from)
    names = sorted(p.stem for p in (args.dataset / "images").glob("*.png"))
    tile = args.tile
    header = 18
    sheet = Image.new("RGB", (4 * tile, header + len(names) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(("photo", "reference mask", "old model", "new model")):
        draw.text((col * tile + 4, 3), title, fill="black")
    for row, name in enumerate(names):
        image = Image.open(args.dataset / "images" / f"{name}.png").convert("RGB")
        truth = np.asarray(Image.open(args.dataset / "masks" / f"{name}.png").convert("L"), np.float32) / 255
        cells = [image, Image.fromarray((truth * 255).astype(np.uint8))]
        errors = []
        for model in (old, new):
            probability = model.predict(image, sides=False).probability
            errors.append(float(np.abs(probability - truth).mean()))
            cells.append(Image.fromarray((probability * 255 + 0.5).astype(np.uint8)))
        y = header + row * tile
        for col, cell in enumerate(cells):
            cell = cell.convert("RGB")
            cell.thumbnail((tile - 4, tile - 4))
            sheet.paste(cell, (col * tile + 2, y + 2))
        for col, error in zip((2, 3), errors):
            draw.text((col * tile + 6, y + tile - 16), f"MAE {error:.3f}", fill=(255, 60, 60))
        print(f"{name}: MAE old {errors[0]:.3f}, new {errors[1]:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet = sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(args.output, optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
