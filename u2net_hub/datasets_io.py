"""Predict over a whole `datasets` dataset: shards, processes (Accelerate), resume, Parquet out.

The input is cut into shards of ``shard_size`` consecutive rows; shard ``i`` is
computed by process ``i % world_size`` and written as one Parquet file,
atomically (a temporary name, fsync, rename), so a file that exists is
complete. Rerunning the same command skips the shards that exist, which makes
a run killed at any moment resumable with every row exactly once. Batches are
formed inside a shard, so a row's mask depends on its shard alone, never on how
many processes ran: one process or eight give the same masks.

``OUT`` (``output_dir``) holds::

    data/shard-00000.parquet ...   the rows: the input's columns (the image only
                                   with keep_image), ``mask`` (PNG "L" at the
                                   image's size, null when it failed), ``error``
    README.md                      dataset card: model, settings, counts
    .u2net/manifest.json           settings + input fingerprint; a rerun with
                                   others into the same OUT is refused
    .u2net/logs/rank-R-of-W.json   what each process did in the latest run

and ``datasets.load_dataset(OUT, split="train")`` loads it. The card has no
``configs:`` block on purpose: with one, `datasets` (5.x) keys its cache on the
data-file pattern alone, so a second folder of the same name would load the
first one's cached rows; without it the hidden folder and the temporary files
are skipped and the cache follows the files themselves.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from .atomic import atomic_file, atomic_write
from .convert import PushError
from .data.loading import DatasetLoadError, load_dataset_as_stored
from .hub import DEMO_MODEL, __version__
from .inference import _check_batch_size, predict
from .modeling import U2Net
from .processing import ImageLoadError, check_threshold, load_image, to_mask

__all__ = ["predict_dataset", "push_dataset", "read_shard_record", "shard_path", "DatasetPredictionError",
           "DatasetPredictionResult", "MANIFEST_NAME"]

#: Our bookkeeping lives in a hidden folder, which `datasets` never takes for data files.
META_DIR = ".u2net"
MANIFEST_NAME = f"{META_DIR}/manifest.json"
LOGS_DIR = f"{META_DIR}/logs"
FORMAT_VERSION = 1
DATA_DIR = "data"
#: Input columns whose names we need are kept under this prefix.
RENAMED_PREFIX = "input_"


class DatasetPredictionError(ValueError):
    """A dataset job that cannot start: bad column, refused output folder, unreadable input (one clear line)."""


@dataclass
class DatasetPredictionResult:
    """What a run did (every process's share included), as the main process sees it at the end."""

    output_dir: Path
    num_rows: int
    num_errors: int
    num_shards: int
    shards_written: int
    shards_skipped: int
    rows_predicted: int
    world_size: int
    seconds: float
    per_rank: list[dict] = field(default_factory=list)
    pushed_to: str | None = None

    @property
    def images_per_second(self) -> float:
        """Rows predicted in this run per second of wall time (all processes together)."""
        return self.rows_predicted / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        ranks = "; ".join(
            f"rank {r['rank']}: {r['shards_written']} shards, {r['rows_predicted']} rows, "
            f"{r['images_per_second']:.1f} images/s"
            for r in self.per_rank
        )
        return (
            f"{self.num_rows} rows in {self.num_shards} shards ({self.num_errors} with an error); this run: "
            f"{self.shards_written} shards written, {self.shards_skipped} already done; {self.rows_predicted} rows in "
            f"{self.seconds:.1f} s = {self.images_per_second:.1f} images/s; world size: {self.world_size}"
            + (f" ({ranks})" if ranks else "") + f"; output in {self.output_dir}"
        )


def shard_path(output_dir: str | Path, index: int) -> Path:
    """Where shard ``index`` lives (the file exists only once the shard is complete)."""
    return Path(output_dir) / DATA_DIR / f"shard-{index:05d}.parquet"


# ---------------------------------------------------------------------------- inputs


def _open_dataset(dataset: Any, split: str | None, config_name: str | None):
    """(dataset, description of the source) from a name/folder or a `datasets` object."""
    import datasets

    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        return dataset, {"source": f"a {type(dataset).__name__} given in Python", "fingerprint": getattr(dataset, "_fingerprint", None)}
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in dataset:
            raise DatasetPredictionError(f"the dataset has no split {split!r}; its splits: {', '.join(dataset)}")
        return dataset[split], {"source": f"a {type(dataset).__name__} given in Python", "split": split}
    name = str(dataset)
    try:
        loaded = load_dataset_as_stored(name, config_name, split, streaming=True)
    except DatasetLoadError as error:
        raise DatasetPredictionError(str(error)) from None
    path = Path(name).expanduser()
    source = str(path.resolve()) if path.is_dir() else name
    return loaded, {"source": source, "config": config_name, "split": split}


def _features(dataset):
    if dataset.features is None:  # a stream whose files do not declare them: peek at the first rows
        dataset = dataset._resolve_features()
    return dataset, dataset.features


def _undecoded(dataset, features):
    """The same rows with every Image column left encoded: decoding is ours (errors per row) or not needed."""
    from datasets import Image

    for name, feature in features.items():
        if isinstance(feature, Image) and feature.decode:
            dataset = dataset.cast_column(name, Image(decode=False))
    return dataset


def _output_features(features, image_column: str, keep_image: bool):
    """(output Features, {input name: output name}) - clashing input names get the ``input_`` prefix."""
    from datasets import Features, Image, Value

    names: dict[str, str] = {}
    out = {}
    for name, feature in features.items():
        if name == image_column and not keep_image:
            continue
        target = RENAMED_PREFIX + name if name in ("mask", "error") else name
        names[name] = target
        if isinstance(feature, Image):
            feature = Image()  # decoded on load, like any image column
        out[target] = feature
    out["mask"] = Image()
    out["error"] = Value("string")
    return Features(out), names


def _image_source(value: Any) -> Any:
    """What load_image takes, from an undecoded Image value ({"bytes", "path"}), a path or bytes."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        return None
    return value


def _row_error(index: int, value: Any, error: Exception) -> str:
    """'row 5 (images/005.jpg): not an image file ...' - the row, its file when it has one, the reason."""
    path = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
    message = str(error)
    for prefix in (f"{path}: ", "bytes: "):
        if path and message.startswith(prefix):
            message = message[len(prefix):]
    return f"row {index}" + (f" ({path})" if path else "") + f": {message}"


# ------------------------------------------------------------------------ manifest


def _model_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found


def _check_output_folder(output_dir: Path, manifest: dict, is_main: bool) -> None:
    path = output_dir / MANIFEST_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetPredictionError(f"{path}: unreadable manifest ({error}); use another output folder") from None
        changed = _differences(old, manifest)
        if changed:
            raise DatasetPredictionError(
                f"{output_dir} holds predictions made with other settings or input ({'; '.join(changed[:6])}); "
                "rerun with the same ones to resume, or choose another output folder"
            )
        return
    if output_dir.exists() and not output_dir.is_dir():
        raise DatasetPredictionError(f"{output_dir} is a file, not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        raise DatasetPredictionError(
            f"{output_dir} is not empty and holds no {MANIFEST_NAME}: it was not written by this command; "
            "choose a new or empty folder"
        )
    if is_main:
        atomic_write(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


# ------------------------------------------------------------------------- writing


def _png(mask) -> bytes:
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_shard(path: Path, rows: dict[str, list], features, record: dict) -> None:
    """One shard as Parquet with the `datasets` features in its schema, written atomically."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.table import embed_table_storage

    table = embed_table_storage(Dataset.from_dict(rows, features=features).data.table)  # local files -> bytes
    metadata = dict(table.schema.metadata or {})
    metadata[b"u2net"] = json.dumps(record, sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    with atomic_file(path) as handle:
        pq.write_table(table, handle)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # what killed earlier attempts left behind
        stale.unlink(missing_ok=True)


def read_shard_record(path: str | Path) -> dict:
    """The record a shard carries in its Parquet metadata: shard, rank, world_size, rows, errors, seconds."""
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[b"u2net"])


def _card(manifest: dict, output_dir: Path, done: int, total: int | None, rows: int | None, errors: int | None) -> str:
    settings = manifest["settings"]
    state = (
        f"complete: {total} shards, {rows} rows, {errors} of them with an `error` (mask null)"
        if total is not None and done == total else f"in progress: {done} shards written so far"
    )
    lines = [
        "---",
        "tags:",
        "- u2net",
        "- saliency",
        "- background-removal",
        "---",
        "",
        f"# Saliency masks for {manifest['input']['source']}",
        "",
        f"Made by `u2net predict --dataset` (u2net-hub {__version__}) with the model `{manifest['model']}` "
        f"(weights sha256 `{manifest['model_sha256'][:16]}...`). Status: {state}.",
        "",
        "Every row keeps the input's columns (" + ", ".join(f"`{c}`" for c in manifest["columns"]) + "); `mask` is "
        "the predicted saliency as a PNG (mode L, 0..255) at the image's own size, `error` says why a row has no mask.",
        "",
        "| setting | value |",
        "| --- | --- |",
        *[f"| {key} | `{value}` |" for key, value in sorted(settings.items())],
        *[f"| input {key} | `{value}` |" for key, value in sorted(manifest["input"].items()) if key != "source"],
        "",
        "```python",
        "from datasets import load_dataset",
        f'masks = load_dataset("{output_dir.name}", split="train")',
        "```",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------- running


def _model(model: Any, name: str | None):
    """(the model, the name the card and manifest give it)."""
    if isinstance(model, (str, os.PathLike)) or model is None:
        source = str(model) if model is not None else DEMO_MODEL
        return U2Net.from_pretrained(source), name or (str(model) if model is not None else "the bundled demo model")
    return model, name or "a U2Net given in Python"


def _iter_rows(dataset, indices: range | None) -> Iterator[tuple[int, dict]]:
    if indices is None:
        yield from enumerate(dataset)
    else:
        for offset, row in enumerate(dataset.select(indices)):
            yield indices.start + offset, row


def _process_state(device: str | None):
    """Accelerate's view of this process, and the GPU it gets when several processes share one.

    The process group only synchronises (barriers), so its backend need not
    match the model's device: on CPUs (``ACCELERATE_USE_CPU=1`` or a cpu
    device) and when one machine runs more processes than it has GPUs (NCCL
    wants one GPU per rank; a GPU several times faster than one process can
    decode JPEGs is best fed by several) the processes talk over gloo.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    on_cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or str(device or "").startswith("cpu")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    sharing = not on_cpu and device is None and 0 < gpus < local_world
    state = PartialState(cpu=on_cpu or sharing)
    return state, (f"cuda:{state.local_process_index % gpus}" if sharing else None)


def predict_dataset(
    model: Any,
    dataset: Any,
    output_dir: str | Path,
    *,
    split: str | None = "train",
    config_name: str | None = None,
    image_column: str = "image",
    shard_size: int = 1000,
    keep_image: bool = False,
    batch_size: int = 8,
    normalize: bool = False,
    threshold: float | None = None,
    fast: bool = True,
    compile: bool = False,
    device: str | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    progress: bool = True,
    model_name: str | None = None,
) -> DatasetPredictionResult:
    """Masks for every row of a dataset, written as resumable Parquet shards in ``output_dir``.

    Runs in one process, or in each process of ``accelerate launch`` (every
    process takes the shards ``i`` with ``i % world_size == rank``, on its own
    device). Rerunning with the same arguments skips the finished shards.

    Args:
        model: a U2Net, a save_pretrained folder or Hub id, or None for the bundled demo model.
        dataset: a Hub id (streamed), a local folder (imagefolder with or without
            metadata.jsonl, save_to_disk folder, parquet files) or a `datasets` object.
        output_dir: the output folder (new, empty, or an earlier run of the same job).
        split, config_name: which part of the input to read.
        image_column: the column holding the images (Image feature, path strings or bytes).
        shard_size: rows per output file and unit of work/resume.
        keep_image: also keep the input image column.
        batch_size, normalize, threshold, fast, compile: as in :func:`u2net_hub.predict`.
        device: this process's device (default: the one Accelerate gives it).
        push_to_hub: upload the finished folder to this dataset repo (raises
            :class:`~u2net_hub.convert.PushError` after saving locally if it fails).
        private: create the repo as private.
        progress: show a tqdm bar per process (the main one counts every process's rows).
        model_name: how the card and the manifest name the model (default: the name given as ``model``).

    Returns:
        A :class:`DatasetPredictionResult` (complete on the main process).
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise DatasetPredictionError(f"shard_size must be a positive integer, got {shard_size!r}")
    try:
        batch_size = _check_batch_size(batch_size)
    except ValueError as error:
        raise DatasetPredictionError(str(error)) from None
    if threshold is not None:
        try:
            check_threshold(threshold)
        except ValueError as error:
            raise DatasetPredictionError(str(error)) from None
    if compile and not fast:
        raise DatasetPredictionError("compile=True compiles the fast path; it cannot be combined with fast=False")

    state, shared_gpu = _process_state(device)
    device = device or shared_gpu
    rank, world = state.process_index, state.num_processes
    output_dir = Path(output_dir)

    with state.main_process_first():  # one process builds the `datasets` cache, the others reuse it
        source, source_info = _open_dataset(dataset, split, config_name)
        source, features = _features(source)
    if image_column not in features:
        images = [n for n, f in features.items() if type(f).__name__ == "Image"]
        raise DatasetPredictionError(
            f"the dataset has no column {image_column!r}; its columns: {list(features)}"
            + (f" (image columns: {images}); pass --image-column" if images else "")
        )
    out_features, names = _output_features(features, image_column, keep_image)
    source = _undecoded(source, features)
    import datasets

    streamed = isinstance(source, datasets.IterableDataset)
    num_rows = None if streamed else len(source)
    num_shards = None if num_rows is None else math.ceil(num_rows / shard_size)

    network, model_name = _model(model, model_name)
    manifest = {
        "format": FORMAT_VERSION,
        "model": model_name,
        "model_sha256": _model_fingerprint(network),
        "input": {**source_info, "rows": num_rows, "features": repr(dict(features)), "image_column": image_column},
        "settings": {
            "shard_size": shard_size, "keep_image": keep_image, "batch_size": batch_size, "normalize": normalize,
            "threshold": threshold, "fast": fast, "compile": compile,
        },
        "columns": list(out_features),
    }
    if state.is_main_process:
        _check_output_folder(output_dir, manifest, is_main=True)
    state.wait_for_everyone()
    _check_output_folder(output_dir, manifest, is_main=False)  # every rank refuses the same way
    if state.is_main_process and not (output_dir / "README.md").exists():
        atomic_write(output_dir / "README.md", _card(manifest, output_dir, 0, num_shards, None, None).encode())

    network.to(device or state.device)
    rank_log = output_dir / LOGS_DIR / f"rank-{rank}-of-{world}.json"
    rank_log.unlink(missing_ok=True)

    def finished(index: int) -> bool:
        return shard_path(output_dir, index).is_file()

    def rows_in(index: int) -> int:
        return shard_size if num_rows is None else min(shard_size, num_rows - index * shard_size)

    mine = None if num_shards is None else [i for i in range(num_shards) if i % world == rank]
    skipped_mine = 0 if mine is None else sum(finished(i) for i in mine)
    seen_done: set[int] = set() if num_shards is None else {i for i in range(num_shards) if finished(i)}
    bar = None
    if progress:
        if state.is_main_process:
            total = num_rows
            initial = sum(rows_in(i) for i in seen_done)
        else:
            total = None if mine is None else sum(rows_in(i) for i in mine)
            initial = 0 if mine is None else sum(rows_in(i) for i in mine if finished(i))
        bar = tqdm(total=total, initial=initial, desc="predict" if state.is_main_process else f"rank {rank}",
                   unit="image", position=state.local_process_index, leave=state.is_main_process, file=sys.stderr, dynamic_ncols=True)

    def others_landed() -> None:
        """The main bar also counts the shards other processes have finished."""
        if bar is None or not state.is_main_process or num_shards is None:
            return
        for i in range(num_shards):
            if i % world != rank and i not in seen_done and finished(i):
                seen_done.add(i)
                bar.update(rows_in(i))

    started = time.perf_counter()
    written = predicted = errors_now = 0
    skipped_streamed = 0

    def run_shard(index: int, rows: list[tuple[int, dict]]) -> None:
        nonlocal written, predicted, errors_now
        shard_started = time.perf_counter()
        columns: dict[str, list] = {name: [] for name in out_features}
        masks: list[bytes | None] = [None] * len(rows)
        errors: list[str | None] = [None] * len(rows)
        good: list[tuple[int, Any]] = []
        for position, (row_index, row) in enumerate(rows):
            value = row[image_column]
            try:
                item = _image_source(value)
                if item is None:
                    raise ImageLoadError("no image in this row")
                good.append((position, load_image(item)))
            except ImageLoadError as error:
                errors[position] = _row_error(row_index, value, error)
            if len(good) == batch_size or (position == len(rows) - 1 and good):
                predictions = predict(network, [image for _, image in good], batch_size=len(good),
                                      normalize=normalize, fast=fast, compile=compile, sides=False)
                for (where, _), prediction in zip(good, predictions):
                    masks[where] = _png(to_mask(prediction.probability, threshold))
                if bar is not None:
                    bar.update(len(good))
                good = []
                others_landed()
        if bar is not None:
            bar.update(sum(e is not None for e in errors))
        for (_, row), mask, error in zip(rows, masks, errors):
            for name, target in names.items():
                columns[target].append(row[name])
            columns["mask"].append(None if mask is None else {"bytes": mask, "path": None})
            columns["error"].append(error)
        n_errors = sum(e is not None for e in errors)
        record = {"shard": index, "rank": rank, "world_size": world, "rows": len(rows), "errors": n_errors,
                  "first_row": rows[0][0], "seconds": round(time.perf_counter() - shard_started, 3)}
        _write_shard(shard_path(output_dir, index), columns, out_features, record)
        written += 1
        predicted += len(rows)
        errors_now += n_errors

    if not streamed:
        for index in mine:
            if finished(index):
                continue
            start = index * shard_size
            run_shard(index, list(_iter_rows(source, range(start, start + rows_in(index)))))
    else:
        # A stream has no random access: every process reads it through (undecoded, cheap) and keeps its shards' rows.
        buffer: list[tuple[int, dict]] = []
        current = -1
        count = 0
        for row_index, row in _iter_rows(source, None):
            count = row_index + 1
            index = row_index // shard_size
            if index != current:
                if buffer:
                    run_shard(current, buffer)
                buffer, current = [], index
                done = index % world == rank and finished(index)
                skipped_streamed += done
            if index % world == rank:
                if not done:
                    buffer.append((row_index, row))
                elif bar is not None:
                    bar.update(1)
        if buffer:
            run_shard(current, buffer)
        num_rows = count
        num_shards = math.ceil(num_rows / shard_size)
        skipped_mine = skipped_streamed

    seconds = time.perf_counter() - started
    atomic_write(rank_log, json.dumps({
        "rank": rank, "world_size": world, "device": str(next(network.parameters()).device),
        "shards_written": written, "shards_skipped": skipped_mine, "rows_predicted": predicted,
        "errors": errors_now, "seconds": round(seconds, 3),
        "images_per_second": round(predicted / seconds, 3) if seconds > 0 else 0.0,
    }).encode())

    if state.is_main_process and num_shards:
        seen_done |= {i for i in range(num_shards) if i % world == rank}
        while True:  # keep the total bar moving while the other processes finish their last shards
            others_landed()
            if all(finished(i) for i in range(num_shards)):
                break
            time.sleep(0.2)
    state.wait_for_everyone()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - started

    per_rank = []
    for r in range(world):
        try:
            per_rank.append(json.loads((output_dir / LOGS_DIR / f"rank-{r}-of-{world}.json").read_text()))
        except (OSError, ValueError):
            per_rank.append({"rank": r, "missing": True, "shards_written": 0, "rows_predicted": 0,
                             "images_per_second": 0.0, "shards_skipped": 0})
    total_errors = 0
    if state.is_main_process:
        total_errors = sum(read_shard_record(shard_path(output_dir, i))["errors"] for i in range(num_shards or 0))
        atomic_write(output_dir / "README.md",
                      _card(manifest, output_dir, num_shards or 0, num_shards or 0, num_rows, total_errors).encode())
    result = DatasetPredictionResult(
        output_dir=output_dir, num_rows=num_rows or 0, num_errors=total_errors, num_shards=num_shards or 0,
        shards_written=sum(r["shards_written"] for r in per_rank),
        shards_skipped=sum(r["shards_skipped"] for r in per_rank),
        rows_predicted=sum(r["rows_predicted"] for r in per_rank), world_size=world, seconds=seconds,
        per_rank=per_rank,
    )
    if push_to_hub and state.is_main_process:
        result.pushed_to = push_dataset(output_dir, push_to_hub, private=private)
    return result


def push_dataset(output_dir: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Upload a finished output folder as a dataset repo; raises PushError (offline mode included)."""
    from huggingface_hub import HfApi, constants

    retry = f"`hf upload {repo_id} {output_dir} --repo-type dataset`"
    offline = constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else constants.HF_HUB_OFFLINE
    if offline:
        raise PushError(
            f"cannot push to {repo_id}: the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE=1). "
            f"The dataset is saved in {output_dir}; upload it later with {retry}"
        )
    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(output_dir),
                          ignore_patterns=[".*", "**/.*"])  # bookkeeping and temporary files
    except Exception as error:  # network, authentication, permissions: all reported the same way
        raise PushError(
            f"cannot push to {repo_id}: {type(error).__name__}: {error}; the dataset is saved in {output_dir}; "
            f"retry with {retry}"
        ) from None
    return f"https://huggingface.co/datasets/{repo_id}"
