"""The data behind the demo model's real-photo stage: composites (train/make_composites.py) and the
stroke-seeded validation masks (train/make_real_validation.py)."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFilter

from u2net_hub.data import load_saliency_dataset

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "train" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg", quality=90)
    return folder


def test_composites_form_a_paired_folder_with_visible_objects(photos, tmp_path):
    out = tmp_path / "composites"
    command = [sys.executable, str(ROOT / "train" / "make_composites.py"), "--photos", str(photos), "--out", str(out),
               "--num_composites", "6", "--num_synthetic", "2", "--size", "64", "--workers", "1"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    dataset = load_saliency_dataset(data_dir=str(out))
    assert len(dataset) == 8
    composites = _module("make_composites")
    composites._PHOTOS[:] = sorted(photos.glob("*.jpg"))
    for index in range(6):
        image, mask = composites.render_composite(0, index, 64)
        again, _ = composites.render_composite(0, index, 64)
        assert np.array_equal(np.asarray(image), np.asarray(again))  # deterministic in (seed, index, size)
        saved = np.asarray(Image.open(out / "masks" / f"c{index:06d}.png"))
        assert np.array_equal(saved, np.asarray(mask))  # the mask is written losslessly
        pixels, alpha = np.asarray(image, np.float32) / 255, np.asarray(mask) / 255
        inside, outside = pixels[alpha > 0.99].mean(0), pixels[alpha < 0.01].mean(0)
        assert 0.01 < alpha.mean() < 0.9
        assert np.linalg.norm(inside - outside) > 0.05  # the object is not camouflaged as a whole


def _textured_disc(size: int, box: tuple, seed: int, noise: float) -> tuple[Image.Image, Image.Image]:
    """An orange disc on a blue background, both noisy: its exact mask ("L") and the photo."""
    truth = Image.new("L", (size, size), 0)
    ImageDraw.Draw(truth).ellipse(box, fill=255)
    disc = np.asarray(truth)[..., None] > 127
    grain = np.random.default_rng(seed).normal(0, noise, (size, size, 3))
    image = np.where(disc, [200, 80, 40], [60, 120, 170]) + grain
    return truth, Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def test_stroke_seeded_segmentation_recovers_a_known_shape():
    """A textured disc on a textured background: two strokes must give back the disc."""
    truth, photo = _textured_disc(96, (24, 20, 72, 68), seed=0, noise=20)
    disc = np.asarray(truth) > 127
    validation = _module("make_real_validation")
    mask = validation.segment(photo, [[(0.45, 0.4), (0.55, 0.5)]], ["border", [(0.05, 0.9), (0.95, 0.9)]])
    predicted = mask > 127
    iou = (predicted & disc).sum() / (predicted | disc).sum()
    assert iou > 0.95, iou


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory) -> Path:
    """Two RGBA cut-outs with known alpha: an opaque red disc and a half-transparent blue square."""
    folder = tmp_path_factory.mktemp("cutouts")
    disc = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    ImageDraw.Draw(disc).ellipse((5, 5, 55, 55), fill=(220, 30, 30, 255))
    disc.save(folder / "disc.png")
    square = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(square).rectangle((4, 4, 36, 36), fill=(20, 40, 230, 255))
    square.save(folder / "square.png")
    return folder


def test_cutout_composites_have_exact_masks_where_the_objects_are(photos, cutouts, tmp_path):
    out = tmp_path / "cutout-composites"
    command = [sys.executable, str(ROOT / "train" / "make_cutout_composites.py"), "--photos", str(photos),
               "--cutouts", str(cutouts), "--out", str(out), "--num_composites", "8", "--num_synthetic", "2",
               "--size", "64", "--workers", "1"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    assert len(load_saliency_dataset(data_dir=str(out))) == 10
    composites = _module("make_cutout_composites")
    composites._init(sorted(photos.glob("*.jpg")), sorted(cutouts.glob("*.png")), [])
    cores = []
    for index in range(8):
        image, mask = composites.render_composite(0, index, 64)
        again, _ = composites.render_composite(0, index, 64)
        assert np.array_equal(np.asarray(image), np.asarray(again))  # deterministic in (seed, index, size)
        saved = np.asarray(Image.open(out / "masks" / f"c0-{index:06d}.png"))
        assert np.array_equal(saved, np.asarray(mask))
        pixels, alpha = np.asarray(image, np.float32) / 255, np.asarray(mask) / 255
        assert 0.02 < alpha.mean() < 0.95  # something salient, not the whole frame
        cores.append(pixels[alpha > 0.99])
    # Where the mask is certain, the pixels are the cut-outs' colours (red or blue dominant), up to the light
    # matching, jitter (now and then grey), gain, noise and JPEG: the mask marks the objects, not a region.
    core = np.concatenate(cores)
    assert len(core) > 500
    assert ((core[:, 0] > core[:, 1] + 0.15) | (core[:, 2] > core[:, 1] + 0.15)).mean() > 0.8


def test_cutout_composites_explain_missing_inputs(photos, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([sys.executable, str(ROOT / "train" / "make_cutout_composites.py"), "--photos",
                             str(photos), "--cutouts", str(empty), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "train/fetch_cutouts.sh" in result.stderr
    assert "Traceback" not in result.stderr


def test_drawn_people_have_a_head_over_wider_shoulders_and_exact_masks(photos, cutouts):
    composites = _module("make_cutout_composites")
    composites._init(sorted(photos.glob("*.jpg")), sorted(cutouts.glob("*.png")), [], figures=1.0)
    kinds = set()
    for seed in range(12):
        rgb, alpha, bust = composites._figure(np.random.default_rng(seed), 120)
        kinds.add(bust)
        assert rgb.shape[:2] == alpha.shape and alpha.shape[0] == 120 and 0 <= alpha.min() and alpha.max() <= 1
        rows = (alpha > 0.5).sum(1)
        head = rows[int((0.3 if bust else 0.08) * len(rows))]  # the middle of the head
        body = rows[int(0.75 * len(rows))] if bust else rows[: len(rows) // 2].max()
        assert 0 < head < body  # a head, and shoulders (a portrait) or a torso with arms below it, wider
        if bust:
            assert rows[-1] > 0.5 * alpha.shape[1]  # a portrait runs out of the bottom of its box
    assert kinds == {True, False}
    for index in range(4):  # every subject a person: the mask is where a person was pasted, and exact
        image, mask = composites.render_composite(3, index, 96)
        again, same = composites.render_composite(3, index, 96)
        assert np.array_equal(np.asarray(image), np.asarray(again)) and np.array_equal(np.asarray(mask), np.asarray(same))
        assert 0.03 < np.asarray(mask).mean() / 255 < 0.95


def test_closeups_run_out_of_the_frame_and_distractors_stay_at_its_edges(photos, cutouts):
    composites = _module("make_cutout_composites")
    composites._init(sorted(photos.glob("*.jpg")), sorted(cutouts.glob("*.png")), [], closeups=1.0)
    for index in range(6):  # every subject larger than the frame: it fills most of it and leaves by a side
        mask = np.asarray(composites.render_composite(5, index, 96)[1]) / 255
        borders = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert (borders > 0.5).any() and mask.mean() > 0.2
    composites._init(sorted(photos.glob("*.jpg")), sorted(cutouts.glob("*.png")), [], distractors=1.0)
    grey = np.full((96, 96, 3), 0.5, np.float32)
    for seed in range(6):  # sharp objects near the sides, never over the middle where the subject goes
        changed = np.abs(composites._distractors(np.random.default_rng(seed), grey, 90.0, 0.0) - grey).max(-1) > 0.02
        assert changed.any() and not changed[36:60, 36:60].any()


def test_busy_scenes_keep_a_sharp_backdrop_with_unmasked_objects_behind_a_large_subject(photos, cutouts):
    composites = _module("make_cutout_composites")
    composites._init(sorted(photos.glob("*.jpg")), sorted(cutouts.glob("*.png")), [], busy=1.0)
    grey = np.full((96, 96, 3), 0.5, np.float32)
    for seed in range(6):  # objects land anywhere, the middle included, and none is masked
        changed = np.abs(composites._busy(np.random.default_rng(seed), grey, 90.0) - grey).max(-1) > 0.02
        assert 0.02 < changed.mean() < 0.9

    def backdrop_detail(busy: float) -> tuple[np.ndarray, float]:
        composites._init(sorted(photos.glob("*.jpg")), sorted(cutouts.glob("*.png")), [], busy=busy)
        detail, subject = [], []
        for index in range(10):
            image, mask = composites.render_composite(9, index, 128)
            grey_image, alpha = np.asarray(image.convert("L"), np.float32), np.asarray(mask) / 255
            laplacian = np.abs(4 * grey_image[1:-1, 1:-1] - grey_image[:-2, 1:-1] - grey_image[2:, 1:-1]
                               - grey_image[1:-1, :-2] - grey_image[1:-1, 2:])
            detail.append(laplacian[alpha[1:-1, 1:-1] < 0.01].mean())
            subject.append(alpha.mean())
        return np.array(detail), float(np.min(subject))

    plain_detail, _ = backdrop_detail(0.0)  # the mean absolute Laplacian where the mask is 0
    busy_detail, smallest_subject = backdrop_detail(1.0)
    assert busy_detail.min() > 1.5 * np.median(plain_detail)  # no busy backdrop is defocused
    assert busy_detail.mean() > 2.5 * plain_detail.mean()  # and they are full of sharp objects
    assert smallest_subject > 0.05  # the subject stays large enough to be what the photo is of


def test_gcompris_photos_are_cut_out_of_a_resource_file_by_their_signatures():
    """Encoded images inside other bytes (as in a Qt .rcc): every photo is found, drawings and thumbnails are not."""
    fetch = _module("fetch_gcompris_photos")
    photo = Image.fromarray(skimage.data.coffee())
    drawing = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(drawing).ellipse((20, 20, 280, 280), fill=(250, 200, 0, 255))

    def encoded(image: Image.Image, fmt: str) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        return buffer.getvalue()

    blob = b"".join([b"qres\x00\x01" * 50, encoded(photo, "JPEG"), b"\xff\xd8\xff not an image" * 3,
                     encoded(photo.resize((400, 266)), "WEBP"), b"\x00" * 999, encoded(drawing, "PNG"),
                     encoded(photo.resize((120, 80)), "PNG"), b"RIFF\x10\x00\x00\x00WEBPjunk"])
    images = list(fetch.encoded_images(blob))
    assert sorted(image.size for image in images) == [(120, 80), (300, 300), (400, 266), (600, 400)]
    photos = [image for image in images if fetch.is_photo(image)]
    assert sorted(image.size for image in photos) == [(400, 266), (600, 400)]  # no drawing, no thumbnail
    assert fetch.image_hash(photos[0]) == fetch.image_hash(photos[1])  # the same photo at two sizes is one


def test_pseudo_labels_snap_to_the_edge_and_only_confident_ones_are_kept():
    """A model's blurred, shifted mask of a textured disc: the random walker gives back the disc; a map with no
    sure subject, or one that calls the whole frame the subject, is not kept. (A confident error that the photo's
    colours support passes these checks: that is what the check by eye on the contact sheet is for.)"""
    pseudo = _module("make_pseudo_labels")
    size = 160
    truth, photo = _textured_disc(size, (40, 36, 120, 116), seed=1, noise=15)
    disc = np.asarray(truth) > 127
    model = np.asarray(truth.transform(truth.size, Image.Transform.AFFINE, (1, 0, 2, 0, 1, -2))
                       .filter(ImageFilter.GaussianBlur(2.5)), np.float32) / 255  # soft, off by two pixels

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return (a & b).sum() / (a | b).sum()

    mask, figures = pseudo.refine(photo, model, sure=0.9)
    assert iou(mask, disc) > 0.97 > iou(model > 0.5, disc)
    assert pseudo.confident(figures, min_iou=0.9, max_band=0.6)
    assert not pseudo.confident(figures, min_iou=0.9, max_band=0.6, max_subject=0.1)  # the disc is a fifth of the frame
    unsure = np.full((size, size), 0.6, np.float32)  # nothing sure: no seeds for the subject
    _, figures = pseudo.refine(photo, unsure, sure=0.9)
    assert not pseudo.confident(figures, min_iou=0.9, max_band=0.6)
    everything = np.full((size, size), 0.95, np.float32)  # the whole frame "salient": no subject to learn
    _, figures = pseudo.refine(photo, everything, sure=0.9)
    assert not pseudo.confident(figures, min_iou=0.9, max_band=0.6)


def test_a_rough_outline_snaps_to_the_subject_edge_and_builds_a_paired_folder(tmp_path):
    """An octagon drawn loosely around a disc (edges off by up to ~4 px) must come back as the disc itself."""
    truth, photo = _textured_disc(160, (40, 36, 120, 116), seed=3, noise=15)
    disc = np.asarray(truth) > 127
    centre_x, centre_y, radius = 80 / 159, 76 / 159, 44 / 159  # a little larger than the disc's 40 px
    octagon = [[centre_x + radius * np.cos(a), centre_y + radius * np.sin(a)] for a in np.arange(8) * np.pi / 4]
    labelling = _module("label_photos")

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return (a & b).sum() / (a | b).sum()

    outline = labelling.outline_mask(photo.size, {"subject": [octagon]})
    snapped = labelling.snap(photo, outline, band=0.04) > 127
    assert iou(outline, disc) < 0.93  # the outline alone is visibly off ...
    assert iou(snapped, disc) > 0.96, iou(snapped, disc)  # ... the snapped mask is not

    photos, labels, out = tmp_path / "photos", tmp_path / "labels", tmp_path / "out"
    photos.mkdir()
    labels.mkdir()
    photo.save(photos / "disc.jpg", quality=95)
    photo.save(photos / "other.png")
    (labels / "a.json").write_text(json.dumps({"disc": {"subject": [octagon], "band": 0.04}}))
    (labels / "b.json").write_text(json.dumps({"other": {"skip": "no subject"}}))
    script = Path(__file__).resolve().parent.parent / "train" / "label_photos.py"
    run = subprocess.run([sys.executable, str(script), "--photos", str(photos), "--labels", str(labels),
                          "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == ["disc.png"]
    built = load_saliency_dataset(str(out))
    assert len(built) == 1
    assert iou(np.asarray(built[0]["mask"]) > 127, disc) > 0.96

    (labels / "b.json").write_text(json.dumps({"disc": {"skip": "labelled twice"}}))
    twice = subprocess.run([sys.executable, str(script), "--photos", str(photos), "--labels", str(labels),
                            "--out", str(out)], capture_output=True, text=True)
    assert twice.returncode != 0 and "labelled twice" in twice.stderr and "Traceback" not in twice.stderr


def test_scratch_media_keeps_the_photographed_costumes_cropped_with_their_alpha(tmp_path):
    """A media folder laid out like the package's: each listed costume comes back cropped to its visible pixels
    with its transparency, one in ten is held out, places become JPEG photos; a missing file is a clear error."""
    fetch = _module("fetch_scratch_media")
    media = tmp_path / "cache" / "scratch-root" / fetch.MEDIA
    for folder, names in (("Costumes/People", fetch.PEOPLE), ("Costumes/Things", fetch.THINGS)):
        (media / folder).mkdir(parents=True)
        for name in names:  # a palette GIF with a transparent margin, as Scratch's costumes are
            costume = Image.new("P", (90, 60), 0)
            costume.putpalette([0, 0, 0, 200, 40, 40] + [0] * 762)
            ImageDraw.Draw(costume).rectangle((20, 10, 69, 49), fill=1)
            costume.save(media / folder / f"{name}.gif", transparency=0)
    (media / "Backgrounds" / "Outdoors").mkdir(parents=True)
    for name in fetch.BACKGROUNDS:
        Image.new("RGB", (48, 36), (90, 140, 200)).save(media / "Backgrounds" / "Outdoors" / f"{name}.jpg")

    assert fetch.main(["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 0
    train = sorted((tmp_path / "out" / "cutouts" / "train").iterdir())
    held_out = sorted((tmp_path / "out" / "cutouts" / "validation").iterdir())
    assert len(train) + len(held_out) == len(fetch.PEOPLE) + len(fetch.THINGS)
    assert 0 < len(held_out) < len(train) / 4
    assert sum(p.name.startswith("scratch-person-") for p in train + held_out) == len(fetch.PEOPLE)
    cutout = Image.open(train[0])
    assert cutout.mode == "RGBA" and cutout.size == (50, 40)  # cropped to the rectangle
    assert np.asarray(cutout)[..., 3].min() == 255 and tuple(np.asarray(cutout)[20, 25, :3]) == (200, 40, 40)
    assert len(list((tmp_path / "out" / "photos" / "train").glob("*.jpg"))) == len(fetch.BACKGROUNDS)

    (media / "Costumes" / "People" / f"{fetch.PEOPLE[0]}.gif").unlink()
    with pytest.raises(SystemExit, match=fetch.PEOPLE[0]):
        fetch.main(["--out", str(tmp_path / "again"), "--cache", str(tmp_path / "cache")])


def test_teacher_rebuilt_from_a_batchnorm_folded_onnx_graph_matches_the_network(tmp_path):
    """fetch_teacher.py reads the released tiny model from an ONNX graph whose BatchNorms are folded into the
    convolutions (as the wheel's file is). A network with non-trivial BatchNorm statistics, exported the same
    way, must come back computing the same map; a wrong order or a missed BatchNorm would not."""
    from u2net_hub import U2Net
    from u2net_hub.export import export_onnx

    fetch_teacher = _module("fetch_teacher")
    import torch
    torch.manual_seed(0)
    original = U2Net(variant="tiny").eval()
    with torch.no_grad():
        for module in original.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    path = tmp_path / "tiny.onnx"
    export_onnx(original, path, exporter="torchscript", input_size=320, check=False)
    rebuilt = fetch_teacher.build(path.read_bytes())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and m.running_mean.abs().max() > 0 for m in rebuilt.modules())
    image = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        expected = torch.sigmoid(original(image).logits)
        got = torch.sigmoid(rebuilt(image).logits)
    assert (got - expected).abs().max() < 1e-5
    assert fetch_teacher.check_against_onnxruntime(rebuilt, path.read_bytes()) < 1e-4
    # Calibrated BatchNorms (for fine-tuning) hold the data's statistics and still compute the same map.
    fetch_teacher.calibrate_batch_norms(rebuilt, torch.rand(8, 3, 64, 64))
    assert all(m.running_var.min() != 1.0 - m.eps for m in rebuilt.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        calibrated = torch.sigmoid(rebuilt.eval()(image).logits)
    assert (calibrated - expected).abs().max() < 1e-4


def _paired_folder(folder: Path, stems: list[str]) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for stem in stems:
        Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "images" / f"{stem}.jpg")
        Image.new("L", (8, 8), 255).save(folder / "masks" / f"{stem}.png")
    return folder


def test_link_training_set_repeats_sources_filters_by_prefix_and_loads_as_one_dataset(tmp_path):
    photos = _paired_folder(tmp_path / "photos", ["a", "b"])
    composites = _paired_folder(tmp_path / "composites", ["c8-000", "c8-001", "s000", "s001", "s002"])
    out = tmp_path / "mix"
    command = [sys.executable, str(ROOT / "train" / "link_training_set.py"), "--out", str(out),
               f"{photos}:3", f"{composites}:1:s"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    images = sorted(p.name for p in (out / "images").iterdir())
    assert len(images) == 2 * 3 + 3
    assert all((out / "images" / name).resolve().parent in (photos / "images", composites / "images") for name in images)
    assert not any("c8-" in name for name in images)
    dataset = load_saliency_dataset(data_dir=str(out))
    assert len(dataset) == 9

    (composites / "masks" / "s001.png").unlink()
    failed = subprocess.run(command, capture_output=True, text=True)
    assert failed.returncode != 0
    assert "s001" in failed.stderr and "Traceback" not in failed.stderr


def test_closeup_crops_are_squares_tighter_than_the_subject_and_inside_the_photo(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    photo = Image.fromarray(skimage.data.coffee())  # 600x400
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((250, 100, 410, 260), fill=255)  # a disc of diameter 161
    photo.save(data / "images" / "coffee.jpg")
    mask.save(data / "masks" / "coffee.png")
    Image.new("RGB", (300, 200)).save(data / "images" / "empty.jpg")
    Image.new("L", (300, 200), 0).save(data / "masks" / "empty.png")
    out = tmp_path / "closeups"
    result = subprocess.run([sys.executable, str(ROOT / "train" / "make_closeup_crops.py"), "--data", str(data),
                             "--out", str(out), "--per_photo", "4", "--min_side", "32"],
                            capture_output=True, text=True, check=True)
    crops = sorted(out.glob("*.jpg"))
    assert [c.name for c in crops] == [f"coffee-closeup{i}.jpg" for i in range(4)]
    assert "1 skipped" in result.stdout
    module = _module("make_closeup_crops")
    import random
    box = module.subject_box(np.asarray(mask))
    assert box == (250, 100, 411, 261)  # Pillow draws the bounding box inclusive
    for seed in range(50):
        x0, y0, x1, y1 = module.closeup_box(box, photo.size, random.Random(seed))
        assert x1 - x0 == y1 - y0 and 0.55 * 161 - 1 <= x1 - x0 <= 1.05 * 161
        assert 0 <= x0 and 0 <= y0 and x1 <= 600 and y1 <= 400
        inside = np.asarray(mask.crop((x0, y0, x1, y1))).mean() / 255
        assert inside > 0.5  # the subject fills most of the frame


def test_view_crops_are_squares_of_the_photo_at_many_scales_and_places(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    coffee = skimage.data.coffee()  # 600x400
    Image.fromarray(coffee).save(photos / "coffee.png")
    out = tmp_path / "views"
    command = [sys.executable, str(ROOT / "train" / "make_view_crops.py"), "--photos", str(photos), "--out", str(out),
               "--per_photo", "3", "--size", "64"]
    subprocess.run(command, capture_output=True, text=True, check=True)
    views = sorted(out.glob("*.jpg"))
    assert [v.name for v in views] == [f"coffee-v{i}.jpg" for i in range(3)]
    assert all(Image.open(v).size == (64, 64) for v in views)
    first = [np.asarray(Image.open(v)).copy() for v in views]
    subprocess.run(command, capture_output=True, text=True, check=True)  # the same seed draws the same views
    assert all(np.array_equal(a, np.asarray(Image.open(v))) for a, v in zip(first, views))
    whole = tmp_path / "whole"  # --whole: the entire photo squashed to the square, once (the distillation pool)
    subprocess.run(command[:4] + ["--out", str(whole), "--size", "64", "--whole"], capture_output=True, text=True,
                   check=True)
    assert [v.name for v in whole.iterdir()] == ["coffee.png"]
    squashed = np.asarray(Image.fromarray(coffee).resize((64, 64), Image.BILINEAR), dtype=np.float32)
    assert np.array_equal(np.asarray(Image.open(whole / "coffee.png"), dtype=np.float32), squashed)
    assert np.abs(np.asarray(Image.open(views[0]), dtype=np.float32) - squashed).mean() > 20  # a view is a crop
    module = _module("make_view_crops")
    import random
    sides, corners = set(), set()
    for seed in range(100):
        x0, y0, x1, y1 = module.view_box((600, 400), random.Random(seed), smallest=0.45)
        assert x1 - x0 == y1 - y0 and 0.45 * 400 - 1 <= x1 - x0 <= 400
        assert 0 <= x0 and 0 <= y0 and x1 <= 600 and y1 <= 400
        sides.add((x1 - x0) // 50)
        corners.add((x0 // 100, y0 // 100))
    assert len(sides) >= 4 and len(corners) >= 6  # many scales and places
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = subprocess.run(command[:3] + [str(empty), "--out", str(out)], capture_output=True, text=True)
    assert refused.returncode == 1 and "holds no photos" in refused.stderr and "Traceback" not in refused.stderr


def test_teacher_calibration_images_are_a_fixed_draw_from_the_folder(tmp_path):
    """fetch_teacher.py --calibrate_on: the BatchNorms are calibrated on the fine-tune's own images, drawn by a fixed
    seed (the recipe is rerunnable), prepared like predict's input; too few images is a clear error."""
    import torch

    from u2net_hub import U2Net

    fetch_teacher = _module("fetch_teacher")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    model = U2Net(variant="tiny", input_size=64)
    first = fetch_teacher.calibration_images(model, tmp_path, count=4, seed=1)
    again = fetch_teacher.calibration_images(model, tmp_path, count=4, seed=1)
    other = fetch_teacher.calibration_images(model, tmp_path, count=4, seed=2)
    assert first.shape == (4, 3, 64, 64)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    with pytest.raises(SystemExit, match="holds 6 images; 7 are needed"):
        fetch_teacher.calibration_images(model, tmp_path, count=7)


def test_training_shell_scripts_parse():
    """The recipes in train/ are bash: a syntax error there would only show on a long run or a lent GPU."""
    scripts = sorted((ROOT / "train").glob("*.sh"))
    assert len(scripts) >= 5
    for script in scripts:
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script.name}: {done.stderr}"


def test_synthetic_split_is_the_datasets_rows_whatever_the_number_of_workers(tmp_path):
    """make_synthetic_split.py writes row i of make_synthetic_dataset as i.png, rendered by one process or many
    (a long GPU run renders tens of thousands of scenes on 16 cores); bad counts are a message."""
    from u2net_hub.data import make_synthetic_dataset

    script = [sys.executable, str(ROOT / "train" / "make_synthetic_split.py"), "--seed", "3", "--count", "6",
              "--size", "48", "--no-progress"]
    subprocess.run(script + ["--out", str(tmp_path / "one")], capture_output=True, text=True, check=True)
    subprocess.run(script + ["--out", str(tmp_path / "two"), "--workers", "2"], capture_output=True, text=True,
                   check=True)
    rows = make_synthetic_dataset(6, size=48, seed=3)
    for index, row in enumerate(rows):
        for column, folder in (("image", "images"), ("mask", "masks")):
            expected = np.asarray(row[column])
            for run in ("one", "two"):
                assert np.array_equal(np.asarray(Image.open(tmp_path / run / folder / f"{index:04d}.png")), expected)
    refused = subprocess.run(script[:2] + ["--out", str(tmp_path / "bad"), "--seed", "3", "--count", "0"],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "--count" in refused.stderr and "Traceback" not in refused.stderr


def test_select_hardest_links_the_worst_pairs_of_a_real_per_image_evaluation(tmp_path):
    data = _paired_folder(tmp_path / "scenes", ["s0", "s1", "s2", "s3"])  # every mask is white
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for stem, value in (("s0", 255), ("s1", 0), ("s2", 200), ("s3", 100)):  # MAE 0, 1, 0.22, 0.61
        Image.new("L", (8, 8), value).save(predictions / f"{stem}.png")
    scores = tmp_path / "scores.json"
    subprocess.run([sys.executable, "-m", "u2net_hub.cli", "evaluate", "--pred-dir", str(predictions),
                    "--gt-dir", str(data / "masks"), "--per-image", "--output", str(scores), "--no-progress"],
                   check=True, capture_output=True, text=True)
    out = tmp_path / "hard"
    command = [sys.executable, str(ROOT / "train" / "select_hardest.py"), "--scores", str(scores),
               "--data", str(data), "--count", "2", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["s1.jpg", "s3.jpg"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["s1.png", "s3.png"]
    assert (out / "images" / "s1.jpg").resolve() == (data / "images" / "s1.jpg").resolve()
    assert [row["item"] for row in json.loads((out / "hardest.json").read_text())] == ["s1", "s3"]
    assert len(load_saliency_dataset(data_dir=str(out))) == 2

    # scores made without --per-image, or on another folder, are refused with a message
    for document in ({"MAE": 0.5}, [1, 2], {"per_image": [{"MAE": 0.4}]}):
        scores.write_text(json.dumps(document))
        failed = subprocess.run(command, capture_output=True, text=True)
        assert failed.returncode != 0 and "Traceback" not in failed.stderr
        assert "--per-image" in failed.stderr or "score" in failed.stderr
    scores.write_text(json.dumps({"per_image": [{"item": "elsewhere", "MAE": 0.9}]}))
    failed = subprocess.run(command, capture_output=True, text=True)
    assert failed.returncode != 0 and "elsewhere" in failed.stderr and "Traceback" not in failed.stderr


def test_hair_composites_put_a_soft_edged_object_over_the_photos_but_never_a_held_out_one(photos, tmp_path):
    script = [sys.executable, str(ROOT / "train" / "make_hair_composites.py")]
    out = tmp_path / "hair"
    held_out = tmp_path / "held-out"
    held_out.mkdir()
    Image.new("RGB", (8, 8)).save(held_out / "rocket.png")  # the stem is what counts, not the suffix
    subprocess.run(script + ["--photos", str(photos), "--exclude", str(held_out), "--out", str(out),
                             "--count", "3", "--size", "96", "--no-progress"], check=True, capture_output=True)
    dataset = load_saliency_dataset(data_dir=str(out))
    assert len(dataset) == 3
    for row in dataset:
        mask = np.asarray(row["mask"].convert("L"))
        assert row["image"].size == (96, 96) and mask.shape == (96, 96)
        assert (mask == 255).mean() > 0.05 and (mask == 0).mean() > 0.2  # a body, and backdrop around it
        assert ((mask > 0) & (mask < 255)).mean() > 0.01  # strands: fractional coverage, not a binary mask
    # Only the held-out photo in the folder: nothing to composite over, a one-line error.
    only = tmp_path / "only"
    only.mkdir()
    Image.new("RGB", (8, 8)).save(only / "rocket.jpg")
    failed = subprocess.run(script + ["--photos", str(only), "--exclude", str(held_out), "--out", str(tmp_path / "x"),
                                      "--count", "1"], capture_output=True, text=True)
    assert failed.returncode == 2 and "no photos" in failed.stderr and "Traceback" not in failed.stderr
