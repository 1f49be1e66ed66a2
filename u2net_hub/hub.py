"""Strict weight loading and model-card rendering for the Hub mixin.

The mixin's default is a silent ``strict=False`` load; users of a saliency
model would rather get one clear error that says which keys or which variant
are wrong than a half-random network.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .configs import PARAMETER_COUNTS, VARIANTS

if TYPE_CHECKING:
    from .modeling import U2Net

MODEL_CARD_TEMPLATE = "model_card.md"


class CheckpointMismatchError(ValueError):
    """Weights that do not fit the model they are loaded into."""


def load_safetensors_state_dict(path: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise CheckpointMismatchError(f"cannot read {path} as safetensors: {error}") from None


@lru_cache(maxsize=None)
def variant_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Every key and shape of a published variant, computed on the meta device (no memory)."""
    from .modeling import U2Net

    with torch.device("meta"):
        model = U2Net(variant=variant)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def detect_variant(state_dict: Mapping[str, Any]) -> str | None:
    """'full' or 'tiny' when every weight of the state dict has that variant's shape, else None.

    ``num_batches_tracked`` may be absent (PyTorch 0.4 checkpoints predate it).
    """
    for variant in VARIANTS:
        shapes = variant_shapes(variant)
        required = {k for k in shapes if not k.endswith("num_batches_tracked")}
        if required <= set(state_dict) and set(state_dict) <= set(shapes):
            if all(tuple(state_dict[k].shape) == shapes[k] for k in state_dict):
                return variant
    return None


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: "U2Net", state_dict: Mapping[str, Any], source: str = "the checkpoint") -> None:
    """Raise one CheckpointMismatchError naming what differs; return quietly when all keys and shapes match."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k]
    )
    if not (missing or unexpected or wrong_shape):
        return
    detected = detect_variant(state_dict)
    problems = []
    if detected is not None and detected != model.variant:
        problems.append(
            f"{source} holds weights of the {detected!r} variant "
            f"({PARAMETER_COUNTS[detected]:,} parameters) but the configuration builds the {model.variant!r} one"
        )
    if missing:
        problems.append(f"{len(missing)} missing keys: {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
    if wrong_shape:
        details = [f"{k} {tuple(state_dict[k].shape)} vs {expected[k]}" for k in wrong_shape]
        problems.append(f"{len(wrong_shape)} keys with the wrong shape: {_preview(details, 4)}")
    raise CheckpointMismatchError(f"weights in {source} do not fit this U2Net: " + "; ".join(problems))


def _template_text() -> str:
    return resources.files("u2net_hub").joinpath(MODEL_CARD_TEMPLATE).read_text(encoding="utf-8")


def render_model_card(model: "U2Net", **kwargs: Any):
    """Render the repository's model_card.md for this model.

    Keyword arguments reach the template: ``repo_id`` (or ``model_ref``, the
    expression the usage snippet passes to from_pretrained), ``training`` (a dict:
    dataset, command, steps, wall time, recipe), ``metrics`` (a dict of name to
    value, with ``metrics_dataset``) and ``notes`` (free markdown).
    """
    from huggingface_hub import ModelCard, ModelCardData

    info = model._hub_mixin_info
    card_data = ModelCardData(**info.model_card_data.to_dict())
    training = kwargs.get("training") or {}
    if training.get("dataset_id"):
        card_data.datasets = [training["dataset_id"]]
    repo_id = kwargs.pop("repo_id", None) or "path/to/this/folder"
    context = {
        "repo_id": repo_id,
        # How the usage snippet names the model: a quoted id, or a constant such as DEMO_MODEL.
        "model_ref": kwargs.pop("model_ref", None) or json.dumps(repo_id),
        "variant": model.variant,
        "num_parameters": model.num_parameters,
        "size_mb": model.num_parameters * 4 / 1e6,
        "preprocessing": model.preprocessing,
        "paper_url": info.paper_url,
        "repo_url": info.repo_url,
        "training": training,
        "metrics": kwargs.pop("metrics", None) or {},
        "metrics_dataset": kwargs.pop("metrics_dataset", None),
        "notes": kwargs.pop("notes", None),
    }
    kwargs.pop("training", None)
    context.update(kwargs)
    return ModelCard.from_template(card_data, template_str=_template_text(), **context)
