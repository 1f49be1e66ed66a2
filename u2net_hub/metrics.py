"""Salient-object-detection metrics: one accumulator for evaluation and training-time validation.

:class:`SODMetrics` scores (prediction, ground truth) pairs with the metrics
of the SOD literature, computed by ``pysodmetrics`` exactly as its toolkits
do, plus the relaxed boundary F-measure of BASNet / U²-Net, which no public
package ships.

The rules, in the order they are applied to each pair:

1. **Inputs.** A prediction or a mask may be a PIL image, a numpy array or a
   torch tensor, of shape HxW, HxWx1 or 1xHxW. Colour images become grey with
   PIL's "L" conversion. ``bool`` arrays are 0/255; float arrays must lie in
   [0, 1] and become 8-bit by ``round(255 * x)``; 16-bit images are scaled to
   8 bits (``x / 257``). Every prediction is thus an 8-bit map, the same map a
   PNG of it holds, so scoring in memory and scoring saved PNGs agree exactly.
2. **Size.** The ground truth is never resized. A prediction of another size
   is resized to the ground truth's size with OpenCV's bilinear filter
   (``cv2.resize(..., INTER_LINEAR)`` on the 8-bit map), as PySODEvalToolkit
   does.
3. **Ground truth.** Foreground is ``value > 128`` on the 8-bit mask, the
   SOD tools' rule (so a grey 128 is background). One exception guards
   against a silent zero: an integer or PIL mask whose maximum is exactly 1 is
   a 0/1 label map and is read as 0/255.
4. **Prediction normalisation.** ``pysodmetrics`` divides by 255 and, when the
   map is not constant, min-max normalises it per image (MATLAB's
   ``mapminmax``, what the published numbers used). Every metric below,
   including the boundary one, sees that normalised map.
5. **Per-image scores, then the mean over images.**

   * F-measure with beta^2 = 0.3 at the 256 thresholds 0..255: the per-image
     F-curves are averaged over images; ``maxF`` is the curve's maximum,
     ``meanF`` its mean. ``adpF`` thresholds each image at
     ``min(2 * mean(pred), 1)``.
   * ``MAE``: mean absolute error between the normalised map and the 0/1 mask.
   * ``wF``: weighted F-measure (Margolin et al. 2014), with the reference
     code's beta^2 = 1, as pysodmetrics' ``WeightedFmeasure()`` and the SOD
     literature report it.
   * ``Sm``: S-measure with alpha = 0.5.
   * ``maxE``, ``meanE``, ``adpE``: E-measure over the same 256 thresholds
     (curve averaged over images, then max / mean) and at the adaptive one;
     like the reference code it divides by N - 1 pixels, so a perfect map
     scores N / (N - 1), a hair above 1.
   * ``relaxF_boundary``: see :func:`relaxed_boundary_fmeasure`; the
     prediction is binarised at ``> 0.5`` (pysodmetrics' own binarisation of
     maps for the boundary-oriented HCE metric).

   An all-zero ground truth is scored the way pysodmetrics scores it: recall
   is 0 so the F-curve and ``adpF`` are 0, ``wF`` is 0, ``MAE`` is the mean of
   the prediction, ``Sm`` is ``1 - mean(pred)``, E-measure counts the pixels
   predicted as background. For the boundary metric, see its own rules.

Several processes: each rank keeps its own accumulator; ``state()`` returns
plain numpy arrays (per-image F- and E-curves and per-image scores) that can
be gathered with ``torch.distributed.all_gather_object`` or Accelerate's
``gather_object``; ``SODMetrics.from_states(states)`` rebuilds one accumulator
whose ``compute()`` equals the single-process result. Means are taken with
``math.fsum`` (exactly rounded), so the result does not depend on the order
in which ranks saw their images. Passing ``key=`` to :meth:`SODMetrics.update`
(an image id) makes a key seen twice count once, which absorbs the samples
that distributed samplers repeat to give every rank equal batches.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Hashable, Iterable, Mapping

import numpy as np
from PIL import Image, ImageOps

#: beta^2 of the F-measures (maxF, meanF, adpF, relaxF_boundary).
BETA2 = 0.3
#: rho of the relaxed boundary F-measure, in pixels (Euclidean distance).
BOUNDARY_RADIUS = 3
#: The flat result keys of :meth:`SODMetrics.compute`, in display order ("count" follows).
METRIC_KEYS = ("maxF", "meanF", "adpF", "MAE", "wF", "Sm", "maxE", "meanE", "adpE", "relaxF_boundary")
#: Metrics where lower is better (all others: higher is better).
LOWER_IS_BETTER = frozenset({"MAE"})

METRIC_DESCRIPTIONS = {
    "maxF": "max F-measure over 256 thresholds (beta^2=0.3)",
    "meanF": "mean F-measure over 256 thresholds",
    "adpF": "F-measure at the adaptive threshold 2*mean",
    "MAE": "mean absolute error",
    "wF": "weighted F-measure (Margolin et al.)",
    "Sm": "S-measure (alpha=0.5)",
    "maxE": "max E-measure over 256 thresholds",
    "meanE": "mean E-measure over 256 thresholds",
    "adpE": "E-measure at the adaptive threshold",
    "relaxF_boundary": f"relaxed boundary F-measure (rho={BOUNDARY_RADIUS}px)",
}

_STATE_VERSION = 1
_CURVE_LEN = 256
_SCALARS = ("adpF", "adpE", "MAE", "Sm", "wF", "relaxF_boundary")
_CURVES = ("F_curve", "E_curve")

# The 3x3 square (8-neighbourhood) structuring element of the boundary erosion.
_EROSION_ELEMENT = np.ones((3, 3), dtype=bool)


class MetricInputError(ValueError):
    """A prediction or mask that cannot be scored (with the reason)."""


# ----------------------------------------------------------------- conversion


def _to_array(x: Any, what: str) -> tuple[np.ndarray, bool]:
    """A 2-D array from PIL/numpy/torch input; the flag tells whether it came from an 8-bit-or-wider integer image."""
    if isinstance(x, Image.Image):
        x = ImageOps.exif_transpose(x)
        if x.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            return np.asarray(x), x.mode != "F"
        return np.asarray(x.convert("L")), True
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch here
        x = x.detach().cpu()
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
    arr = np.asarray(x)
    if arr.ndim == 3:
        if arr.shape[0] == 1:
            arr = arr[0]
        elif arr.shape[-1] == 1:
            arr = arr[..., 0]
        elif arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
            return np.asarray(Image.fromarray(arr).convert("L")), True
    if arr.ndim != 2:
        raise MetricInputError(f"{what}: expected a single-channel map (HxW, HxWx1 or 1xHxW), got shape {arr.shape}")
    if arr.size == 0:
        raise MetricInputError(f"{what}: the map is empty (shape {arr.shape})")
    return arr, arr.dtype.kind in "iu"


def to_uint8(x: Any, what: str = "map", *, labels: bool = False) -> np.ndarray:
    """The 8-bit map of a prediction or mask (the module docstring's rule 1; rule 3's 0/1 labels when ``labels``).

    Args:
        x: a PIL image, numpy array or torch tensor (H x W, H x W x 1 or 1 x H x W).
        what: how errors name the input ("prediction", "ground truth").
        labels: return the 0/1 labels of a ground truth instead.

    Returns:
        A uint8 H x W array.
    """
    arr, integer = _to_array(x, what)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise MetricInputError(f"{what}: contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise MetricInputError(
                f"{what}: float values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]; pass uint8 for 0..255 maps"
            )
        return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if not integer:
        raise MetricInputError(f"{what}: unsupported dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise MetricInputError(f"{what}: negative values (min {lo})")
    if labels and hi == 1:
        return arr.astype(np.uint8) * 255
    if hi > 255:
        if hi > 65535:
            raise MetricInputError(f"{what}: integer values above 65535 (max {hi})")
        return np.rint(arr.astype(np.float64) / 257.0).astype(np.uint8)
    return arr.astype(np.uint8)


def resize_to(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an 8-bit prediction to the ground truth's size, as PySODEvalToolkit does.

    Args:
        pred: a uint8 H x W prediction.
        shape: the target (H, W).

    Returns:
        The uint8 prediction at `shape` (`pred` itself when it already has it).
    """
    if pred.shape == tuple(shape):
        return pred
    import cv2

    return cv2.resize(pred, dsize=(int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def normalize_prediction(pred_u8: np.ndarray) -> np.ndarray:
    """pysodmetrics' view of a prediction: /255, then min-max normalised unless constant.

    Args:
        pred_u8: a uint8 prediction.

    Returns:
        A float64 map in [0, 1].
    """
    pred = pred_u8 / 255.0
    lo, hi = pred.min(), pred.max()
    if hi != lo:
        pred = (pred - lo) / (hi - lo)
    return pred


def prediction_from_image(image: Image.Image) -> tuple[Image.Image, bool]:
    """The map to score in a saved prediction image: its alpha channel when it has a varying one
    (an RGBA cutout, as `u2net predict --format rgba` and rembg write), else the image itself.

    Why: the RGB of a cutout is the photo, not the prediction; scoring its brightness gives nonsense.

    Returns:
        (the map, whether it came from the alpha channel).
    """
    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A") if mode in ("P", "PA") else image.getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha, True
    return image, False


def load_mask(path) -> Image.Image:
    """Open a mask or saved prediction file (fully decoded, so a truncated file fails here)."""
    with Image.open(path) as image:
        image.load()
        return image.copy()


# ------------------------------------------------------------ boundary metric


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary of a binary mask: the mask XOR its erosion by the 3x3 square (8-neighbourhood).

    The erosion treats pixels outside the image as foreground (OpenCV's
    default border for ``erode``), so where an object touches the image frame
    the frame is not a boundary; an all-foreground mask has no boundary.
    """
    import cv2

    mask = np.asarray(mask, dtype=bool)
    eroded = cv2.erode(mask.astype(np.uint8), _EROSION_ELEMENT.astype(np.uint8)).astype(bool)
    return mask & ~eroded


def _disk(radius: float) -> np.ndarray:
    """All integer offsets (dy, dx) with dy^2 + dx^2 <= radius^2."""
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx <= radius * radius).astype(np.uint8)


def _near(boundary: np.ndarray, radius: float) -> np.ndarray:
    """Pixels whose Euclidean distance to the nearest ``boundary`` pixel is at most ``radius``.

    Pixel offsets are integers, so this is exactly a dilation by the disk of
    offsets within ``radius`` (much faster than a distance transform).
    """
    import cv2

    return cv2.dilate(boundary.astype(np.uint8), _disk(radius)).astype(bool)


def relaxed_boundary_fmeasure(
    pred_mask: np.ndarray, gt_mask: np.ndarray, radius: float = BOUNDARY_RADIUS, beta2: float = BETA2
) -> tuple[float, float, float]:
    """Relaxed boundary F-measure of two binary masks: ``(F, precision, recall)``.

    Boundaries come from :func:`mask_boundary`. Relaxed precision is the share
    of predicted boundary pixels within ``radius`` (Euclidean, inclusive) of a
    ground-truth boundary pixel; relaxed recall the share of ground-truth
    boundary pixels within ``radius`` of a predicted one;
    ``F = (1 + beta2) P R / (beta2 P + R)`` (0 when P = R = 0).

    Empty boundaries: both empty (e.g. an empty prediction for an empty mask)
    give F = P = R = 1; exactly one empty gives F = P = R = 0.
    """
    pred_b = mask_boundary(pred_mask)
    gt_b = mask_boundary(gt_mask)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 or n_gt == 0:
        value = 1.0 if n_pred == n_gt else 0.0
        return value, value, value
    precision = float(np.count_nonzero(pred_b & _near(gt_b, radius))) / n_pred
    recall = float(np.count_nonzero(gt_b & _near(pred_b, radius))) / n_gt
    if precision + recall == 0:
        return 0.0, precision, recall
    return (1 + beta2) * precision * recall / (beta2 * precision + recall), precision, recall


# ---------------------------------------------------------------- accumulator


def _pysod():
    import py_sod_metrics as psm

    with warnings.catch_warnings():
        # Fmeasure warns that FmeasureV2 will replace it; it is the one the published numbers used.
        warnings.simplefilter("ignore")
        fm = psm.Fmeasure(beta=BETA2)
    return fm, psm.Emeasure(), psm.MAE(), psm.Smeasure(alpha=0.5), psm.WeightedFmeasure()


def score_pair(pred: Any, gt: Any, *, boundary_radius: float = BOUNDARY_RADIUS, _metrics=None) -> dict[str, Any]:
    """Per-image statistics of one pair: the two 256-point curves and the scalar scores.

    Args:
        pred: the predicted map (resized to the ground truth's size when it differs).
        gt: the ground-truth mask.
        boundary_radius: the tolerance of the relaxed boundary F-measure, in pixels.

    Returns:
        The curves (``F_curve``, ``E_curve``) and scalars (``MAE``, ``Sm``, ``wF``, ...).
    """
    gt_u8 = to_uint8(gt, "ground truth", labels=True)
    pred_u8 = resize_to(to_uint8(pred, "prediction"), gt_u8.shape)
    fm, em, mae, sm, wfm = _metrics or _pysod()
    for metric in (fm, em, mae, sm, wfm):
        metric.step(pred_u8, gt_u8)
    stats = {
        "F_curve": np.asarray(fm.changeable_fms[-1], dtype=np.float64),
        "E_curve": np.asarray(em.changeable_ems[-1], dtype=np.float64),
        "adpF": float(fm.adaptive_fms[-1]),
        "adpE": float(em.adaptive_ems[-1]),
        "MAE": float(mae.maes[-1]),
        "Sm": float(sm.sms[-1]),
        "wF": float(wfm.weighted_fms[-1]),
    }
    # The accumulators are only used per image; drop what they keep.
    for values in (fm.changeable_fms, fm.adaptive_fms, fm.precisions, fm.recalls, em.changeable_ems,
                   em.adaptive_ems, mae.maes, sm.sms, wfm.weighted_fms):
        values.clear()
    pred_binary = normalize_prediction(pred_u8) > 0.5
    stats["relaxF_boundary"] = relaxed_boundary_fmeasure(pred_binary, gt_u8 > 128, boundary_radius)[0]
    return stats


def _mean(values: np.ndarray) -> float:
    return math.fsum(values.tolist()) / len(values)


class SODMetrics:
    """Accumulates per-image SOD statistics; :meth:`compute` returns the dataset's metrics.

    >>> metrics = SODMetrics()
    >>> metrics.update(probability_map, mask)   # any sizes; float [0,1], uint8 or PIL
    >>> metrics.compute()["maxF"]

    See the module docstring for every rule (sizes, thresholds, empty masks)
    and for merging the accumulators of several processes.
    """

    def __init__(self, boundary_radius: float = BOUNDARY_RADIUS):
        self.boundary_radius = boundary_radius
        self._metrics = _pysod()
        self.reset()

    def reset(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._keys: list[Hashable | None] = []
        self._seen: set = set()

    def __len__(self) -> int:
        return len(self._records)

    def update(self, pred: Any, gt: Any, key: Hashable | None = None) -> dict[str, float] | None:
        """Score one pair and keep its statistics; returns its per-image scalar scores.

        With ``key`` given, a key already seen is skipped (returns None), so the
        samples a distributed sampler repeats count once.

        Args:
            pred: the predicted map (float in [0, 1] or 8-bit; resized to the ground truth's size).
            gt: the ground-truth mask.
            key: an id of the pair, or None.

        Returns:
            The pair's scalar scores, or None for a key already seen.

        Raises:
            MetricInputError: input that cannot be scored.
        """
        if key is not None and key in self._seen:
            return None
        stats = score_pair(pred, gt, boundary_radius=self.boundary_radius, _metrics=self._metrics)
        self._add(stats, key)
        return {name: stats[name] for name in _SCALARS}

    def update_batch(self, preds: Iterable[Any], gts: Iterable[Any], keys: Iterable[Hashable] | None = None) -> None:
        """:meth:`update` over pairs, e.g. a validation batch (tensors of shape [B,1,H,W] or [B,H,W] work).

        Args:
            preds: the predicted maps.
            gts: the ground-truth masks, in the same order.
            keys: one key per pair (see :meth:`update`), or None.
        """
        preds, gts = list(preds), list(gts)
        if len(preds) != len(gts):
            raise MetricInputError(f"{len(preds)} predictions for {len(gts)} ground truths")
        keys = [None] * len(preds) if keys is None else list(keys)
        for pred, gt, key in zip(preds, gts, keys):
            self.update(pred, gt, key=key)

    def _add(self, stats: Mapping[str, Any], key: Hashable | None) -> None:
        if key is not None:
            self._seen.add(key)
        self._records.append(stats)
        self._keys.append(key)

    # -- several processes

    def state(self) -> dict[str, Any]:
        """Everything :meth:`compute` needs, as plain numpy arrays and lists (picklable, gatherable).

        Returns:
            The state; :meth:`merge` and :meth:`from_states` take it back.
        """
        n = len(self._records)
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "boundary_radius": self.boundary_radius,
            "keys": list(self._keys),
        }
        for name in _CURVES:
            state[name] = (
                np.stack([r[name] for r in self._records]) if n else np.zeros((0, _CURVE_LEN), dtype=np.float64)
            )
        for name in _SCALARS:
            state[name] = np.array([r[name] for r in self._records], dtype=np.float64)
        return state

    def merge(self, other: "SODMetrics | Mapping[str, Any]") -> "SODMetrics":
        """Add another accumulator's (or state's) images to this one; keyed duplicates count once.

        Args:
            other: an accumulator or what its :meth:`state` returned.

        Returns:
            This accumulator.
        """
        state = other.state() if isinstance(other, SODMetrics) else other
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported SODMetrics state version {state.get('version')!r}")
        if state["boundary_radius"] != self.boundary_radius:
            raise ValueError(
                f"cannot merge states with boundary radii {state['boundary_radius']} and {self.boundary_radius}"
            )
        for i, key in enumerate(state["keys"]):
            if key is not None and key in self._seen:
                continue
            record = {name: np.asarray(state[name][i], dtype=np.float64) for name in _CURVES}
            record.update({name: float(state[name][i]) for name in _SCALARS})
            self._add(record, key)
        return self

    @classmethod
    def from_states(cls, states: Iterable[Mapping[str, Any]]) -> "SODMetrics":
        """One accumulator from the states of several (e.g. per-rank ones).

        Args:
            states: what each accumulator's :meth:`state` returned.

        Returns:
            A new accumulator holding every image once.
        """
        states = list(states)
        merged = cls(boundary_radius=states[0]["boundary_radius"] if states else BOUNDARY_RADIUS)
        for state in states:
            merged.merge(state)
        return merged

    # -- results

    def curves(self) -> dict[str, np.ndarray]:
        """The dataset's mean F- and E-curves (256 points, pysodmetrics' order: threshold 255 first).

        Returns:
            ``{"F_curve": ..., "E_curve": ...}``.
        """
        if not self._records:
            raise ValueError("SODMetrics is empty: call update() with at least one pair first")
        out = {}
        for name in _CURVES:
            stacked = np.stack([r[name] for r in self._records])
            out[name] = np.array([math.fsum(col) for col in stacked.T.tolist()]) / len(stacked)
        return out

    def compute(self) -> dict[str, float]:
        """The dataset's scores.

        Returns:
            ``maxF, meanF, adpF, MAE, wF, Sm, maxE, meanE, adpE, relaxF_boundary`` and ``count``.
        """
        curves = self.curves()
        scalars = {name: _mean(np.array([r[name] for r in self._records])) for name in _SCALARS}
        result = {
            "maxF": float(curves["F_curve"].max()),
            "meanF": float(np.mean(curves["F_curve"])),
            "adpF": scalars["adpF"],
            "MAE": scalars["MAE"],
            "wF": scalars["wF"],
            "Sm": scalars["Sm"],
            "maxE": float(curves["E_curve"].max()),
            "meanE": float(np.mean(curves["E_curve"])),
            "adpE": scalars["adpE"],
            "relaxF_boundary": scalars["relaxF_boundary"],
            "count": len(self._records),
        }
        return result


def format_table(results: Mapping[str, Any], digits: int = 4) -> str:
    """A plain-text table of a :meth:`SODMetrics.compute` result (extra numeric keys are listed after).

    Args:
        results: what :meth:`SODMetrics.compute` returned.
        digits: decimals shown.

    Returns:
        The table, one metric a line.
    """
    rows = []
    for name in METRIC_KEYS:
        if name in results:
            direction = "lower is better" if name in LOWER_IS_BETTER else ""
            note = METRIC_DESCRIPTIONS[name] + (f" ({direction})" if direction else "")
            rows.append((name, f"{float(results[name]):.{digits}f}", note))
    for name, value in results.items():
        if name in METRIC_KEYS or name == "count" or isinstance(value, bool):
            continue
        if isinstance(value, (int, float, np.integer, np.floating)):
            rows.append((name, f"{float(value):.{digits}f}", ""))
    if "count" in results:
        rows.append(("count", str(int(results["count"])), "images scored"))
    width_name = max([len("metric")] + [len(r[0]) for r in rows])
    width_value = max([len("value")] + [len(r[1]) for r in rows])
    lines = [f"{'metric':<{width_name}}  {'value':>{width_value}}  description"]
    lines.append(f"{'-' * width_name}  {'-' * width_value}  {'-' * 11}")
    lines += [f"{n:<{width_name}}  {v:>{width_value}}  {d}".rstrip() for n, v, d in rows]
    return "\n".join(lines)
