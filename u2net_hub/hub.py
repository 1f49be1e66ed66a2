"""The Hub mixin U2Net inherits: strict loading, config.json, model card.

``huggingface_hub``'s ``PyTorchModelHubMixin`` loads with ``strict=False`` by
default; users of a saliency model would rather get one clear error that says
which keys or which variant are wrong than a half-random network, so
:class:`HubMixin` is strict. It knows nothing about U²-Net's layers: the model
describes itself through ``config`` (what config.json holds) and, for error
messages, ``_mismatch_hint``.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file

from .configs import ConfigError, __version__  # re-exported: where the model card and the Hub code read it

#: The bundled demo checkpoint: the tiny configuration trained on the synthetic set.
#: It ships inside the package so `u2net predict` and the Space work offline.
DEMO_MODEL = str(Path(__file__).resolve().parent / "checkpoints" / "u2net-tiny-synthetic")

MODEL_CARD_TEMPLATE = "model_card.md"
#: Beside config.json: what the weights are (training, metrics, notes), so that a re-saved model keeps its card.
TRAINING_RECORD_NAME = "training_record.json"
#: The model-card arguments that describe the weights (the others, e.g. repo_id, describe one upload).
RECORD_KEYS = ("training", "metrics", "metrics_dataset", "notes")


def training_record_from_card_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of save_pretrained's ``model_card_kwargs`` that describes the weights, or None if it has none."""
    record = {key: kwargs[key] for key in RECORD_KEYS if kwargs and kwargs.get(key)}
    return record or None


def read_training_record(path: str) -> dict[str, Any] | None:
    """The training record in a downloaded or local ``training_record.json``; None when unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    return {key: record[key] for key in RECORD_KEYS if record.get(key)} or None


class CheckpointMismatchError(ValueError):
    """Weights that do not fit the model they are loaded into."""


class ModelLoadError(RuntimeError):
    """A model name that cannot be turned into a working model; the message is meant for the user."""


#: huggingface_hub's errors for "no such repository, revision or file" (matched by name: their module moves).
_NOT_ON_THE_HUB = ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError", "EntryNotFoundError")


def explain_load_failure(name: str, error: BaseException) -> str:
    """One sentence that says why a model could not be loaded and what to do, without a traceback.

    The command line (`u2net predict`, `evaluate`, `export-onnx`) and the Space word every
    failure through this one function.

    Args:
        name: the folder or Hub id as the user gave it.
        error: what ``from_pretrained`` raised.

    Returns:
        The message.
    """
    kind = type(error).__name__
    text = str(error).strip().splitlines()[0].rstrip(". ") if str(error).strip() else kind
    if Path(name).expanduser().is_dir():
        return f"{name!r} could not be loaded from the local folder: {kind}: {text}"
    if kind in ("OfflineModeIsEnabled", "LocalEntryNotFoundError") or "offline" in text.lower() or (
        constants.HF_HUB_OFFLINE and isinstance(error, OSError)
    ):
        return (
            f"{name!r} is not a folder on this machine and the Hugging Face Hub cannot be reached "
            "(offline, or HF_HUB_OFFLINE=1 is set), nor is it in the local cache"
        )
    if kind in _NOT_ON_THE_HUB:
        return f"the Hub has no usable repository {name!r} ({kind}): check the spelling, or whether it needs a token"
    if kind == "HFValidationError":
        return f"{name!r} is neither a folder on this machine nor a valid Hub id (like 'user/model')"
    if isinstance(error, (ConnectionError, TimeoutError)) or "connect" in text.lower():
        return f"the Hugging Face Hub could not be reached to download {name!r} ({text})"
    return f"{name!r} could not be loaded from the Hub (no local folder has that name): {kind}: {text}"


def check_model_name(name: str | os.PathLike | None) -> str:
    """The folder or Hub id to load, with the mistakes that need no download caught early.

    Args:
        name: a save_pretrained folder, a Hub id, or None for the bundled demo model.

    Returns:
        The name to pass to ``from_pretrained``.

    Raises:
        ModelLoadError: a file instead of a folder (with the `u2net convert` hint for .pth),
            a path that does not exist, or a missing bundled demo model.
    """
    if name is None:
        if not Path(DEMO_MODEL).is_dir():
            raise ModelLoadError(
                f"the bundled demo model is missing (expected the folder {DEMO_MODEL}); "
                "pass a model folder or Hub id (--model)"
            )
        return DEMO_MODEL
    text = os.fspath(name)
    path = Path(text).expanduser()
    if path.is_file():
        hint = f"; convert it first: u2net convert {text} OUT_DIR" if path.suffix in (".pth", ".pt") else (
            "; convert released .pth files with `u2net convert`"
        )
        raise ModelLoadError(
            f"{text} is a file; a model is a save_pretrained folder (config.json + model.safetensors) "
            f"or a Hub repo id{hint}"
        )
    if not path.is_dir() and _looks_local(text):
        raise ModelLoadError(f"{text}: no such folder")
    return text


def load_safetensors_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a state dict.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        The tensors by key, on the CPU.

    Raises:
        CheckpointMismatchError: when the file is not valid safetensors.
    """
    try:
        # Owned copies, not views into the file's mapping: the model is assigned these tensors, and a view at
        # an odd offset makes oneDNN pick other kernels (outputs off by ~1e-8 from the saved model's).
        return {key: tensor.clone() for key, tensor in load_file(path).items()}
    except (SafetensorError, OSError) as error:
        raise CheckpointMismatchError(f"cannot read {path} as safetensors: {error}") from None


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: "HubMixin", state_dict: Mapping[str, Any], source: str = "the checkpoint") -> None:
    """Check that a state dict fits `model` exactly: every key, no extra key, every shape.

    Args:
        model: the model the weights are meant for.
        state_dict: the weights.
        source: how the error names where the weights came from.

    Raises:
        CheckpointMismatchError: one message naming everything that differs.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k]
    )
    if not (missing or unexpected or wrong_shape):
        return
    problems = []
    hint = model._mismatch_hint(state_dict, source)
    if hint:
        problems.append(hint)
    if missing:
        problems.append(f"{len(missing)} missing keys: {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
    if wrong_shape:
        details = [f"{k} {tuple(state_dict[k].shape)} vs {expected[k]}" for k in wrong_shape]
        problems.append(f"{len(wrong_shape)} keys with the wrong shape: {_preview(details, 4)}")
    raise CheckpointMismatchError(f"weights in {source} do not fit this {type(model).__name__}: " + "; ".join(problems))


def _looks_local(name: Any) -> bool:
    """True for what can only mean a local path: a Path object, or a string no Hub id can be.

    A Hub id is "name" or "owner/name"; a file name (``.pth``, ``.safetensors``, ...) is a path too.
    """
    if isinstance(name, os.PathLike):
        return True
    text = str(name)
    return (text.startswith((".", "/", "~", "\\")) or text.count("/") > 1 or "\\" in text
            or text.endswith(("/", os.sep, ".pth", ".pt", ".safetensors", ".onnx", ".json")))


def _template_text() -> str:
    return resources.files("u2net_hub").joinpath(MODEL_CARD_TEMPLATE).read_text(encoding="utf-8")


class HubMixin(
    PyTorchModelHubMixin,
    library_name="u2net-hub",
    pipeline_tag="image-segmentation",
    license="apache-2.0",
    repo_url="https://github.com/xuebinqin/U-2-Net",
    paper_url="https://arxiv.org/abs/2005.09007",
    tags=["u2net", "salient-object-detection", "background-removal", "image-segmentation"],
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for U2Net, strict about keys, shapes and config.

    The class that inherits it provides ``config`` (a JSON-ready dict of its
    ``__init__`` arguments), ``variant``, ``num_parameters`` and ``preprocessing``
    (for the model card) and may override ``_mismatch_hint``.
    """

    #: How these weights were made (the training, metrics and notes of the model card), carried across
    #: save_pretrained/from_pretrained in training_record.json; None: not recorded (a new model, an old folder).
    training_record: dict[str, Any] | None = None

    def _mismatch_hint(self, state_dict: Mapping[str, Any], source: str) -> str | None:
        """A sentence explaining a mismatch (e.g. "the weights are the other variant"), or None."""
        return None

    def save_pretrained(self, save_directory, *, config=None, model_card_kwargs=None, **kwargs):
        """Write config.json, model.safetensors, the model card (README.md) and training_record.json to a folder.

        The card's training, metrics and notes come from ``model_card_kwargs``, else from
        :attr:`training_record` (what the loaded folder recorded): re-saving a model never makes
        up or drops its provenance.

        Args:
            save_directory: the folder (created if needed).
            config: what config.json holds; defaults to the model's complete ``config``.
            model_card_kwargs: reach :meth:`generate_model_card`.
            **kwargs: passed to ``PyTorchModelHubMixin.save_pretrained`` (``push_to_hub``, ``repo_id``, ...).

        Returns:
            What the Hub mixin returns (the commit info when pushing, else None).
        """
        record = training_record_from_card_kwargs(model_card_kwargs) or self.training_record
        card_kwargs = {**(record or {}), **(model_card_kwargs or {})}
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        record_path = Path(save_directory) / TRAINING_RECORD_NAME
        if record:  # written first, so that a push from inside save_pretrained uploads it too
            record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        else:
            record_path.unlink(missing_ok=True)  # a record left by other weights would be wrong now
        return super().save_pretrained(save_directory, config=config or self.config,
                                       model_card_kwargs=card_kwargs, **kwargs)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """Render the package's model_card.md template for this model.

        Args:
            **kwargs: reach the template: ``repo_id`` (or ``model_ref``, the expression the
                usage snippet passes to from_pretrained), ``training`` (a dict: dataset,
                command, steps, wall time, recipe), ``metrics`` (name to value, with
                ``metrics_dataset``) and ``notes`` (free Markdown).

        Returns:
            The card, with the Hub metadata (library, pipeline tag, license, tags) in its header.
        """
        if not training_record_from_card_kwargs(kwargs) and self.training_record:
            kwargs = {**self.training_record, **kwargs}
        info = self._hub_mixin_info
        card_data = ModelCardData(**info.model_card_data.to_dict())
        training = kwargs.pop("training", None) or {}
        if training.get("dataset_id"):
            card_data.datasets = [training["dataset_id"]]
        repo_id = kwargs.pop("repo_id", None) or "path/to/this/folder"
        context = {
            "repo_id": repo_id,
            # How the usage snippet names the model: a quoted id, or a constant such as DEMO_MODEL.
            "model_ref": kwargs.pop("model_ref", None) or json.dumps(repo_id),
            "variant": self.variant,
            "num_parameters": self.num_parameters,
            "size_mb": self.num_parameters * 4 / 1e6,
            "preprocessing": self.preprocessing,
            "paper_url": info.paper_url,
            "repo_url": info.repo_url,
            "training": training,
            "metrics": kwargs.pop("metrics", None) or {},
            "metrics_dataset": kwargs.pop("metrics_dataset", None),
            "notes": kwargs.pop("notes", None),
        }
        context.update(kwargs)
        return ModelCard.from_template(card_data, template_str=_template_text(), **context)

    @classmethod
    def load(cls, name: str | os.PathLike | None = None, **kwargs):
        """``from_pretrained`` for command lines and apps: one clear error for every failure.

        Args:
            name: a save_pretrained folder, a Hub id, or None for the bundled demo model.
            **kwargs: passed to :meth:`from_pretrained` (``local_files_only``, ``revision``, ...).

        Returns:
            The model in eval mode.

        Raises:
            ModelLoadError: with a message that says what went wrong (see :func:`explain_load_failure`).
        """
        name = check_model_name(name)
        try:
            return cls.from_pretrained(name, **kwargs)
        except Exception as error:  # the user-facing boundary: offline, typo, broken folder, wrong weights
            raise ModelLoadError(explain_load_failure(name, error)) from error

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a folder or Hub repo written by :meth:`save_pretrained`, in eval mode.

        Args:
            pretrained_model_name_or_path: a local folder or a Hub repo id.
            **kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only``,
                ``map_location`` ... as for ``PyTorchModelHubMixin.from_pretrained``.

        Returns:
            The model, every weight loaded (strict), in eval mode.

        Raises:
            ConfigError: config.json is missing, not JSON, or has unknown keys.
            CheckpointMismatchError: the weights do not fit the configuration.
            FileNotFoundError: the name can only be a local folder (``./x``, ``/x``, ``~/x``,
                ``a/b/c``, ``x/``, a Path) and there is none.
        """
        if _looks_local(pretrained_model_name_or_path) and not Path(pretrained_model_name_or_path).expanduser().exists():
            raise FileNotFoundError(
                f"the local folder {pretrained_model_name_or_path} does not exist "
                "(a Hub model id looks like 'owner/name')"
            )
        local_config = Path(pretrained_model_name_or_path) / constants.CONFIG_NAME
        try:
            if local_config.is_file() and not isinstance(json.loads(local_config.read_text()), dict):
                raise ConfigError(f"config.json of {pretrained_model_name_or_path} must hold a JSON object")
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config.json of {pretrained_model_name_or_path} is not valid JSON: {error}") from None

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir,
        force_download: bool,
        local_files_only: bool,
        token,
        map_location: str = "cpu",
        strict: bool = True,
        config: Mapping[str, Any] | None = None,
        **model_kwargs,
    ):
        if config is None:
            raise ConfigError(
                f"{model_id} has no config.json; a U²-Net folder needs one (write it with save_pretrained, "
                "or convert a released .pth with `u2net convert`)"
            )
        if not isinstance(config, Mapping):
            raise ConfigError(f"config.json of {model_id} must hold a JSON object, got {type(config).__name__}")
        known = set(cls._hub_mixin_init_parameters) - {"self"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"config.json of {model_id} has unknown keys {unknown}; known keys are {sorted(known)}")
        # Strict loads replace every tensor, so build on the meta device and skip the random initialisation.
        with torch.device("meta" if strict else "cpu"):
            model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            if not os.path.isfile(model_file):
                raise FileNotFoundError(f"{model_id} has no {constants.SAFETENSORS_SINGLE_FILE}")
        else:
            model_file = hf_hub_download(
                repo_id=model_id,
                filename=constants.SAFETENSORS_SINGLE_FILE,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        state_dict = load_safetensors_state_dict(model_file)
        if strict:
            check_state_dict(model, state_dict, source=model_id)
        model.load_state_dict(state_dict, strict=strict, assign=strict)
        model.to(map_location)
        model.eval()
        model.training_record = cls._load_training_record(
            model_id, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only
        )
        return model

    @staticmethod
    def _load_training_record(model_id: str, **download) -> dict[str, Any] | None:
        """The folder's or repo's training_record.json; None when it has none (older saves, other tools)."""
        if os.path.isdir(model_id):
            return read_training_record(os.path.join(model_id, TRAINING_RECORD_NAME))
        try:
            path = hf_hub_download(repo_id=model_id, filename=TRAINING_RECORD_NAME, **download)
        except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
            return None
        return read_training_record(path)


__all__ = [
    "CheckpointMismatchError", "DEMO_MODEL", "HubMixin", "ModelLoadError", "check_model_name", "check_state_dict",
    "explain_load_failure", "load_safetensors_state_dict", "__version__",
]
