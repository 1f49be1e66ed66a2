"""SODMetrics: hand-derived values on small masks, agreement with pysodmetrics, the documented rules, merging."""

from __future__ import annotations

import itertools
import math
import pickle
import warnings

import cv2
import numpy as np
import py_sod_metrics as psm
import pytest
import torch
from PIL import Image

from u2net_hub.metrics import (
    METRIC_KEYS,
    MetricInputError,
    SODMetrics,
    format_table,
    mask_boundary,
    relaxed_boundary_fmeasure,
)

# ---------------------------------------------------------------- fixtures

# A 10x10 ground truth with a 4x4 square (rows/cols 3..6): 16 foreground pixels of 100.
N_PIX, N_FG = 100, 16
FG_SHARE = N_FG / N_PIX  # 0.16
# F-measure (beta^2 = 0.3) when every pixel is predicted foreground: P = 0.16, R = 1.
F_ALL_ON = 1.3 * FG_SHARE * 1.0 / (0.3 * FG_SHARE + 1.0)


def square_gt() -> np.ndarray:
    gt = np.zeros((10, 10), dtype=np.uint8)
    gt[3:7, 3:7] = 255
    return gt


def scores(pred, gt) -> dict:
    metrics = SODMetrics()
    metrics.update(pred, gt)
    return metrics.compute()


def structured_pair(rng, h, w):
    """A blob-shaped mask and a noisy, blurred prediction of it (so every metric is away from its extremes)."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    gt = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8) * 255
    shift = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1)) / 255.0
    pred = np.clip(0.7 * shift + 0.35 * rng.random((h, w)), 0, 1)
    return pred, gt


def pysod_reference(pairs_u8) -> dict:
    """The metrics straight from pysodmetrics' own accumulators."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = psm.Fmeasure(beta=0.3)
    em, mae, sm, wfm = psm.Emeasure(), psm.MAE(), psm.Smeasure(alpha=0.5), psm.WeightedFmeasure()
    for pred, gt in pairs_u8:
        for metric in (fm, em, mae, sm, wfm):
            metric.step(pred, gt)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    return {
        "maxF": f["curve"].max(), "meanF": f["curve"].mean(), "adpF": f["adp"], "MAE": mae.get_results()["mae"],
        "wF": wfm.get_results()["wfm"], "Sm": sm.get_results()["sm"], "maxE": e["curve"].max(),
        "meanE": e["curve"].mean(), "adpE": e["adp"],
    }


# ------------------------------------------------------ hand-derived values


def test_perfect_prediction():
    gt = square_gt()
    r = scores(gt.astype(np.float32) / 255.0, gt)
    # F-curve: thresholds 1..255 (255 points) select exactly the square -> F = 1; threshold 0 selects all -> F_ALL_ON.
    assert r["maxF"] == pytest.approx(1.0, abs=1e-12)
    assert r["meanF"] == pytest.approx((255 * 1.0 + F_ALL_ON) / 256, abs=1e-12)
    # Adaptive threshold 2 * mean = 0.32 selects exactly the square.
    assert r["adpF"] == pytest.approx(1.0, abs=1e-12)
    assert r["MAE"] == 0.0
    assert r["Sm"] == pytest.approx(1.0, abs=1e-9)
    assert r["wF"] == pytest.approx(1.0, abs=1e-9)
    # E-measure: a perfect binary map has enhanced alignment 1 at every pixel; pysodmetrics (like the MATLAB code)
    # divides the sum by (N - 1): 100/99. At threshold 0 (all foreground) the demeaned prediction is 0 everywhere,
    # alignment 0, enhanced (0+1)^2/4 = 1/4 per pixel: 25/99.
    assert r["maxE"] == pytest.approx(100 / 99, abs=1e-9)
    assert r["meanE"] == pytest.approx((255 * 100 / 99 + 25 / 99) / 256, abs=1e-9)
    assert r["adpE"] == pytest.approx(100 / 99, abs=1e-9)
    assert r["relaxF_boundary"] == 1.0
    assert r["count"] == 1


def test_empty_prediction():
    gt = square_gt()
    r = scores(np.zeros((10, 10), dtype=np.float32), gt)
    # Only threshold 0 selects anything (everything): F_ALL_ON there, 0 at the 255 others.
    assert r["maxF"] == pytest.approx(F_ALL_ON, abs=1e-12)
    assert r["meanF"] == pytest.approx(F_ALL_ON / 256, abs=1e-12)
    # Adaptive threshold 2 * 0 = 0: pred >= 0 selects everything.
    assert r["adpF"] == pytest.approx(F_ALL_ON, abs=1e-12)
    assert r["MAE"] == pytest.approx(FG_SHARE, abs=1e-12)
    # S-measure: object part = 0.5 * (0 * 0.16 + 1 * 0.84); every quadrant's SSIM is 0 (prediction constant 0).
    assert r["Sm"] == pytest.approx(0.5 * (1 - FG_SHARE), abs=1e-9)
    assert r["wF"] == pytest.approx(0.0, abs=1e-9)
    # E-measure: the demeaned prediction is 0 everywhere at every threshold -> 1/4 per pixel -> 25/99.
    assert r["maxE"] == pytest.approx(25 / 99, abs=1e-9)
    assert r["meanE"] == pytest.approx(25 / 99, abs=1e-9)
    assert r["adpE"] == pytest.approx(25 / 99, abs=1e-9)
    # Empty predicted boundary against a non-empty one.
    assert r["relaxF_boundary"] == 0.0


def test_inverted_prediction():
    gt = square_gt()
    r = scores(1.0 - gt.astype(np.float32) / 255.0, gt)
    assert r["maxF"] == pytest.approx(F_ALL_ON, abs=1e-12)  # only threshold 0 catches the square
    assert r["meanF"] == pytest.approx(F_ALL_ON / 256, abs=1e-12)
    assert r["adpF"] == 0.0  # threshold min(2 * 0.84, 1) = 1 selects the background only
    assert r["MAE"] == pytest.approx(1.0, abs=1e-12)
    assert r["Sm"] == 0.0  # object part 0, every quadrant's SSIM negative, clipped at 0
    assert r["wF"] == pytest.approx(0.0, abs=1e-9)
    # Thresholds 1..255: fg/fg and bg/bg parts are empty, the other two have alignment -1 -> 0. Threshold 0: 25/99.
    assert r["maxE"] == pytest.approx(25 / 99, abs=1e-9)
    assert r["meanE"] == pytest.approx(25 / 99 / 256, abs=1e-9)
    assert r["adpE"] == pytest.approx(0.0, abs=1e-9)
    # The boundary metric only sees edges: the inverted mask's boundary is the 20-pixel ring just outside the
    # square (the image frame is not a boundary), the ground truth's the 12-pixel ring just inside; every pixel
    # of either ring is at most sqrt(2) from the other ring -> P = R = F = 1.
    assert r["relaxF_boundary"] == pytest.approx(1.0)


# ------------------------------------------------------------ boundary metric


def square(size, top, left, side):
    mask = np.zeros((size, size), dtype=bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_boundary_is_mask_xor_3x3_erosion_and_frame_is_not_boundary():
    # A 10x10 square: its boundary is the outer ring, 100 - 8*8 = 36 pixels.
    assert mask_boundary(square(20, 5, 5, 10)).sum() == 36
    assert mask_boundary(square(20, 5, 5, 10))[5:15, 5:15].sum() == 36
    # A diagonal step is removed by the 3x3 square (8-neighbourhood): the pixel at (1, 1) of a 3x3 block is interior.
    assert not mask_boundary(square(5, 1, 1, 3))[2, 2]
    # The left half of a 6x6 image touching the frame: only the inner edge (column 2) is a boundary.
    half = np.zeros((6, 6), dtype=bool)
    half[:, :3] = True
    expected = np.zeros_like(half)
    expected[:, 2] = True
    np.testing.assert_array_equal(mask_boundary(half), expected)
    assert not mask_boundary(np.ones((6, 6), dtype=bool)).any()


def test_shifted_square_relaxed_precision_recall():
    gt = square(24, 5, 5, 10)  # rows 5..14, cols 5..14; boundary: 36 pixels
    pred = square(24, 5, 9, 10)  # shifted 4 px right: rows 5..14, cols 9..18; boundary: 36 pixels
    # Predicted boundary pixels within 3 px (Euclidean) of the GT boundary:
    #   top row (5, 9..18): cols 9..14 lie on the GT top row (d=0), cols 15,16,17 at d=1,2,3, col 18 at d=4 -> 9
    #   bottom row: the same -> 9
    #   left column (6..13, 9): GT left column is 4 px away; the GT top/bottom rows are r-5 / 14-r away
    #     -> in for r = 6,7,8 and 11,12,13 -> 6
    #   right column (6..13, 18): the GT right column is 4 px away, corners farther -> 0
    #   precision = 24 / 36 = 2/3; recall is the same by mirror symmetry (x -> 23 - x swaps the squares).
    f, p, r = relaxed_boundary_fmeasure(pred, gt)
    assert p == pytest.approx(24 / 36)
    assert r == pytest.approx(24 / 36)
    assert f == pytest.approx(2 / 3)  # P == R -> F == P for any beta
    # rho is inclusive: a 3 px shift keeps every boundary pixel within 3 px of the other boundary.
    assert relaxed_boundary_fmeasure(square(24, 5, 8, 10), gt) == (1.0, 1.0, 1.0)
    # ... and a smaller radius loses pixels again.
    assert relaxed_boundary_fmeasure(square(24, 5, 8, 10), gt, radius=2)[1] < 1.0


def test_relaxed_boundary_beta_weighting():
    gt = square(40, 5, 5, 10)  # boundary 36 pixels
    pred = gt | square(40, 30, 30, 4)  # + a far 4x4 blob whose boundary (16 - 4 = 12 pixels) matches nothing
    # P = 36 / 48 = 0.75, R = 36 / 36 = 1, F = 1.3 * 0.75 * 1 / (0.3 * 0.75 + 1) = 0.975 / 1.225
    f, p, r = relaxed_boundary_fmeasure(pred, gt)
    assert (p, r) == (pytest.approx(0.75), pytest.approx(1.0))
    assert f == pytest.approx(0.975 / 1.225)
    # Swapping the roles swaps P and R and changes F, because beta^2 = 0.3 weights precision more.
    f_swapped, p_swapped, r_swapped = relaxed_boundary_fmeasure(gt, pred)
    assert (p_swapped, r_swapped) == (pytest.approx(1.0), pytest.approx(0.75))
    assert f_swapped == pytest.approx(1.3 * 0.75 / (0.3 + 0.75))


def test_relaxed_boundary_empty_rules():
    empty = np.zeros((12, 12), dtype=bool)
    assert relaxed_boundary_fmeasure(empty, empty) == (1.0, 1.0, 1.0)
    assert relaxed_boundary_fmeasure(square(12, 2, 2, 5), empty) == (0.0, 0.0, 0.0)
    assert relaxed_boundary_fmeasure(empty, square(12, 2, 2, 5)) == (0.0, 0.0, 0.0)


def _brute_force_boundary_f(pred, gt, radius=3, beta2=0.3):
    """An independent, loop-based version of the definition (8-neighbour test, pairwise distances)."""

    def boundary(mask):
        h, w = mask.shape
        out = set()
        for y, x in zip(*np.nonzero(mask)):
            for dy, dx in itertools.product((-1, 0, 1), repeat=2):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and not mask[ny, nx]:
                    out.add((int(y), int(x)))
                    break
        return out

    bp, bg = boundary(pred), boundary(gt)
    if not bp or not bg:
        return 1.0 if bp == bg else 0.0

    def share_near(a, b):
        return sum(any(math.dist(p, q) <= radius for q in b) for p in a) / len(a)

    p, r = share_near(bp, bg), share_near(bg, bp)
    return 0.0 if p + r == 0 else (1 + beta2) * p * r / (beta2 * p + r)


def test_relaxed_boundary_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(3)
    for _ in range(6):
        gt = cv2.GaussianBlur(rng.random((18, 22)), (0, 0), 2) > 0.5
        pred = cv2.GaussianBlur(rng.random((18, 22)), (0, 0), 2) > 0.5
        assert relaxed_boundary_fmeasure(pred, gt)[0] == pytest.approx(_brute_force_boundary_f(pred, gt), abs=1e-12)


def test_boundary_metric_binarises_the_normalised_prediction_above_half():
    gt = square_gt()
    # A faint prediction (0 / 0.4) is min-max normalised to 0 / 1 before the 0.5 threshold: a perfect boundary.
    assert scores(gt / 255.0 * 0.4, gt)["relaxF_boundary"] == 1.0
    # Exactly 0.5 after normalisation is not foreground (> 0.5): an 8-bit map with the square at 127 and one
    # corner pixel at 254 normalises to 127/254 = 0.5 on the square -> only the corner is foreground; it is
    # 3*sqrt(2) > 3 px from the nearest GT boundary pixel (3, 3) -> P = R = 0 -> F = 0.
    pred = np.zeros((10, 10), dtype=np.uint8)
    pred[3:7, 3:7] = 127
    pred[0, 0] = 254
    assert scores(pred, gt)["relaxF_boundary"] == 0.0
    # One level up (128/254 > 0.5) the square is foreground: boundary 12 + 1 corner pixel, P = 12/13, R = 1.
    pred[3:7, 3:7] = 128
    p = 12 / 13
    assert scores(pred, gt)["relaxF_boundary"] == pytest.approx(1.3 * p / (0.3 * p + 1))


# ------------------------------------------------ agreement with pysodmetrics


def test_agrees_with_direct_pysodmetrics_calls():
    rng = np.random.default_rng(0)
    pairs = [structured_pair(rng, int(rng.integers(24, 64)), int(rng.integers(24, 64))) for _ in range(12)]
    metrics = SODMetrics()
    for pred, gt in pairs:
        metrics.update(pred, gt)
    ours = metrics.compute()
    reference = pysod_reference([(np.rint(p * 255).astype(np.uint8), g) for p, g in pairs])
    for name, value in reference.items():
        assert ours[name] == pytest.approx(float(value), abs=1e-6), name
    # The data is not degenerate: the metrics are away from their extremes.
    assert 0.2 < ours["maxF"] < 0.999 and 0.01 < ours["MAE"] < 0.5 and 0 < ours["relaxF_boundary"] < 1
    assert ours["count"] == 12
    assert set(ours) == set(METRIC_KEYS) | {"count"}


def test_merged_accumulators_equal_one_accumulator():
    rng = np.random.default_rng(1)
    pairs = [structured_pair(rng, 32, 40) for _ in range(9)]
    single, first, second = SODMetrics(), SODMetrics(), SODMetrics()
    for i, (pred, gt) in enumerate(pairs):
        single.update(pred, gt)
        # Interleaved, the way a distributed sampler splits a dataset.
        (first if i % 2 == 0 else second).update(pred, gt)
    expected = single.compute()
    # States survive a pickle round trip (what torch.distributed / accelerate gather_object do).
    states = [pickle.loads(pickle.dumps(m.state())) for m in (second, first)]
    assert SODMetrics.from_states(states).compute() == expected
    assert SODMetrics().merge(first).merge(second).compute() == expected


def test_keys_count_each_image_once_across_ranks():
    rng = np.random.default_rng(2)
    pairs = [structured_pair(rng, 30, 30) for _ in range(5)]
    single = SODMetrics()
    for i, (pred, gt) in enumerate(pairs):
        single.update(pred, gt, key=i)
    rank0, rank1 = SODMetrics(), SODMetrics()
    for i in (0, 2, 4):
        rank0.update(*pairs[i], key=i)
    for i in (1, 3, 0):  # the sampler padded rank 1 with sample 0 again
        rank1.update(*pairs[i], key=i)
    assert rank1.update(*pairs[1], key=1) is None  # a repeat within one accumulator is skipped as well
    merged = SODMetrics.from_states([rank0.state(), rank1.state()])
    assert len(merged) == 5
    assert merged.compute() == single.compute()


def test_merge_refuses_other_boundary_radius():
    with pytest.raises(ValueError, match="radii"):
        SODMetrics(boundary_radius=3).merge(SODMetrics(boundary_radius=5))


# -------------------------------------------------------------------- rules


def test_size_mismatch_resizes_prediction_bilinearly_to_gt():
    gt = square_gt()
    # A perfect prediction at twice the size (each pixel a 2x2 block): a 2x bilinear shrink averages each block
    # exactly, so it comes back as the ground truth itself.
    big = np.kron(gt, np.ones((2, 2), dtype=np.uint8))
    r = scores(big, gt)
    assert r["MAE"] == 0.0 and r["maxF"] == pytest.approx(1.0) and r["relaxF_boundary"] == 1.0
    # In general: the same as scoring cv2's bilinear resize of the 8-bit prediction at the ground truth's size.
    rng = np.random.default_rng(4)
    pred, gt = structured_pair(rng, 37, 53)
    pred_big = cv2.resize(pred, (91, 70), interpolation=cv2.INTER_LINEAR)
    pred_u8 = np.rint(pred_big * 255).astype(np.uint8)
    resized = cv2.resize(pred_u8, (53, 37), interpolation=cv2.INTER_LINEAR)
    assert scores(pred_big, gt) == scores(resized, gt)
    ours, ref = scores(pred_big, gt), pysod_reference([(resized, gt)])
    for name, value in ref.items():
        assert ours[name] == pytest.approx(float(value), abs=1e-6)


def test_all_zero_ground_truth():
    rng = np.random.default_rng(5)
    pred = rng.random((20, 24))
    pred_u8 = np.rint(pred * 255).astype(np.uint8)
    normalised = (pred_u8 / 255 - pred_u8.min() / 255) / (pred_u8.max() / 255 - pred_u8.min() / 255)
    r = scores(pred, np.zeros((20, 24), dtype=np.uint8))
    assert r["maxF"] == 0.0 and r["meanF"] == 0.0 and r["adpF"] == 0.0  # recall is 0 at every threshold
    assert r["wF"] == 0.0
    assert r["MAE"] == pytest.approx(normalised.mean())
    assert r["Sm"] == pytest.approx(1 - normalised.mean())
    # E-measure of an empty mask: the share of pixels predicted background, over (N - 1).
    assert r["adpE"] == pytest.approx(np.count_nonzero(normalised < 2 * normalised.mean()) / (20 * 24 - 1))
    assert r["relaxF_boundary"] == 0.0  # the prediction has a boundary, the mask has none
    # Empty prediction for an empty mask: the boundary rule gives 1, E-measure counts every pixel as right.
    r = scores(np.zeros((20, 24)), np.zeros((20, 24), dtype=np.uint8))
    assert r["relaxF_boundary"] == 1.0
    assert r["maxE"] == pytest.approx(480 / 479)
    assert r["MAE"] == 0.0 and r["Sm"] == 1.0


def test_non_binary_ground_truth_is_binarised_above_128():
    rng = np.random.default_rng(6)
    pred, gt = structured_pair(rng, 30, 34)
    soft = gt.copy()
    soft[gt == 255] = rng.choice([129, 200, 255], size=int((gt == 255).sum()))
    soft[gt == 0] = rng.choice([0, 60, 128], size=int((gt == 0).sum()))  # 128 is background
    assert scores(pred, soft) == scores(pred, gt)
    # A float ground truth goes through the same 8-bit rule; bool masks are 0/255.
    assert scores(pred, soft / 255.0) == scores(pred, gt)
    assert scores(pred, gt > 0) == scores(pred, gt)
    # A 0/1 label map (integer or PIL) is read as 0/255 instead of silently scoring an empty mask.
    assert scores(pred, (gt > 0).astype(np.uint8)) == scores(pred, gt)
    assert scores(pred, Image.fromarray((gt > 0).astype(np.uint8))) == scores(pred, gt)


def test_input_kinds_agree():
    rng = np.random.default_rng(7)
    pred, gt = structured_pair(rng, 28, 36)
    pred_u8 = np.rint(pred * 255).astype(np.uint8)
    expected = scores(pred, gt)
    assert scores(pred_u8, gt) == expected
    assert scores(Image.fromarray(pred_u8), Image.fromarray(gt)) == expected
    assert scores(Image.fromarray(pred_u8).convert("RGB"), gt) == expected
    assert scores(torch.from_numpy(pred)[None], torch.from_numpy(gt > 0)) == expected  # [1,H,W] tensors
    assert scores(pred_u8[..., None], gt[None]) == expected
    pred16 = pred_u8.astype(np.uint16) * 257  # a 16-bit PNG of the same map
    assert scores(Image.fromarray(pred16), gt) == expected


def test_update_batch_of_tensors():
    rng = np.random.default_rng(8)
    pairs = [structured_pair(rng, 24, 24) for _ in range(3)]
    preds = torch.tensor(np.stack([p for p, _ in pairs]), dtype=torch.bfloat16)[:, None]  # [B,1,H,W] bf16
    labels = torch.tensor(np.stack([g / 255.0 for _, g in pairs]), dtype=torch.float32)[:, None]
    batch = SODMetrics()
    batch.update_batch(preds, labels)
    single = SODMetrics()
    for pred, gt in zip(preds, labels):
        single.update(pred.float().numpy(), gt.numpy())
    assert batch.compute() == single.compute()
    assert len(batch) == 3


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        (np.full((4, 4), 1.5), r"\[0, 1\]"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.zeros((2, 4, 4)), "single-channel"),
        (np.zeros((0, 4)), "empty"),
        (np.full((4, 4), -3, dtype=np.int32), "negative"),
    ],
)
def test_bad_input_is_a_clear_error(pred, message):
    with pytest.raises(MetricInputError, match=message):
        SODMetrics().update(pred, np.zeros((4, 4), dtype=np.uint8))


def test_compute_on_empty_accumulator_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        SODMetrics().compute()


def test_format_table_lists_every_metric():
    gt = square_gt()
    table = format_table(scores(gt / 255.0, gt))
    lines = table.splitlines()
    for name in METRIC_KEYS:
        assert any(line.split()[0] == name for line in lines[2:]), name
    assert "MAE" in table and "lower is better" in table
    assert lines[-1].split()[:2] == ["count", "1"]
