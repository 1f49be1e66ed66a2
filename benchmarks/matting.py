"""Alpha matting quality, time and memory on generated hair/fur scenes with exact fractional alpha.

Three ways to turn the bundled model's map into an alpha, on the same scenes
(benchmarks/hair_scenes.py: strands over real scikit-image textures, exact
coverage by supersampling):

- ``plain``: the 8-bit mask itself (``Prediction.mask``), what ``--format rgba`` writes;
- ``rembg``: rembg's ``alpha_matting_cutout`` re-created from its documented
  behaviour (rembg is not installed): trimap = mask > 240 foreground,
  mask < 10 background, each eroded by a 10x10 square; pymatting's
  ``estimate_alpha_cf`` on the whole image, then ``estimate_foreground_ml``;
- ``ours``: ``u2net_hub.matting.matte`` (what ``--alpha-matting`` runs).

Each method runs in a fresh subprocess on the saved photo and map, so its
time and peak RSS (``VmHWM``) are its own: they include Python, numpy,
scipy, pymatting and reading the PNG, not the network; pymatting's numba
kernels are loaded by an untimed call on a tiny image first (a one-off per
process, printed as ``first_call_s``) (run beforehand, in
this process). Errors are scored over the band where the true alpha is
fractional (0 < alpha < 1) and over the whole image.

Examples::

    python benchmarks/matting.py                       # 10 held-out scenes (seeds 2000+) at 800x600, 1 at 4000x3000
    python benchmarks/matting.py --seed 0              # the same on the tuning scenes (seeds 0+)
    python benchmarks/matting.py --scenes 4 --large 1 --rembg-cap 120
    python benchmarks/matting.py --sizes 800x600 --methods plain,ours
    python benchmarks/matting.py --model runs/ft-teacher --sizes 800x600 --methods plain   # another model's map
    python benchmarks/matting.py --sizes 800x600 --methods ours --option colour_model=true --option fill_holes=false
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import cpu_name, peak_rss_mb  # noqa: E402

METHODS = ("plain", "rembg", "ours")


# ------------------------------------------------------------------ workers


def rembg_style(image: np.ndarray, mask: np.ndarray, foreground_threshold=240, background_threshold=10, erode_size=10):
    """rembg's alpha matting as documented: fixed-threshold trimap, erosion, closed-form alpha, ML foreground."""
    from pymatting import estimate_alpha_cf, estimate_foreground_ml
    from scipy.ndimage import binary_erosion

    is_foreground = mask > foreground_threshold
    is_background = mask < background_threshold
    structure = np.ones((erode_size, erode_size), dtype=np.uint8) if erode_size > 0 else None
    is_foreground = binary_erosion(is_foreground, structure=structure)
    is_background = binary_erosion(is_background, structure=structure, border_value=1)
    trimap = np.full(mask.shape, 128, dtype=np.uint8)
    trimap[is_foreground] = 255
    trimap[is_background] = 0
    image01 = image / 255.0
    alpha = estimate_alpha_cf(image01, trimap / 255.0)
    foreground = estimate_foreground_ml(image01, alpha)
    return alpha.astype(np.float32), np.clip(foreground * 255, 0, 255).astype(np.uint8)


def worker(method: str, folder: Path, network_size: int, options: dict) -> None:
    from PIL import Image

    image = np.asarray(Image.open(folder / "image.png").convert("RGB"))
    probability = np.load(folder / "probability.npy")
    warm_started = time.perf_counter()
    if method != "plain":  # pymatting's numba kernels load (or compile) on first use: once per process, not timed
        tiny = np.zeros((48, 64, 3), np.uint8)
        tiny[12:36, 16:48] = 200
        blob = np.zeros((48, 64), np.float32)
        blob[10:38, 14:50] = 0.5
        blob[16:32, 22:42] = 1.0
        if method == "rembg":
            rembg_style(tiny, (blob * 255).astype(np.uint8), erode_size=2)
        else:
            from u2net_hub.matting import MattingOptions, matte

            matte(tiny, blob, MattingOptions(network_size=16), progress=False)
    warm_seconds = time.perf_counter() - warm_started
    started = time.perf_counter()
    if method == "plain":
        alpha = np.clip(probability * 255 + 0.5, 0, 255).astype(np.uint8).astype(np.float32) / 255
    elif method == "rembg":
        mask = np.clip(probability * 255 + 0.5, 0, 255).astype(np.uint8)
        alpha, _ = rembg_style(image, mask)
    else:
        from u2net_hub.matting import MattingOptions, matte

        alpha, _ = matte(image, probability, MattingOptions(network_size=network_size, **options), progress=False)
    seconds = time.perf_counter() - started
    np.save(folder / f"alpha-{method}.npy", alpha.astype(np.float32))
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "first_call_s": warm_seconds}))


def run_worker(method: str, folder: Path, network_size: int, cap_s: float, options: dict) -> dict | None:
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", method, str(folder), str(network_size), json.dumps(options)],
            capture_output=True, text=True, timeout=cap_s,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:  # a method that fails (pymatting's preconditioner can) is a result, not a crash
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1][:300] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def matting_options(parser: argparse.ArgumentParser, pairs: list[str]) -> dict:
    """``--option KEY=VALUE`` pairs as MattingOptions fields, checked here so a typo is a usage error."""
    from u2net_hub.matting import MattingError, MattingOptions

    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            parser.error(f"--option wants KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            parser.error(f"--option {key}: {text!r} is not a number, true or false")
    try:
        MattingOptions(**options)
    except (MattingError, TypeError) as error:
        parser.error(f"--option: {error}")
    return options


# ------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=10, help="scenes at the small size (default 10)")
    parser.add_argument("--large", type=int, default=1, help="scenes at the large size (default 1)")
    parser.add_argument("--sizes", default="800x600,4000x3000")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--rembg-cap", type=float, default=300.0, help="seconds before rembg-style is stopped")
    parser.add_argument("--cap", type=float, default=600.0, help="seconds before any other method is stopped")
    parser.add_argument("--seed", type=int, default=2000,
                        help="first scene seed (default 2000: held out; the method was tuned on seeds 0-999)")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id whose map is matted (default: the bundled demo model)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a MattingOptions field for 'ours' (repeatable), e.g. colour_model=true, hole_share=0.7")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), int(args.worker[2]), json.loads(args.worker[3]))
        return
    options = matting_options(parser, args.option)

    from PIL import Image

    from hair_scenes import render
    from u2net_hub import DEMO_MODEL, U2Net

    model = U2Net.from_pretrained(args.model or DEMO_MODEL)
    network_size = model.preprocessing.input_size
    model_name = args.model or "bundled demo"
    methods = args.methods.split(",")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"CPU: {cpu_name()}; model: {model_name} (input {network_size} px); methods in fresh subprocesses"
          + (f"; matting options {options}" if options else ""), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="u2net-matting-") as tmp:
        for index, (width, height) in enumerate(sizes):
            count = args.scenes if index == 0 else args.large
            for k in range(count):
                seed = args.seed + k
                scene = render(seed, width, height)
                folder = Path(tmp) / f"{width}x{height}-{seed}"
                folder.mkdir()
                Image.fromarray(scene.image).save(folder / "image.png")
                prediction = model.predict(Image.fromarray(scene.image), sides=False)
                np.save(folder / "probability.npy", prediction.probability)
                truth = scene.alpha
                band = (truth > 0) & (truth < 1)
                del scene, prediction
                for method in methods:
                    cap = args.rembg_cap if method == "rembg" else args.cap
                    result = run_worker(method, folder, network_size, cap, options)
                    row = {"size": f"{width}x{height}", "seed": seed, "method": method}
                    if result is None:
                        row.update(timeout=cap)
                    elif "error" in result:
                        row.update(result)
                    else:
                        alpha = np.load(folder / f"alpha-{method}.npy")
                        error = np.abs(alpha - truth)
                        row.update(band=float(error[band].mean()), all=float(error.mean()), **result)
                        del alpha, error
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                del truth, band
                for file in folder.iterdir():
                    file.unlink()

    print()
    print("| size | method | band MAE (0<α<1) | whole-image MAE | time per image | peak RSS |")
    print("|---|---|---|---|---|---|")
    for size in dict.fromkeys(r["size"] for r in rows):
        plain_band = None
        for method in methods:
            mine = [r for r in rows if r["size"] == size and r["method"] == method]
            done = [r for r in mine if "band" in r]
            if not done:
                failed = [r["error"] for r in mine if "error" in r]
                if failed:
                    print(f"| {size} | {method} | failed: {failed[0][:120]} | | | |")
                else:
                    print(f"| {size} | {method} | did not finish in {mine[0]['timeout'] if mine else 0:.0f} s | | | |")
                continue
            band = np.mean([r["band"] for r in done])
            plain_band = band if method == "plain" else plain_band
            change = "" if method == "plain" or plain_band is None else f" ({(band / plain_band - 1) * 100:+.0f}% vs plain)"
            unfinished = f", {len(mine) - len(done)} of {len(mine)} did not finish or failed" if len(done) < len(mine) else ""
            print(f"| {size} | {method} | {band:.3f}{change} | {np.mean([r['all'] for r in done]):.4f} | "
                  f"{np.mean([r['seconds'] for r in done]):.1f} s{unfinished} | "
                  f"{max(r['peak_mb'] for r in done):.0f} MB |")
    print(f"\n{len([r for r in rows if r['method'] == methods[0]])} scenes; CPU: {cpu_name()}")


if __name__ == "__main__":
    main()
