"""Alpha matting: better edges than the plain mask on exact ground truth, no halo, bounded work, CLI end to end.

The scenes are drawn here, independently of the code under test: an object
with thin strands rendered at 8x and box-filtered (so the alpha is the exact
coverage), composited over a real texture that ships with scikit-image. The
"network" map is the ground truth seen at a low resolution (as a 64 px
network would see it) and brought back up, i.e. the blur matting is meant to undo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from u2net_hub import U2Net, matting, predict
from u2net_hub.processing import cutout

SS = 8  # supersampling of the test scenes


def _scene(width: int, height: int, colour=(220, 30, 30), background=None, strands: int = 60, seed: int = 0):
    """(photo uint8, exact alpha float32, blurry map float32) for a disc with hair."""
    rng = np.random.default_rng(seed)
    big = Image.new("L", (width * SS, height * SS), 0)
    draw = ImageDraw.Draw(big)
    cx, cy, r = width * SS / 2, height * SS * 0.55, height * SS * 0.25
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    for angle in rng.uniform(-2.6, -0.5, strands):
        length = rng.uniform(0.25, 0.5) * height * SS
        points = [(cx + 0.9 * r * np.cos(angle), cy + 0.9 * r * np.sin(angle))]
        heading = angle
        for _ in range(12):
            heading += rng.normal(0, 0.08)
            x, y = points[-1]
            points.append((x + np.cos(heading) * length / 12, y + np.sin(heading) * length / 12))
        draw.line(points, fill=255, width=int(rng.integers(4, 10)))  # 0.5 .. 1.2 output pixels wide
    alpha = np.asarray(big, dtype=np.float32).reshape(height, SS, width, SS).mean(axis=(1, 3)) / 255.0
    if background is None:
        from skimage import data

        grass = np.asarray(Image.fromarray(data.grass()).resize((width, height)), dtype=np.float32) / 255.0
        background = np.stack([0.2 * grass, 0.3 + 0.5 * grass, 0.15 * grass], axis=-1) * 255.0
    photo = alpha[..., None] * np.asarray(colour, np.float32) + (1 - alpha[..., None]) * background
    low = Image.fromarray(alpha, mode="F").resize((64, 64 * height // width), Image.Resampling.BOX)
    blurry = np.clip(np.asarray(low.resize((width, height), Image.Resampling.BILINEAR)), 0, 1)
    return np.clip(photo + 0.5, 0, 255).astype(np.uint8), alpha, blurry.astype(np.float32)


def test_matting_lowers_the_error_over_the_fractional_band():
    photo, truth, blurry = _scene(240, 180)
    band = (truth > 0) & (truth < 1)
    assert band.sum() > 500
    plain = np.abs(np.round(blurry * 255) / 255 - truth)[band].mean()
    alpha = matting.estimate_alpha(photo, blurry, matting.MattingOptions(network_size=64))
    ours = np.abs(alpha - truth)[band].mean()
    assert ours < 0.8 * plain, (ours, plain)
    assert np.abs(alpha - truth).mean() < np.abs(blurry - truth).mean()
    # Through the public cutout: same alpha, as 8 bits.
    rgba = np.asarray(cutout(photo, blurry, alpha_matting=True, network_size=64))
    assert np.abs(rgba[..., 3] / 255.0 - truth)[band].mean() < 0.8 * plain


def test_cutout_colour_has_no_background_halo():
    red, green = (230, 20, 20), (20, 200, 40)
    photo, truth, blurry = _scene(200, 150, colour=red, background=np.array(green, np.float32), strands=40)
    band = (truth > 0.1) & (truth < 0.9)
    mixed = photo[band].astype(float)
    assert mixed[:, 1].mean() > 60  # the photo's edge pixels are visibly green-tinted: the test can fail
    rgba = np.asarray(cutout(photo, blurry, alpha_matting=True, network_size=64)).astype(float)
    solved = band & (rgba[..., 3] > 25)
    colour = rgba[solved][:, :3]
    assert np.abs(colour - red).mean(axis=0).max() < 30, np.abs(colour - red).mean(axis=0)


def test_a_large_image_is_solved_in_bounded_pieces(monkeypatch):
    photo, truth, blurry = _scene(1200, 900, strands=150, seed=3)
    sizes = []
    real_cg = matting.cg

    def recording_cg(A, b, *args, **kwargs):  # pymatting's solver, watched: how big is each system?
        sizes.append(A.shape[0])
        return real_cg(A, b, *args, **kwargs)

    monkeypatch.setattr(matting, "cg", recording_cg)
    # The closed-form solve alone (the colour model is per pixel, no linear system).
    options = matting.MattingOptions(network_size=64, max_unknowns=20_000, working_unknowns=40_000,
                                     colour_model=False)
    trimap = matting.make_trimap(blurry, options)
    assert (trimap == 128).sum() > 100_000  # more unknowns than one solve may take
    alpha = matting.estimate_alpha(photo, blurry, options)
    assert sizes and max(sizes) <= 1.3 * options.max_unknowns and sum(sizes) <= 1.3 * options.working_unknowns
    assert alpha.shape == truth.shape and alpha.dtype == np.float32
    np.testing.assert_array_equal(alpha[trimap == 255], 1.0)
    np.testing.assert_array_equal(alpha[trimap == 0], blurry[trimap == 0])  # the sure background keeps the map
    band = (truth > 0) & (truth < 1)
    assert np.abs(alpha - truth)[band].mean() < np.abs(blurry - truth)[band].mean()


def test_foreground_tile_pixels_bounds_each_piece_and_max_pixels_is_its_deprecated_spelling(monkeypatch):
    """`max_pixels` is the refusal limit everywhere (--max-pixels, set_max_pixels); the foreground's piece size
    is `tile_pixels`, and the old keyword still works, with a warning."""
    photo, truth, _ = _scene(160, 120, strands=30, seed=5)
    pieces = []
    real_ml = matting.estimate_foreground_ml

    def recording_ml(image, alpha, *args, **kwargs):  # pymatting's estimator, watched: how big is each piece?
        pieces.append(alpha.size)
        return real_ml(image, alpha, *args, **kwargs)

    monkeypatch.setattr(matting, "estimate_foreground_ml", recording_ml)
    whole = matting.estimate_foreground(photo, truth)
    assert pieces and max(pieces) > 4_000  # by default the band is one piece: the bound below can fail
    pieces.clear()
    tiled = matting.estimate_foreground(photo, truth, tile_pixels=4_000)
    assert len(pieces) > 1 and max(pieces) <= 4_000 + 4 * 16 * (64 + 16)  # a piece plus its 16 px margin
    assert tiled.shape == whole.shape and tiled.dtype == np.uint8
    with pytest.warns(DeprecationWarning, match="tile_pixels"):
        old = matting.estimate_foreground(photo, truth, max_pixels=4_000)
    np.testing.assert_array_equal(old, tiled)
    with pytest.raises(TypeError, match="both tile_pixels and its deprecated spelling"):
        matting.estimate_foreground(photo, truth, tile_pixels=4_000, max_pixels=4_000)


def test_a_failing_preconditioner_falls_back_to_the_plain_mask(monkeypatch):
    photo, _, blurry = _scene(160, 120)

    def failing_ichol(*args, **kwargs):
        raise ValueError("Thresholded incomplete Cholesky decomposition failed")

    monkeypatch.setattr(matting, "ichol", failing_ichol)
    # Solved at full size (no upsampling in between), the solve alone (no colour model on top).
    options = matting.MattingOptions(network_size=160, colour_model=False)
    trimap = matting.make_trimap(blurry, options)
    alpha = matting.estimate_alpha(photo, blurry, options)
    unknown = trimap == 128
    np.testing.assert_array_equal(alpha[unknown], blurry[unknown])
    np.testing.assert_array_equal(alpha[~unknown], trimap[~unknown] / 255.0)


def _yellow_hair_on_a_blue_body():
    """Yellow strands on a blue body over grass, and a map that saw the body only (a 64x48 network's blur)."""
    photo, truth, _ = _scene(320, 240, colour=(230, 220, 40), strands=80, seed=5)
    body = np.zeros(truth.shape, np.float32)
    yy, xx = np.mgrid[0:240, 0:320]
    body[(xx - 160) ** 2 + (yy - 0.55 * 240) ** 2 <= (0.25 * 240) ** 2] = 1.0
    photo[body > 0] = (40, 60, 220)
    low = Image.fromarray(body, mode="F").resize((64, 48), Image.Resampling.BOX)
    blurry = np.clip(np.asarray(low.resize((320, 240), Image.Resampling.BILINEAR)), 0, 1).astype(np.float32)
    return photo, truth, blurry


def test_the_colour_model_finds_strands_the_map_never_saw():
    # Yellow strands on a blue body over grass; the "network" saw the body only (a map with no hair at all), so
    # the hair lies in the trimap's sure background, where the closed-form solve cannot reach it.
    photo, truth, blurry = _yellow_hair_on_a_blue_body()
    hair = (truth > 0.05) & (blurry < 0.02)
    assert hair.sum() > 1000  # strands the map does not see: the test can fail
    options = matting.MattingOptions(network_size=64, colour_model=True)  # off by default since 2026-12-07
    without = matting.estimate_alpha(photo, blurry, matting.MattingOptions(network_size=64, colour_model=False))
    with_colour = matting.estimate_alpha(photo, blurry, options)
    assert np.abs(without - truth)[hair].mean() > 0.3
    assert np.abs(with_colour - truth)[hair].mean() < 0.6 * np.abs(without - truth)[hair].mean()
    # It does not paint the grass: far from the strands the background stays background.
    clear = (truth == 0) & (blurry < 0.02)
    assert np.abs(with_colour - truth)[clear].mean() < 0.03
    trimap = matting.make_trimap(blurry, options)
    np.testing.assert_array_equal(with_colour[trimap == 255], 1.0)
    # Inside the unknown band the colour model may only raise the solve's alpha (the solve grows from the blue
    # body and erases yellow strands there), never lower it; with colour_in_band off the solve's alpha stands.
    band = trimap == 128
    assert (with_colour[band] >= without[band]).all()
    strands = band & (truth > 0.3)
    assert strands.sum() > 100
    assert np.abs(with_colour - truth)[strands].mean() < np.abs(without - truth)[strands].mean() - 0.02
    assert np.abs(with_colour - truth)[band].mean() <= np.abs(without - truth)[band].mean()
    solve_only = matting.estimate_alpha(photo, blurry, matting.MattingOptions(network_size=64, colour_model=True,
                                                                              colour_in_band=False))
    np.testing.assert_array_equal(solve_only[band], without[band])


def test_the_colour_model_keeps_only_what_touches_the_object():
    # The same hair, plus a patch of the hair's colour in the grass with no strand leading to it: it stands out
    # of the backdrop and lies on the strand-background colour line, but it is not attached to the object.
    photo, truth, blurry = _yellow_hair_on_a_blue_body()
    yy, xx = np.mgrid[0:240, 0:320]
    patch = ((xx - 290) ** 2 + (yy - 215) ** 2 <= 8 ** 2) & (truth == 0)
    assert patch.sum() > 150
    photo[patch] = (0.5 * np.array((230, 220, 40)) + 0.5 * photo[patch]).astype(np.uint8)  # half-covered look
    options = matting.MattingOptions(network_size=64, colour_model=True)
    alpha = matting.estimate_alpha(photo, blurry, options)
    colour, trust = matting.colour_alpha(photo, blurry, options)
    assert (trust * colour)[patch].mean() > 0.2  # the colour model alone does explain the patch as hair
    assert alpha[patch].max() < 0.05  # but it touches nothing of the object, so it stays background
    hair = (truth > 0.05) & (blurry < 0.02)
    assert alpha[hair].mean() > 0.2  # while the attached strands are still found


def test_the_solve_gives_back_the_map_floor_share_of_what_it_takes_from_the_map():
    # Hair exactly the backdrop's colour: invisible in the photo, so the solve has no colour reason to keep it.
    background = np.array((120, 110, 100), np.float32)
    photo, truth, blurry = _scene(240, 180, colour=(120, 110, 100), background=background)
    base = dict(network_size=64, colour_model=False)
    erased = matting.estimate_alpha(photo, blurry, matting.MattingOptions(map_floor=0.0, **base))
    floor = 0.25
    hedged = matting.estimate_alpha(photo, blurry, matting.MattingOptions(map_floor=floor, **base))
    unknown = matting.make_trimap(blurry, matting.MattingOptions(**base)) == 128
    taken = np.maximum(blurry - erased, 0)[unknown]
    assert (taken > 0.1).sum() > 200, (taken > 0.1).sum()  # the solve did erase part of the map here
    np.testing.assert_allclose(hedged[unknown], erased[unknown] + floor * taken, atol=1e-6)


def test_the_sure_background_keeps_the_plain_masks_faint_values():
    # A network that faintly sees hair beyond its edge (values under the background threshold): the sure
    # background is not solved, so matting must not erase them (stamping 0 there made hair scenes worse).
    photo, truth, blurry = _scene(240, 180)
    faint = np.where(blurry < 0.02, 0.02 + 0.02 * truth, blurry).astype(np.float32)
    # Temperature 1: the thresholds read the map as it is, so 0.02-0.04 lies under the background threshold.
    options = matting.MattingOptions(network_size=64, colour_model=False, trimap_temperature=1.0)
    trimap = matting.make_trimap(faint, options)
    background = trimap == 0
    assert (faint[background] > 0).sum() > 300  # the map does have faint values there: the test can fail
    alpha = matting.estimate_alpha(photo, faint, options)
    np.testing.assert_array_equal(alpha[background], faint[background])


def test_the_trimap_thresholds_read_the_map_at_the_trimap_temperature():
    # By default the thresholds read the map with its logits divided by 1.5 (docs/matting.md): the same trimap
    # as temperature 1 on the softened map, a wider band.
    _, _, blurry = _scene(240, 180)
    assert matting.MattingOptions().trimap_temperature == 1.5
    p = np.clip(blurry.astype(np.float64), 1e-7, 1 - 1e-7)
    softened = (1 / (1 + np.exp(-np.log(p / (1 - p)) / 1.5))).astype(np.float32)
    sharp = matting.make_trimap(blurry, matting.MattingOptions(network_size=64))
    plain = matting.make_trimap(blurry, matting.MattingOptions(network_size=64, trimap_temperature=1.0))
    np.testing.assert_array_equal(sharp, matting.make_trimap(softened, matting.MattingOptions(
        network_size=64, trimap_temperature=1.0)))
    assert (sharp == 128).sum() > (plain == 128).sum() + 100
    with pytest.raises(matting.MattingError, match="trimap_temperature"):
        matting.MattingOptions(trimap_temperature=0.0)


def test_trimap_band_widens_with_the_image_to_network_ratio():
    _, _, blurry = _scene(240, 180)
    narrow = matting.make_trimap(blurry, matting.MattingOptions(network_size=240))
    wide = matting.make_trimap(blurry, matting.MattingOptions(network_size=24))
    assert (wide == 128).sum() > (narrow == 128).sum()
    assert set(np.unique(wide)) <= {0, 128, 255}


def test_foreground_scale_pulls_the_sure_object_back_from_its_edge():
    # Dense fur saturates the map past the body's edge: the sure object is eroded by `foreground_scale` network
    # pixels so the fur's fractional tips are solved instead of being stamped 1.
    _, _, blurry = _scene(240, 180)
    tight = matting.make_trimap(blurry, matting.MattingOptions(network_size=60, foreground_scale=0.0))
    pulled = matting.make_trimap(blurry, matting.MattingOptions(network_size=60, foreground_scale=3.0))
    assert (pulled == 255).sum() < (tight == 255).sum() - 500
    assert ((pulled == 255) <= (tight == 255)).all()  # only ever less sure, never more
    np.testing.assert_array_equal(pulled == 0, tight == 0)  # the background side is untouched
    assert matting.MattingOptions().foreground_scale > 0


def _ring_around_a_disc(inside_colour):
    """A disc over brick whose map is only its rim (the network outlines a plain body it does not fill).

    (photo uint8, the disc's exact alpha, the ring-shaped map); ``inside_colour`` None shows the brick through
    the ring (a real hole: a ring-shaped object), otherwise a plain disc of that colour fills it.
    """
    from skimage import data

    height, width = 240, 320
    brick = np.asarray(Image.fromarray(data.brick()).resize((width, height)), dtype=np.float32) / 255.0
    backdrop = np.stack([0.3 * brick, 0.35 + 0.4 * brick, 0.2 * brick], axis=-1) * 255.0
    yy, xx = np.mgrid[0:height, 0:width]
    radius = np.hypot(xx - 160.0, yy - 120.0)
    outer = np.clip(80.5 - radius, 0, 1).astype(np.float32)
    ring = outer * np.clip(radius - 55.5, 0, 1).astype(np.float32)
    photo = backdrop * (1 - outer[..., None]) + ring[..., None] * np.array((40, 70, 210), np.float32)
    disc = (outer - ring)[..., None]
    photo += disc * (np.array(inside_colour, np.float32) if inside_colour is not None else backdrop)
    low = Image.fromarray(ring, mode="F").resize((64, 48), Image.Resampling.BOX)
    ring_map = np.clip(np.asarray(low.resize((width, height), Image.Resampling.BILINEAR)), 0, 1).astype(np.float32)
    truth = outer if inside_colour is not None else ring
    return np.clip(photo + 0.5, 0, 255).astype(np.uint8), truth, ring_map


def test_an_enclosed_hole_unlike_the_background_is_filled():
    photo, truth, ring_map = _ring_around_a_disc(inside_colour=(230, 210, 40))
    body = np.hypot(*np.mgrid[-120:120, -160:160]) < 50  # the plain disc inside the ring
    assert ring_map[body].mean() < 0.1  # the map leaves the body out: the test can fail
    filled = matting.fill_enclosed_holes(photo, ring_map, matting.MattingOptions(network_size=64))
    assert filled[body].min() == 1.0
    assert (filled[truth == 0] == ring_map[truth == 0]).all()  # the backdrop is left alone
    alpha = matting.estimate_alpha(photo, ring_map, matting.MattingOptions(network_size=64))
    unfilled = matting.estimate_alpha(photo, ring_map, matting.MattingOptions(network_size=64, fill_holes=False))
    assert np.abs(alpha - truth).mean() < 0.25 * np.abs(unfilled - truth).mean()
    assert np.abs(unfilled - truth)[body].mean() > 0.5


def test_a_hole_that_shows_the_background_stays_a_hole():
    photo, truth, ring_map = _ring_around_a_disc(inside_colour=None)
    hole = np.hypot(*np.mgrid[-120:120, -160:160]) < 50
    np.testing.assert_array_equal(matting.fill_enclosed_holes(photo, ring_map, matting.MattingOptions(network_size=64)),
                                  ring_map)
    alpha = matting.estimate_alpha(photo, ring_map, matting.MattingOptions(network_size=64))
    assert alpha[hole].mean() < 0.05


def test_a_gap_open_to_the_border_is_not_a_hole():
    # The same plain disc, but the object is cut by the image's edge: the unfilled body now touches the border,
    # so nothing encloses it and it is left as the network saw it.
    photo, truth, ring_map = _ring_around_a_disc(inside_colour=(230, 210, 40))
    photo, ring_map = photo[:, 160:], ring_map[:, 160:]
    np.testing.assert_array_equal(matting.fill_enclosed_holes(photo, ring_map, matting.MattingOptions(network_size=64)),
                                  ring_map)


@pytest.mark.parametrize("kwargs, message", [
    (dict(foreground_threshold=300), "foreground-threshold"),
    (dict(background_threshold=-1), "background-threshold"),
    (dict(foreground_threshold=100, background_threshold=100), "must be below"),
    (dict(erode_size=-2), "erode-size"),
    (dict(map_floor=1.5), "map_floor"),
    (dict(foreground_scale=-1.0), "foreground_scale"),
    (dict(hole_share=1.5), "hole_share"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    with pytest.raises(matting.MattingError, match=message):
        matting.MattingOptions(**kwargs)


def test_post_process_mask_removes_specks_and_is_hard():
    mask = np.zeros((60, 60), np.uint8)
    mask[20:40, 20:40] = 255
    mask[5, 5] = 255  # a one-pixel speck
    mask[21:39, 20] = 128  # a soft edge
    out = matting.post_process_mask(mask)
    assert set(np.unique(out)) == {0, 255}
    assert out[5, 5] == 0 and out[30, 30] == 255 and out[0, 0] == 0


def test_plain_cutout_is_unchanged_without_the_flag():
    photo, _, blurry = _scene(120, 90)
    expected = np.dstack([photo, np.clip(blurry * 255 + 0.5, 0, 255).astype(np.uint8)])  # the photo + the 8-bit mask
    np.testing.assert_array_equal(np.asarray(cutout(photo, blurry)), expected)
    np.testing.assert_array_equal(np.asarray(cutout(photo, blurry, alpha_matting=False)), expected)


# ------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, reference_dir) -> Path:
    model = U2Net(variant="tiny", input_size=64)
    model.load_state_dict(load_file(reference_dir / "tiny_random_weights.safetensors"))
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


def _u2net(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "u2net_hub.cli", "predict", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_cli_alpha_matting_end_to_end(tmp_path, model_dir, capsys):
    from u2net_hub.cli import main

    photo, _, _ = _scene(160, 120)
    Image.fromarray(photo).save(tmp_path / "a.png")
    knobs = ["--alpha-matting-foreground-threshold", "200", "--alpha-matting-background-threshold", "20",
             "--alpha-matting-erode-size", "5"]
    matted = _u2net("a.png", "-m", str(model_dir), "-o", "matted", "--format", "rgba", "--no-fast", "--alpha-matting",
                    *knobs, cwd=tmp_path)  # a real process, as users run it
    assert matted.returncode == 0, matted.stderr
    assert main(["predict", str(tmp_path / "a.png"), "-m", str(model_dir), "-o", str(tmp_path / "mask"),
                 "--only-mask", "--alpha-matting", "--no-fast", *knobs]) == 0
    assert main(["predict", str(tmp_path / "a.png"), "-m", str(model_dir), "-o", str(tmp_path / "plain"),
                 "--format", "rgba", "--no-fast"]) == 0
    prediction = predict(U2Net.from_pretrained(model_dir), photo, fast=False)
    plain_rgba = np.asarray(Image.open(tmp_path / "plain" / "a.png"))
    np.testing.assert_array_equal(plain_rgba[..., :3], photo)  # unchanged path; the CLI resizes the mask in uint8:
    assert np.abs(plain_rgba[..., 3].astype(int) - np.asarray(prediction.mask, dtype=int)).max() <= 1  # docs/speed.md
    expected = np.asarray(prediction.cutout(alpha_matting=True, alpha_matting_foreground_threshold=200,
                                            alpha_matting_background_threshold=20, alpha_matting_erode_size=5))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "matted" / "a.png")), expected)
    written_mask = np.asarray(Image.open(tmp_path / "mask" / "a.png"))
    assert written_mask.ndim == 2
    np.testing.assert_array_equal(written_mask, expected[..., 3])


@pytest.mark.parametrize("extra, message", [
    (["--format", "rgba", "--alpha-matting", "--alpha-matting-foreground-threshold", "300"], "from 0 to 255"),
    (["--format", "rgba", "--alpha-matting", "--alpha-matting-background-threshold", "250"], "must be below"),
    (["--format", "rgba", "--alpha-matting-erode-size", "3"], "only applies with --alpha-matting"),
    (["--format", "rgba", "--alpha-matting", "--alpha-matting-erode-size", "-1"], "at least 0"),
    (["--format", "sides", "--alpha-matting"], "not sides"),
    (["--format", "rgba", "--alpha-matting", "--threshold", "0.5"], "--threshold"),
    (["--only-mask", "--format", "rgba"], "contradicts"),
])
def test_cli_bad_matting_flags_exit_2_with_one_line(tmp_path, capsys, extra, message):
    from u2net_hub.cli import main

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
