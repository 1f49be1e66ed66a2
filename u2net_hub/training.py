"""The pieces of `train/train.py` that deserve tests: checkpoints that survive a kill,
the data order that makes resuming exact, the training step and the validation loop.

The script itself only parses arguments and wires these together.
"""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import re
import shutil
import sys
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from .acceleration import cpu_supports_bf16, to_channels_last, usable_cores
from .atomic import atomic_file, atomic_write, fsync_dir
from .distillation import distillation_loss, split_output
from .losses import deep_supervision_loss

CHECKPOINT_PREFIX = "checkpoint-"
#: Written last into a checkpoint folder; a folder without it is not a checkpoint.
TRAINER_STATE_NAME = "trainer_state.json"
TRAIN_LOG_NAME = "train_log.jsonl"
#: Where `supersede_log_after` moves the log lines of steps a resumed run does again.
SUPERSEDED_LOG_NAME = "train_log.superseded.jsonl"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_TEMP_RE = re.compile(rf"^\.{CHECKPOINT_PREFIX}(\d+)\.(tmp|old)$")
#: Each process's RNG states in a checkpoint, as JSON: Accelerate's own ``random_states_<rank>.pkl`` is a pickle.
RNG_STATE_NAME = "rng_state_{rank}.json"
_ACCELERATE_RNG_PICKLE = "random_states_{rank}.pkl"

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")


# --------------------------------------------------------------------- hardware


def default_mixed_precision(use_cpu: bool | None = None) -> str:
    """'bf16' on CUDA GPUs with bf16 and on CPUs with native bf16, otherwise 'no'.

    Args:
        use_cpu: whether training runs on the CPU (None: as ``ACCELERATE_USE_CPU`` says).

    Returns:
        The value for Accelerate's ``mixed_precision``.
    """
    if use_cpu is None:
        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if not use_cpu and torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_supports_bf16() else "no"


def idle_cpu_cores(device: torch.device, processes: int) -> int:
    """How many of this machine's cores no process computes on, for training on the CPU (0 on a GPU).

    Why: `accelerate launch` without ``--cpu`` sets ``OMP_NUM_THREADS=1``, so a one-process CPU run uses one core
    of many and trains about half as fast on 2 cores; the run should say so rather than be silently slow.
    """
    if device.type != "cpu":
        return 0
    return max(0, usable_cores() - processes * torch.get_num_threads())


def build_optimizer(
    parameters: Iterable[nn.Parameter],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    device: torch.device,
) -> torch.optim.Optimizer:
    """Adam as in the paper (AdamW when weight decay is asked for), with PyTorch's fused kernel.

    The fused step is one kernel over all tensors on CUDA, and on CPU several times
    faster than the default per-tensor loop (measured in the docs' Performance page);
    where a build lacks it, the default loop runs.

    Args:
        parameters: the model's parameters.
        lr: the learning rate.
        betas: Adam's (beta1, beta2).
        eps: Adam's epsilon.
        weight_decay: decoupled weight decay (0: plain Adam, as the paper).
        device: where the parameters live (the fused kernel exists for CPU and CUDA).

    Returns:
        The optimizer.
    """
    kwargs: dict[str, Any] = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
    cls = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
    parameters = list(parameters)
    if torch.device(device).type in ("cuda", "cpu"):
        try:
            return cls(parameters, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(parameters, **kwargs)


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, name: str, *, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """constant (the paper), constant_with_warmup, linear or cosine decay to 0 after a linear warmup.

    Args:
        optimizer: the optimizer whose learning rate it scales.
        name: one of ``LR_SCHEDULERS``.
        warmup_steps: scheduler steps of linear warmup (ignored by ``constant``).
        total_steps: scheduler steps of the whole run (where linear and cosine reach 0).

    Returns:
        A ``LambdaLR`` (its state is plain numbers, so a checkpoint stores it without code).
    """
    if name not in LR_SCHEDULERS:
        raise ValueError(f"unknown lr scheduler {name!r}; choose one of {list(LR_SCHEDULERS)}")
    warmup_steps = max(0, int(warmup_steps))
    total_steps = max(1, int(total_steps))

    def factor(step: int) -> float:
        if name == "constant":
            return 1.0
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if name == "constant_with_warmup":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if name == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_batch_norms(model: nn.Module) -> int:
    """Keep every BatchNorm of ``model`` in inference mode for good, even in ``model.train()``.

    Why: a BatchNorm in training mode normalises by its batch's statistics and updates its running ones. For
    weights whose BatchNorms were fitted to other data (the released model rebuilt by train/fetch_teacher.py,
    its BatchNorms folded into the convolutions), a few forward passes on new data are enough to change what
    the network computes: 30 batches of the demo fine-tune's data, no weight updated, took it from agreeing with
    itself to maxF 0.76 / MAE 0.064 on real photos. Frozen, they apply their running statistics and keep them;
    their scale and shift are still trained. The network is then un-normalised while it learns: for that
    model, 50 steps at Adam 1e-4 frozen left it at 0.68 / 0.165, and calibrating the BatchNorms on the new data
    instead (train/fetch_teacher.py --calibrate_on) is what train/finetune_released_tiny.sh does. Returns the count.
    """

    def stay_in_inference_mode(module: nn.Module, _inputs) -> None:
        module.training = False

    frozen = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_pre_hook(stay_in_inference_mode)
            frozen += 1
    return frozen


# ------------------------------------------------------------- weight average

#: The folder of a checkpoint that holds the averaged weights as a model folder of their own (config.json +
#: model.safetensors), so ``u2net evaluate --model RUN/checkpoint-N/average`` scores what the run would save.
WEIGHT_AVERAGE_DIR = "average"
_WEIGHT_AVERAGE_STATE = "weight_average.json"


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics (``train.py --use_ema``).

    Why: at a constant learning rate the weights wander around what the data teaches. Fine-tuning the released
    tiny model at Adam 2e-5, checkpoint 120 stood at maxF 0.831 on real photos (against the released model's
    masks) while the plain mean of checkpoints 40, 80 and 120 stood at 0.878, with the synthetic scenes
    unchanged (docs/demo-model-journal.md, session 18). The decay warms up as diffusers' ``EMAModel`` does,
    ``min(decay, (1 + t) / (10 + t))`` at the t-th update, so the starting weights fade out quickly.

    Every process keeps its own copy (their weights are the same after each step); the averages are float32.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the decay of a weight average must lie in [0, 1), got {decay}")
        self.model = model
        self.decay = decay
        self.reset()

    def reset(self) -> None:
        """Start again from the model's current weights (a resumed checkpoint that holds no average)."""
        self.updates = 0
        self.averages = {name: value.detach().float().clone(memory_format=torch.contiguous_format)
                         for name, value in self.model.state_dict().items() if value.is_floating_point()}

    def current_decay(self) -> float:
        """The decay the next update applies."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights in (after each optimizer step)."""
        weight = 1.0 - self.current_decay()
        state = self.model.state_dict()
        for name, average in self.averages.items():
            average.lerp_(state[name].detach().float(), weight)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state with the averages in place of its floating-point tensors (integer counters as they are)."""
        state = self.model.state_dict()
        return {name: self.averages[name].to(value.dtype) if name in self.averages else value.detach().clone()
                for name, value in state.items()}

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block (validation) and its own again after it."""
        state = self.model.state_dict()
        kept = {name: state[name].detach().clone() for name in self.averages}
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in kept.items():
                    state[name].copy_(value)

    def copy_to_model(self) -> None:
        """Put the averaged weights into the model for good (the end of training: the model saved is the average)."""
        state = self.model.state_dict()
        with torch.no_grad():
            for name, average in self.averages.items():
                state[name].copy_(average)

    def save(self, folder: str | os.PathLike) -> None:
        """Write the average as a model folder (save_pretrained of a copy), with the update count beside it."""
        import copy

        folder = Path(folder)
        averaged = copy.deepcopy(self.model).to(memory_format=torch.contiguous_format).float()
        averaged.load_state_dict(self.state_dict(), strict=True)
        averaged.save_pretrained(folder)
        atomic_write(folder / _WEIGHT_AVERAGE_STATE, json.dumps({"decay": self.decay, "updates": self.updates}) + "\n")

    def load(self, folder: str | os.PathLike) -> None:
        """Continue the average saved in ``folder`` by :meth:`save` (a resumed run)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            saved = load_file(folder / "model.safetensors")
            updates = int(json.loads((folder / _WEIGHT_AVERAGE_STATE).read_text(encoding="utf-8"))["updates"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{folder}: cannot read the weight average ({error})") from None
        if set(saved) != set(self.model.state_dict()):
            raise CheckpointError(f"{folder}: the weight average holds other tensors than this model")
        self.averages = {name: saved[name].float().clone() for name in self.averages}
        self.updates = updates


# ------------------------------------------------------------------ data order


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """A shuffle that depends only on (seed, epoch).

    Every process draws the same permutation (Accelerate then shards it), and a
    resumed run can rebuild the interrupted epoch's order and skip what was seen.
    With ``keyed=True`` it yields ``(epoch, index)`` keys, so that
    :class:`u2net_hub.data.TrainingSamples` can draw each sample's augmentation
    from (seed, epoch, index) inside whichever DataLoader worker reads it.

    Args:
        num_samples: the size of the training set.
        seed: the run's ``--seed``.
        keyed: yield ``(epoch, index)`` keys instead of indices.
    """

    def __init__(self, num_samples: int, seed: int = 0, keyed: bool = False):
        if num_samples < 1:
            raise ValueError("the training set is empty")
        self.num_samples = num_samples
        self.seed = int(seed)
        self.keyed = bool(keyed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next iteration's order for `epoch` (call it before each epoch, as DataLoader users do).

        Args:
            epoch: the epoch, from 0.
        """
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        if self.keyed:
            return iter([(self.epoch, index) for index in order])
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples


def resume_position(global_step: int, updates_per_epoch: int, gradient_accumulation_steps: int) -> tuple[int, int]:
    """Where in the data a run stands after `global_step` optimizer steps.

    Args:
        global_step: the optimizer steps done.
        updates_per_epoch: optimizer steps in one epoch (per process, after sharding).
        gradient_accumulation_steps: micro-batches per optimizer step.

    Returns:
        (epoch, batches of that epoch each process has already consumed and must skip).
    """
    if updates_per_epoch < 1:
        raise ValueError("updates_per_epoch must be >= 1")
    epoch = global_step // updates_per_epoch
    return epoch, (global_step - epoch * updates_per_epoch) * gradient_accumulation_steps


# ----------------------------------------------------------------- checkpoints


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step in a ``checkpoint-<step>`` folder's name.

    Args:
        path: a folder path (only its name is read).

    Returns:
        The step, or None when the name is not a checkpoint's.
    """
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """A `checkpoint-<int>` folder whose trainer state (written last) is readable and says so.

    Args:
        path: the folder.

    Returns:
        Whether it is a complete checkpoint (a folder cut short by a kill is not).
    """
    path = Path(path)
    if checkpoint_step(path) is None or not path.is_dir():
        return False
    try:
        state = json.loads((path / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("complete") is True and state.get("global_step") == checkpoint_step(path)


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest (lowest step) first.

    Args:
        output_dir: the run's folder.

    Returns:
        The checkpoint folders ([] when there are none or the folder does not exist).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if is_complete_checkpoint(p)]
    return sorted(found, key=lambda p: checkpoint_step(p))


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in `output_dir`.

    Args:
        output_dir: the run's folder.

    Returns:
        Its folder, or None when there is none yet.
    """
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_resume_checkpoint(value: str | None, output_dir: str | os.PathLike) -> Path | None:
    """`latest` -> the newest complete checkpoint in output_dir (None if there is none yet); a path -> that one.

    Args:
        value: ``--resume_from_checkpoint``: None or "" (a new run), ``latest``, or a folder (absolute, or
            relative to `output_dir`).
        output_dir: the run's folder.

    Returns:
        The checkpoint to resume from, or None to start a new run.

    Raises:
        FileNotFoundError: the folder named does not exist.
        ValueError: it is not a complete checkpoint.
    """
    if not value:
        return None
    if value == "latest":
        return latest_checkpoint(output_dir)
    path = Path(value)
    if not path.is_dir() and (Path(output_dir) / value).is_dir():
        path = Path(output_dir) / value
    if not path.is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {value}: no such folder")
    if not is_complete_checkpoint(path):
        raise ValueError(
            f"{path} is not a complete checkpoint (a checkpoint-<step> folder with a {TRAINER_STATE_NAME} "
            "marking it complete); it was probably interrupted while being written. Use 'latest' to pick "
            "the newest complete one."
        )
    return path


def read_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """What :func:`save_checkpoint` recorded beside the weights.

    Args:
        checkpoint: a checkpoint folder.

    Returns:
        The parsed ``trainer_state.json`` (global_step, epoch, settings, timing).
    """
    return json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text(encoding="utf-8"))


def remove_stale_temporaries(output_dir: str | os.PathLike) -> list[Path]:
    """Delete `.checkpoint-<step>.tmp/.old` folders left by a run that was killed while saving.

    Args:
        output_dir: the run's folder.

    Returns:
        The folders removed.
    """
    output_dir = Path(output_dir)
    removed = []
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if path.is_dir() and _TEMP_RE.match(path.name):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    global_step: int,
    trainer_state: dict[str, Any],
    total_limit: int | None = None,
    weight_average: WeightAverage | None = None,
) -> Path:
    """`accelerator.save_state` into `.checkpoint-<step>.tmp`, mark it complete, then rename it into place.

    Collective: every process must call it (each one writes its RNG state, as ``rng_state_<rank>.json``;
    Accelerate's ``random_states_<rank>.pkl`` is deleted, so resuming never reads a pickle of RNG states).
    A kill at any moment leaves either the previous complete checkpoints or
    the new one, never a folder that `latest` would pick up half-written.

    Args:
        accelerator: the Accelerator the model, optimizer and scheduler were prepared with.
        output_dir: the run's folder; the checkpoint becomes ``<output_dir>/checkpoint-<global_step>``.
        global_step: the optimizer steps done.
        trainer_state: what ``trainer_state.json`` records beside the step (epoch, settings, timing).
        total_limit: keep only this many newest checkpoints (None or 0: all).
        weight_average: saved too, as the model folder ``average/`` of the checkpoint.

    Returns:
        The checkpoint folder.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{global_step}"
    temporary = output_dir / f".{CHECKPOINT_PREFIX}{global_step}.tmp"
    if accelerator.is_main_process:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary), safe_serialization=True)
    rank = accelerator.process_index
    atomic_write(temporary / RNG_STATE_NAME.format(rank=rank), json.dumps(rng_state(accelerator.step)) + "\n")
    (temporary / _ACCELERATE_RNG_PICKLE.format(rank=rank)).unlink(missing_ok=True)  # never read back: a pickle
    if weight_average is not None and accelerator.is_main_process:
        weight_average.save(temporary / WEIGHT_AVERAGE_DIR)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = dict(trainer_state, global_step=int(global_step), complete=True, saved_at=time.time())
        atomic_write(temporary / TRAINER_STATE_NAME, json.dumps(state, indent=2, sort_keys=True))  # fsyncs the folder
        if final.exists():  # the same step saved again (e.g. a resumed run that had nothing left to do)
            old = output_dir / f".{CHECKPOINT_PREFIX}{global_step}.old"
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(temporary, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, final)
        fsync_dir(output_dir)
        if total_limit is not None and total_limit > 0:
            for stale in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed from (unreadable, or holding something other than plain tensors)."""


def load_checkpoint(accelerator, checkpoint: str | os.PathLike) -> None:
    """`accelerator.load_state` without running code from the checkpoint, then the RNG states from JSON.

    Accelerate (1.16) reads the model from safetensors and the optimizer and scheduler states with
    ``torch.load(weights_only=True)``, asked for explicitly here: torch's restricted unpickler, which builds
    tensors and plain containers and refuses every other global. Our checkpoints hold no
    ``random_states_*.pkl`` (see :func:`save_checkpoint`), so Accelerate finds no RNG pickle to read; the
    RNG states and Accelerate's micro-step counter come from ``rng_state_<rank>.json``. A checkpoint written
    before that file existed still resumes: Accelerate then reads its RNG pickle with the same restricted
    unpickler.

    Collective: every process must call it.

    Args:
        accelerator: the Accelerator the model, optimizer and scheduler were prepared with.
        checkpoint: a complete ``checkpoint-<step>`` folder.

    Raises:
        CheckpointError: a file is missing, unreadable, or would need code to run to load.
    """
    path = Path(checkpoint)
    try:
        accelerator.load_state(str(path), load_kwargs={"weights_only": True})
    except (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: cannot resume from it ({first})") from None
    rng_file = path / RNG_STATE_NAME.format(rank=accelerator.process_index)
    if rng_file.is_file():
        try:
            state = json.loads(rng_file.read_text(encoding="utf-8"))
            accelerator.step = set_rng_state(state)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{rng_file}: unreadable RNG state ({error})") from None


def rng_state(step: int = 0) -> dict[str, Any]:
    """This process's random number generators (Python, NumPy, torch CPU and CUDA) as plain JSON data.

    Args:
        step: Accelerate's micro-step counter (``accelerator.step``), kept with them as Accelerate does.

    Returns:
        A dict that :func:`set_rng_state` restores exactly.
    """
    import random

    import numpy as np

    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "format": 1,
        "step": int(step),
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {"name": name, "keys": [int(k) for k in keys], "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> int:
    """Restore the generators :func:`rng_state` described.

    Args:
        state: what :func:`rng_state` returned (read back from JSON).

    Returns:
        The micro-step counter that was saved with them.
    """
    import random

    import numpy as np

    if state.get("format") != 1:
        raise ValueError(f"unknown RNG state format {state.get('format')!r}")
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], np.array(numpy["keys"], dtype=np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    torch.set_rng_state(_byte_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        saved = [_byte_tensor(s) for s in state["cuda"]]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)
    return int(state.get("step", 0))


def _byte_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


# ------------------------------------------------------------------- the step


def forward_batch(model: nn.Module, batch: dict, *, channels_last: bool = True,
                  autocast: Callable[[], Any] | None = None):
    """The model's output on a batch, the way training and validation both run it.

    Args:
        model: the (prepared) model.
        batch: a dict with ``pixel_values`` (B, 3, H, W).
        channels_last: move the input to channels_last first.
        autocast: a context-manager factory to run the forward under (None: as Accelerate set it up).

    Returns:
        The model's :class:`u2net_hub.U2NetOutput`.
    """
    pixel_values = batch["pixel_values"]
    if channels_last:
        pixel_values = to_channels_last(pixel_values)
    if autocast is None:
        return model(pixel_values)
    with autocast():
        return model(pixel_values)


def training_step(
    accelerator,
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_scheduler,
    *,
    max_grad_norm: float | None = None,
    channels_last: bool = True,
    autocast: Callable[[], Any] | None = None,
    distill: dict | None = None,
    distill_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.dtype]:
    """One micro-batch: forward (under autocast), deep-supervision loss in fp32, backward, and the
    optimizer/scheduler step when gradients are synchronised (Accelerate's gradient accumulation).

    With `distill` (a :class:`u2net_hub.distillation.DistillationStream` batch), its images go through the
    network in the same forward as the labelled ones (one set of BatchNorm statistics for the mixed batch, as
    when both kinds share a folder) and the loss adds `distill_weight` times the distillation loss.

    Args:
        accelerator: the Accelerator the objects were prepared with.
        model: the prepared model, in train mode.
        batch: ``pixel_values`` (B, 3, H, W) and ``labels`` (B, 1, H, W) in [0, 1].
        optimizer: the prepared optimizer.
        lr_scheduler: the prepared scheduler.
        max_grad_norm: clip the gradient norm to this before the step (None or 0: no clipping).
        channels_last: move the input to channels_last first.
        autocast: a context-manager factory to run the forward under (None: as Accelerate set it up).

    Returns:
        The detached loss and the dtype the forward pass produced (to confirm autocast is on).
    """
    with accelerator.accumulate(model):
        if distill is None:
            output = forward_batch(model, batch, channels_last=channels_last, autocast=autocast)
            loss = deep_supervision_loss(output, batch["labels"])
        else:
            labelled = batch["pixel_values"].shape[0]
            pixel_values = torch.cat([batch["pixel_values"].to(distill["pixel_values"].device),
                                      distill["pixel_values"]])
            output = forward_batch(model, {"pixel_values": pixel_values}, channels_last=channels_last,
                                   autocast=autocast)
            output, distilled = split_output(output, labelled)
            loss = deep_supervision_loss(output, batch["labels"]) + distill_weight * distillation_loss(
                distilled, distill["targets"])
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach(), output.logits.dtype


class Throughput:
    """Images per second over the last `window` optimizer steps.

    Args:
        window: how many recent steps the rate averages over.
    """

    def __init__(self, window: int = 20):
        self._marks: deque[tuple[float, int]] = deque(maxlen=window + 1)
        self.images = 0

    def update(self, images: int) -> None:
        """Mark the end of an optimizer step.

        Args:
            images: images this step trained on (all processes together).
        """
        self.images += images
        self._marks.append((time.perf_counter(), self.images))

    def reset_clock(self) -> None:
        """Forget the marks (after validation or checkpointing, which are not training time)."""
        self._marks.clear()

    @property
    def value(self) -> float | None:
        """Images per second over the window; None until two steps are marked."""
        if len(self._marks) < 2:
            return None
        (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


class JsonlLog:
    """Append-only machine-readable log (one JSON object per line); written by the main process only.

    Args:
        path: the ``.jsonl`` file (appended to, so a resumed run continues it).
        enabled: False on the other processes: `write` then does nothing.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a line.

        Args:
            record: JSON-serialisable values.
        """
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a JSONL log; a line cut short by a kill (the last one) is left out.

    Args:
        path: the ``.jsonl`` file.

    Returns:
        The records, in file order.
    """
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def _record_step(record: dict[str, Any]) -> int | None:
    value = record.get("step", record.get("global_step"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def supersede_log_after(path: str | os.PathLike, step: int) -> int:
    """Move the records of steps after `step` from the log at `path` to ``train_log.superseded.jsonl`` beside it.

    Why: a run killed between two checkpoints logged steps that the resumed run
    trains again; without this the log holds two curves over those steps.
    Lines cut short by the kill are dropped.

    Args:
        path: the train_log.jsonl of the run.
        step: the step of the checkpoint the run resumes from.

    Returns:
        How many records moved.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    records = read_jsonl(path)
    keep = [r for r in records if (_record_step(r) or 0) <= step]
    moved = [r for r in records if (_record_step(r) or 0) > step]
    if not moved and len(keep) == sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()):
        return 0
    if moved:
        with open(path.with_name(SUPERSEDED_LOG_NAME), "a", encoding="utf-8") as handle:
            for record in moved:
                handle.write(json.dumps(dict(record, superseded_by_resume_from=step), sort_keys=True) + "\n")
    with atomic_file(path, "w") as handle:
        handle.writelines(json.dumps(r, sort_keys=True) + "\n" for r in keep)
    return len(moved)


# ----------------------------------------------------------------- validation


@torch.no_grad()
def evaluate(
    accelerator,
    model: nn.Module,
    dataloader,
    metrics_factory: Callable[[], Any],
    *,
    channels_last: bool = True,
    autocast: Callable[[], Any] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Validation loss and saliency metrics at the training resolution, over the whole set exactly once.

    Each process predicts its shard; `gather_for_metrics` brings the uint8
    maps to the main process and drops the samples Accelerate repeated to
    even out the last batch. Every process returns the same dict.

    Collective: every process must call it.

    Args:
        accelerator: the Accelerator the model and `dataloader` were prepared with.
        model: the model (put in eval mode for the loop, then back as it was).
        dataloader: the prepared validation loader (``pixel_values`` and ``labels``).
        metrics_factory: builds the accumulator, e.g. :class:`u2net_hub.SODMetrics` (main process only).
        channels_last: move the input to channels_last first.
        autocast: a context-manager factory to run the forward under (None: as Accelerate set it up).
        progress: show a progress bar on the main process.

    Returns:
        ``loss`` (mean BCE of the fused map) and the accumulator's metrics (maxF, MAE, ...), with ``num_images``.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    metrics = metrics_factory() if accelerator.is_main_process else None
    loss_sum = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    count = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    batches = tqdm(dataloader, desc="validation", leave=False, disable=not (progress and accelerator.is_main_process))
    for batch in batches:
        output = forward_batch(model, batch, channels_last=channels_last, autocast=autocast)
        labels = batch["labels"]
        per_sample = torch.nn.functional.binary_cross_entropy_with_logits(
            output.logits.float(), labels.float(), reduction="none"
        ).mean(dim=(1, 2, 3))
        probability = torch.sigmoid(output.logits.float())
        prediction = (probability * 255).round().to(torch.uint8)
        truth = (labels.float().clamp(0, 1) * 255).round().to(torch.uint8)
        prediction, truth, per_sample = accelerator.gather_for_metrics((prediction, truth, per_sample))
        loss_sum += per_sample.double().sum()
        count += per_sample.numel()
        if metrics is not None:
            for pred, gt in zip(prediction.cpu().numpy(), truth.cpu().numpy()):
                metrics.update(pred[0], gt[0])
    if was_training:
        model.train()
    results: dict[str, float] = {}
    if metrics is not None and count.item() > 0:
        results = {key: float(value) for key, value in metrics.compute().items()}
        results["loss"] = float(loss_sum.item() / count.item())
        results["num_images"] = int(count.item())
    # Share the main process's numbers so every rank logs/returns the same thing.
    payload = [results]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(payload, from_process=0)
    return payload[0]


# ------------------------------------------------------------------ reporting


def check_trackers(report_to: str) -> list[str]:
    """The trackers to hand to Accelerate; fail loudly where Accelerate would quietly record nothing.

    Args:
        report_to: ``--report_to``: none, tensorboard, wandb or all.

    Returns:
        The tracker names ([] for none).

    Raises:
        SystemExit: a tracker's package is missing, or the name is unknown (a one-line message).
    """
    if report_to in (None, "", "none"):
        return []
    wanted = ["tensorboard", "wandb"] if report_to == "all" else [report_to]
    for name in wanted:
        if name == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise SystemExit(
                    "--report_to tensorboard needs the tensorboard package (pip install tensorboard); "
                    "without it Accelerate would silently record nothing"
                ) from None
        elif name == "wandb":
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise SystemExit("--report_to wandb needs the wandb package (pip install wandb)") from None
        else:
            raise SystemExit(f"unknown --report_to {name!r}; choose none, tensorboard, wandb or all")
    return wanted


def format_duration(seconds: float) -> str:
    """A duration for people: ``42s``, ``3m 07s``, ``1h 02m 03s``.

    Args:
        seconds: the duration.

    Returns:
        The text, rounded to the second.
    """
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def redacted_command(argv: list[str] | None = None, launcher: str | None = None) -> str:
    """The command line for the model card, with any --hub_token value hidden.

    Args:
        argv: the arguments (default: ``sys.argv``).
        launcher: what ran the script (e.g. ``accelerate launch``), put in front.

    Returns:
        One shell-quoted line.
    """
    import shlex

    argv = list(sys.argv if argv is None else argv)
    cleaned: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            cleaned.append("***")
            hide_next = False
        elif arg == "--hub_token":
            cleaned.append(arg)
            hide_next = True
        elif arg.startswith("--hub_token="):
            cleaned.append("--hub_token=***")
        else:
            cleaned.append(arg)
    command = shlex.join(cleaned)
    return f"{launcher} {command}" if launcher else command
