"""Released `.pth` checkpoints -> `save_pretrained` folders.

The authors' checkpoints (u2net.pth, u2netp.pth, u2net_human_seg.pth,
u2net_portrait.pth) are pickled state dicts saved by PyTorch 0.4. They are
read with ``torch.load(weights_only=True)`` only, so a file that needs code
execution to unpickle is refused rather than run. Their keys already match
:class:`~u2net_hub.modeling.U2Net`, so conversion is: unwrap, strip a
DataParallel ``module.`` prefix, fill the ``num_batches_tracked`` counters
PyTorch 0.4 did not have, detect the variant from the shapes, save, reload
and compare outputs with a model built straight from the source weights.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants

from .configs import PARAMETER_COUNTS, VARIANT_ALIASES
from .hub import check_state_dict
from .modeling import U2Net, detect_variant, variant_shapes

#: Keys under which training scripts commonly nest the state dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
DATA_PARALLEL_PREFIX = "module."
PORTRAIT_INPUT_SIZE = 512
PORTRAIT_NOTE = (
    "**Portrait drawing model.** These are the authors' `u2net_portrait.pth` weights: the model turns a "
    "face photo into a line drawing. Their demo feeds 512x512 input (this configuration's `input_size`) "
    "and uses `1 - fused` as the drawing, so invert `probability` (`1 - prediction.probability`) "
    "rather than using it as a saliency mask."
)


class ConversionError(ValueError):
    """A checkpoint that cannot be converted, with the file and the reason."""


@dataclass
class ConversionResult:
    output_dir: Path
    variant: str
    num_parameters: int
    filled_num_batches_tracked: int
    stripped_prefix: str | None
    wrapper_key: str | None
    max_abs_difference: float
    portrait: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What the conversion did, a few lines for the terminal."""
        lines = [
            f"converted the {self.variant!r} variant ({self.num_parameters:,} parameters) to {self.output_dir}",
        ]
        if self.wrapper_key:
            lines.append(f"  weights read from the checkpoint's {self.wrapper_key!r} entry")
        if self.stripped_prefix:
            lines.append(f"  stripped the DataParallel prefix {self.stripped_prefix!r}")
        if self.filled_num_batches_tracked:
            lines.append(f"  filled {self.filled_num_batches_tracked} missing num_batches_tracked counters with 0")
        lines.append(f"  reloaded with U2Net.from_pretrained: outputs match the source weights (max |diff| {self.max_abs_difference:.1e})")
        if self.portrait:
            lines.append(f"  portrait model: input_size {PORTRAIT_INPUT_SIZE}; use 1 - probability as the drawing")
        return "\n".join(lines)


def read_checkpoint(path: str | Path) -> Any:
    """Read a released checkpoint safely: ``torch.load`` with ``weights_only=True`` (no code runs).

    Args:
        path: the ``.pth`` file.

    Returns:
        What the file holds (a state dict, or a dict wrapping one).

    Raises:
        ConversionError: a missing file, a folder, or a file that is not a weights-only checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file")
    if path.is_dir():
        raise ConversionError(f"{path}: is a folder; expected a .pth checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        culprit = f" (it references {match.group(1)})" if match else ""
        raise ConversionError(
            f"{path}: refused: its pickle needs to run code to load{culprit}, and checkpoints are only read "
            "with torch.load(weights_only=True), i.e. tensors and plain containers. If you trust the file, "
            "re-save just its state dict (torch.save(model.state_dict(), 'clean.pth')) and convert that"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError, ImportError, IndexError, KeyError) as error:
        raise ConversionError(
            f"{path}: not a PyTorch checkpoint torch.load can read ({type(error).__name__}: {error})"
        ) from None


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) > 0 and all(isinstance(v, torch.Tensor) for v in value.values())


def extract_state_dict(checkpoint: Any, source: str = "the checkpoint") -> tuple[dict[str, torch.Tensor], str | None, str | None]:
    """The bare state dict inside a checkpoint (``state_dict``/``model`` wrappers and ``module.`` prefixes removed).

    Args:
        checkpoint: what :func:`read_checkpoint` returned.
        source: how errors name the file.

    Returns:
        ``(state_dict, wrapper_key, stripped_prefix)``, the last two None when absent.

    Raises:
        ConversionError: nothing in the checkpoint is a dict of tensors.
    """
    wrapper = None
    if isinstance(checkpoint, Mapping) and not _is_tensor_dict(checkpoint):
        for key in WRAPPER_KEYS:
            if key in checkpoint and _is_tensor_dict(checkpoint[key]):
                wrapper, checkpoint = key, checkpoint[key]
                break
    if not _is_tensor_dict(checkpoint):
        if isinstance(checkpoint, Mapping):
            described = f"a dict with keys {list(checkpoint)[:10]}"
        else:
            described = f"a {type(checkpoint).__name__}"
        raise ConversionError(
            f"{source} holds {described}, not a state dict of tensors; expected a plain state dict "
            f"or one wrapped under one of {list(WRAPPER_KEYS)}"
        )
    state_dict = {str(k): v for k, v in checkpoint.items()}
    prefix = None
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state_dict):
        prefix = DATA_PARALLEL_PREFIX
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict, wrapper, prefix


def fill_num_batches_tracked(state_dict: dict[str, torch.Tensor], variant: str) -> int:
    """Add the zero ``num_batches_tracked`` counters PyTorch 0.4 checkpoints lack, in place.

    Args:
        state_dict: the weights.
        variant: the variant whose keys to complete.

    Returns:
        How many counters were added.
    """
    added = 0
    for key in variant_shapes(variant):
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = torch.tensor(0, dtype=torch.long)
            added += 1
    return added


def _resolve_variant(state_dict: Mapping[str, torch.Tensor], requested: str, source: str) -> str:
    detected = detect_variant(state_dict)
    if requested in (None, "auto"):
        if detected is None:
            problems = []
            for candidate in ("full", "tiny"):
                with torch.device("meta"):
                    model = U2Net(variant=candidate)
                filled = dict(state_dict)
                fill_num_batches_tracked(filled, candidate)
                try:
                    check_state_dict(model, filled, source=source)
                except ValueError as error:
                    problems.append(f"as {candidate!r}: {str(error).split(': ', 1)[-1]}")
            raise ConversionError(
                f"{source} is not a U²-Net checkpoint of the full (u2net) or tiny (u2netp) variant: "
                + " | ".join(problems)
            )
        return detected
    key = VARIANT_ALIASES.get(str(requested).lower())
    if key is None:
        raise ConversionError(f"unknown variant {requested!r}; use auto, full (u2net) or tiny (u2netp)")
    if detected is not None and detected != key:
        raise ConversionError(
            f"{source} holds {detected!r} weights ({PARAMETER_COUNTS[detected]:,} parameters) but --variant {requested} "
            "was given; use --variant auto"
        )
    return key


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _max_output_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest difference over all seven logit maps on a fixed random input (small: the check must stay cheap)."""
    x = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        left, right = a(x), b(x)
    return max(float((p - q).abs().max()) for p, q in zip(left.all_logits, right.all_logits))


def convert_checkpoint(
    source: str | Path,
    output_dir: str | Path,
    *,
    variant: str = "auto",
    input_size: int | None = None,
    overwrite: bool = False,
    notes: str | None = None,
    tolerance: float = 1e-5,
) -> ConversionResult:
    """Convert a released ``.pth`` into a folder that ``U2Net.from_pretrained`` loads, and verify it.

    Args:
        source: the released ``.pth`` file.
        output_dir: the folder to write (config.json, model.safetensors, README.md).
        variant: "auto" (detected from the weights' shapes), "full"/"u2net" or "tiny"/"u2netp".
        input_size: the network input written to config.json; default 320, or 512 when the
            file name says "portrait".
        overwrite: replace the model files of a non-empty folder.
        notes: an extra Markdown paragraph for the model card.
        tolerance: the largest difference allowed between the original and the reloaded outputs.

    Returns:
        What was converted and how it was verified.

    Raises:
        ConversionError: anything that is not a convertible checkpoint, or a folder in the way.
    """
    source = Path(source)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConversionError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ConversionError(f"{output_dir} is not empty; choose a new folder or pass overwrite=True (--overwrite)")

    checkpoint = read_checkpoint(source)
    state_dict, wrapper, prefix = extract_state_dict(checkpoint, source=str(source))
    del checkpoint
    chosen = _resolve_variant(state_dict, variant, str(source))
    filled = fill_num_batches_tracked(state_dict, chosen)

    portrait = "portrait" in source.name.lower()
    if input_size is None:
        input_size = PORTRAIT_INPUT_SIZE if portrait else 320
    model = U2Net(variant=chosen, input_size=input_size)
    try:
        check_state_dict(model, state_dict, source=str(source))
    except ValueError as error:
        raise ConversionError(str(error)) from None
    model.load_state_dict(state_dict, strict=True)
    model.eval()

    card_notes = [f"Converted with `u2net convert` from `{source.name}` (sha256 `{_file_sha256(source)}`)."]
    if portrait:
        card_notes.insert(0, PORTRAIT_NOTE)
    if notes:
        card_notes.append(notes)

    written = [output_dir / name for name in ("config.json", "model.safetensors", "README.md")]
    for path in written:
        path.unlink(missing_ok=True)
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained(output_dir, model_card_kwargs={"notes": "\n\n".join(card_notes)})
        reloaded = U2Net.from_pretrained(output_dir)
        source_state = model.state_dict()
        reloaded_state = reloaded.state_dict()
        if list(source_state) != list(reloaded_state) or not all(
            torch.equal(source_state[k], reloaded_state[k]) for k in source_state
        ):
            raise ConversionError(f"{output_dir}: the saved weights differ from the source weights")
        difference = _max_output_difference(model, reloaded)
        if not difference <= tolerance:
            raise ConversionError(
                f"{output_dir}: the reloaded model's outputs differ from the source weights' by {difference:.3g}"
            )
    except Exception:
        # Do not leave a folder behind that looks like a successful conversion (only what we wrote goes).
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
    return ConversionResult(
        output_dir=output_dir,
        variant=chosen,
        num_parameters=model.num_parameters,
        filled_num_batches_tracked=filled,
        stripped_prefix=prefix,
        wrapper_key=wrapper,
        max_abs_difference=difference,
        portrait=portrait,
        notes=card_notes,
    )


class PushError(RuntimeError):
    """The folder was saved but could not be uploaded."""


def push_converted(output_dir: str | Path, repo_id: str, *, private: bool = False, notes: list[str] | None = None) -> str:
    """Upload a converted folder with ``push_to_hub``.

    Args:
        output_dir: the folder :func:`convert_checkpoint` wrote.
        repo_id: the Hub repo ("user/name").
        private: create the repo as private.
        notes: extra Markdown paragraphs for the model card.

    Returns:
        The commit URL.

    Raises:
        PushError: offline mode, authentication, network or permissions (the folder stays saved).
    """
    offline = constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else constants.HF_HUB_OFFLINE
    if offline:
        raise PushError(
            f"cannot push to {repo_id}: the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE=1). "
            f"The converted model is saved in {output_dir}; upload it later with "
            f"`hf upload {repo_id} {output_dir}` or rerun without HF_HUB_OFFLINE"
        )
    model = U2Net.from_pretrained(output_dir)
    card = {"repo_id": repo_id}
    if notes:
        card["notes"] = "\n\n".join(notes)
    try:
        return str(model.push_to_hub(repo_id, private=private, model_card_kwargs=card))
    except Exception as error:  # network, authentication, permissions: all reported the same way
        raise PushError(f"cannot push to {repo_id}: {type(error).__name__}: {error}; the model is saved in {output_dir}") from None


__all__ = [
    "PushError",
    "push_converted",
    "ConversionError",
    "ConversionResult",
    "convert_checkpoint",
    "extract_state_dict",
    "fill_num_batches_tracked",
    "read_checkpoint",
]
