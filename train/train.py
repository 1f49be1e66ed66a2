#!/usr/bin/env python
"""Train or fine-tune U²-Net with Accelerate.

    accelerate launch train/train.py                       # tiny model, built-in synthetic data
    accelerate launch train/train.py --dataset_name nobg/DUTS --validation_split test --variant full

The paper's recipe is the default (resize 320, random crop 288, random flip,
Adam 1e-3, BCE summed over the fused map and the six side maps). See
docs/training.md for every flag, the data layouts, multi-process runs,
resuming and pushing to the Hub.

``main`` reads top to bottom: set up Accelerate, build the data, the model and
the optimiser, resume, the loop, then save (and push). The pieces that are not
the loop are the named helpers below it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Exit code when everything was trained and saved locally but --push_to_hub could not upload.
EXIT_PUSH_FAILED = 3
#: Exit code for bad data (refused before training, or met while training: a checkpoint was saved first).
EXIT_BAD_DATA = 2


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none (None) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train or fine-tune U²-Net (salient object detection) with Accelerate.",
        formatter_class=_HelpFormatter,
    )
    model = parser.add_argument_group("model")
    model.add_argument("--variant", choices=["full", "tiny"], default=None,
                       help="published configuration to train from scratch (default: tiny)")
    model.add_argument("--config", default=None,
                       help="a JSON file in config.json's format (e.g. a custom 'stages' table) to build the model from")
    model.add_argument("--init_from", default=None,
                       help="a save_pretrained folder or Hub id to fine-tune from")

    data = parser.add_argument_group("data (default: built-in synthetic scenes)")
    data.add_argument("--dataset_name", default=None, help="Hub dataset id, e.g. nobg/DUTS")
    data.add_argument("--dataset_config_name", default=None)
    data.add_argument("--train_data_dir", default=None,
                      help="a local folder: an imagefolder with metadata.jsonl, or images/ + masks/ with matching stems")
    data.add_argument("--train_split", default="train", help="split of --dataset_name to train on")
    data.add_argument("--image_column", default="image")
    data.add_argument("--mask_column", default="mask")
    data.add_argument("--validation_split", default=None,
                      help="a split name (e.g. test), a fraction (0.05) or a count (500) held out from the training "
                           "data, or 'none'. Default: the synthetic held-out set, or the dataset's 'validation'/'test' "
                           "split when it has one")
    data.add_argument("--eval_dataset_name", default=None,
                      help="validate on another Hub dataset (its --validation_split, default 'test')")
    data.add_argument("--max_train_samples", type=int, default=None)
    data.add_argument("--max_eval_samples", type=int, default=None)
    data.add_argument("--synthetic_num_images", type=int, default=1000)
    data.add_argument("--synthetic_seed", type=int, default=0)
    data.add_argument("--synthetic_validation_seed", type=int, default=1,
                      help="seed of the held-out synthetic set (must differ from --synthetic_seed)")
    data.add_argument("--synthetic_validation_num_images", type=int, default=64)
    data.add_argument("--cache_dir", default=None)
    data.add_argument("--data_check", choices=["full", "headers", "none"], default="full",
                      help="before training, open every image and mask: 'full' also decodes cheaply (JPEG at 1/8 "
                           "scale, PNG checksums), 'headers' reads formats and sizes only")
    data.add_argument("--skip_bad_samples", action="store_true",
                      help="leave unreadable samples out (and list them) instead of refusing to train")
    data.add_argument("--strict", action="store_true",
                      help="treat a mask whose size differs from its image's as a bad sample (default: a warning; "
                           "the mask is resized onto the image)")

    recipe = parser.add_argument_group("recipe (the paper's defaults)")
    recipe.add_argument("--resolution", type=int, default=320, help="images and masks are resized to this square")
    recipe.add_argument("--crop_size", type=int, default=288, help="random crop after resizing (0: no crop)")
    recipe.add_argument("--random_flip", choices=["horizontal", "vertical", "both", "none"], default="horizontal",
                        help="the paper flips horizontally, the authors' code vertically")
    recipe.add_argument("--train_batch_size", type=int, default=12, help="per process")
    recipe.add_argument("--eval_batch_size", type=int, default=None, help="per process (default: train batch size)")
    recipe.add_argument("--learning_rate", type=float, default=1e-3)
    recipe.add_argument("--scale_lr", action="store_true",
                        help="multiply the learning rate by processes x batch size x accumulation / 12")
    recipe.add_argument("--adam_beta1", type=float, default=0.9)
    recipe.add_argument("--adam_beta2", type=float, default=0.999)
    recipe.add_argument("--adam_epsilon", type=float, default=1e-8)
    recipe.add_argument("--adam_weight_decay", type=float, default=0.0, help="> 0 switches to AdamW")
    recipe.add_argument("--lr_scheduler", default="constant",
                        choices=["constant", "constant_with_warmup", "linear", "cosine"])
    recipe.add_argument("--lr_warmup_steps", type=int, default=0)
    recipe.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    recipe.add_argument("--num_train_epochs", type=int, default=10)
    recipe.add_argument("--gradient_accumulation_steps", type=int, default=1)
    recipe.add_argument("--freeze_batch_norm", action="store_true",
                        help="keep every BatchNorm in inference mode (its running statistics, not the batch's, and "
                        "never updated) while the weights train: for batches too small or too unlike the data the "
                        "BatchNorms were fitted to; the network then trains un-normalised")
    recipe.add_argument("--use_ema", action="store_true",
                        help="keep an exponential moving average of the weights and save it as the model (validation "
                        "and each checkpoint's average/ folder use it too): steadier than the last step's weights")
    recipe.add_argument("--ema_decay", type=float, default=None,
                        help="with --use_ema: the average's decay (default 0.999), warmed up as "
                        "min(decay, (1 + t) / (10 + t)) at update t")
    recipe.add_argument("--max_grad_norm", type=float, default=None,
                        help="clip gradients to this norm (default: no clipping, as in the paper)")

    distill = parser.add_argument_group("distillation (a teacher's maps as targets on photos without masks)")
    distill.add_argument("--distill_from", default=None,
                         help="the teacher: a model folder or Hub id. Each step also draws a batch from "
                         "--distill_data_dir and adds the loss of the student's seven maps against the teacher's "
                         "on those very crops: keeps a fine-tune close to the teacher on real photos")
    distill.add_argument("--distill_data_dir", default=None,
                         help="a folder of images (searched recursively; masks/, labels/ and gt/ subfolders are "
                         "ignored)")
    distill.add_argument("--distill_batch_size", type=int, default=None,
                         help="unlabelled images per step and process (default: --train_batch_size)")
    distill.add_argument("--distill_weight", type=float, default=1.0,
                         help="the distillation loss's weight beside the labelled loss")

    speed = parser.add_argument_group("speed")
    speed.add_argument("--mixed_precision", choices=["auto", "no", "fp16", "bf16"], default="auto",
                       help="auto: bf16 on CUDA GPUs with bf16 and on CPUs with AVX-512 BF16/AMX, else no "
                            "(this flag wins over `accelerate launch --mixed_precision`)")
    speed.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=True)
    speed.add_argument("--dataloader_num_workers", type=int, default=2)
    speed.add_argument("--cache_resized", action="store_true",
                       help="resize every image and mask to --resolution once, before training (a cached "
                            "datasets.map), so the workers only crop, flip and normalise; same pixels as without")

    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--output_dir", default="u2net-trained")
    run.add_argument("--checkpointing_steps", type=int, default=500)
    run.add_argument("--checkpoints_total_limit", type=int, default=None,
                     help="keep at most this many checkpoints (oldest complete ones are deleted)")
    run.add_argument("--resume_from_checkpoint", default=None,
                     help="'latest' (newest complete checkpoint in --output_dir; starts fresh if none) or a path")
    run.add_argument("--validation_steps", type=int, default=500)
    run.add_argument("--report_to", choices=["none", "tensorboard", "wandb", "all"], default="none")
    run.add_argument("--logging_dir", default=None, help="tracker logs (default: OUTPUT_DIR/logs)")
    run.add_argument("--tracker_project_name", default="u2net")
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", default=None, help="default: the output folder's name")
    run.add_argument("--hub_private_repo", action="store_true")
    run.add_argument("--hub_token", default=None, help="default: the token of `hf auth login`")

    args = parser.parse_args(argv)
    if args.ema_decay is not None and not args.use_ema:
        parser.error("--ema_decay sets the weight average of --use_ema; pass --use_ema too")
    args.ema_decay = 0.999 if args.ema_decay is None else args.ema_decay
    if not 0.0 <= args.ema_decay < 1.0:
        parser.error(f"--ema_decay must lie in [0, 1), got {args.ema_decay}")
    if args.config and (args.variant or args.init_from):
        parser.error("--config builds a new model; do not combine it with --variant or --init_from")
    if args.dataset_name and args.train_data_dir:
        parser.error("give either --dataset_name or --train_data_dir, not both")
    if args.crop_size and args.crop_size > args.resolution:
        parser.error(f"--crop_size {args.crop_size} is larger than --resolution {args.resolution}")
    for name in ("train_batch_size", "gradient_accumulation_steps", "resolution"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        parser.error("--max_train_steps must be >= 1")
    if args.checkpointing_steps < 1 or args.validation_steps < 1:
        parser.error("--checkpointing_steps and --validation_steps must be >= 1")
    if not (args.dataset_name or args.train_data_dir) and args.synthetic_seed == args.synthetic_validation_seed:
        parser.error("--synthetic_validation_seed must differ from --synthetic_seed (a held-out set)")
    if args.eval_batch_size is None:
        args.eval_batch_size = args.train_batch_size
    if bool(args.distill_from) != bool(args.distill_data_dir):
        parser.error("--distill_from (the teacher) and --distill_data_dir (its images) go together")
    if args.distill_batch_size is None:
        args.distill_batch_size = args.train_batch_size
    if args.distill_batch_size < 1 or args.distill_weight < 0:
        parser.error("--distill_batch_size must be >= 1 and --distill_weight >= 0")
    return args


# ----------------------------------------------------------------------- data


def build_datasets(args, logger):
    """(train dataset, validation dataset or None, a description of both for the model card)."""
    from u2net_hub.data import load_saliency_dataset, make_synthetic_dataset, split_for_validation

    def load(source: str, split: str, config_name: str | None = None):
        where = {"dataset_name": source} if source == args.dataset_name or source == args.eval_dataset_name \
            else {"data_dir": source}
        return load_saliency_dataset(
            **where, dataset_config_name=config_name, split=split, image_column=args.image_column,
            mask_column=args.mask_column, cache_dir=args.cache_dir,
        )

    validation = None
    info: dict[str, str] = {}
    split = args.validation_split
    source = args.dataset_name or args.train_data_dir
    if source is None:
        train = make_synthetic_dataset(args.synthetic_num_images, size=args.resolution, seed=args.synthetic_seed)
        info["dataset"] = f"built-in synthetic scenes ({len(train)} images, seed {args.synthetic_seed})"
        if split is None and not args.eval_dataset_name:
            validation = make_synthetic_dataset(
                args.synthetic_validation_num_images, size=args.resolution, seed=args.synthetic_validation_seed
            )
            info["validation"] = (
                f"held-out synthetic scenes ({len(validation)} images, seed {args.synthetic_validation_seed})"
            )
    else:
        train = load(source, args.train_split, args.dataset_config_name)
        if args.dataset_name:
            info["dataset"] = f"{source} ({args.train_split} split, {len(train)} images)"
            info["dataset_id"] = args.dataset_name
        else:
            info["dataset"] = f"local folder {Path(source).name} ({len(train)} images)"

    holdout = _parse_holdout(split)
    if args.eval_dataset_name:
        eval_split = split if split not in (None, "none") else "test"
        validation = load(args.eval_dataset_name, eval_split)
        info["validation"] = f"{args.eval_dataset_name} ({eval_split} split, {len(validation)} images)"
    elif split == "none":
        validation = None
        info.pop("validation", None)
    elif holdout is not None:
        train, validation = split_for_validation(train, holdout, seed=args.seed)
        info["validation"] = f"{len(validation)} images held out from the training data (seed {args.seed})"
        info["dataset"] += f", {len(train)} used for training"
    elif split is not None:
        if source is None:
            raise SystemExit(f"--validation_split {split!r}: the synthetic data has no named splits; "
                             "give a fraction or a count, or leave it out for the held-out synthetic set")
        validation = load(source, split, args.dataset_config_name)
        description = getattr(train.info, "description", None)
        if description and description == getattr(validation.info, "description", None):
            raise SystemExit(f"--validation_split {split!r} loads the same images as --train_split "
                             f"{args.train_split!r} from {source}; give a fraction or a count to hold some out")
        info["validation"] = f"{source} ({split} split, {len(validation)} images)"
    elif args.dataset_name:
        # No choice made: use the dataset's own validation or test split when it has one.
        for candidate in ("validation", "test"):
            try:
                validation = load(source, candidate, args.dataset_config_name)
            except ValueError:
                continue
            info["validation"] = f"{source} ({candidate} split, {len(validation)} images)"
            break

    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if validation is not None and args.max_eval_samples is not None:
        validation = validation.select(range(min(args.max_eval_samples, len(validation))))
    if validation is None:
        logger.info("no validation set: pass --validation_split to measure maxF/MAE during training")
    return train, validation, info


def check_data(args, accelerator, train, validation, info: dict):
    """Check every image and mask before the first step (see u2net_hub.data.check_saliency_dataset).

    Refuses (exit 2) with one message naming every unreadable file, or with
    --skip_bad_samples leaves them out and says which; masks of another size
    than their image are named as a warning (bad samples with --strict).
    The built-in synthetic scenes are not checked: this package drew them.
    """
    from u2net_hub.data import check_saliency_dataset
    from u2net_hub.data.integrity import describe_problems

    if args.data_check == "none" or not (args.dataset_name or args.train_data_dir):
        return train, validation
    reports = {}
    for name, dataset in (("training", train), ("validation", validation)):
        if dataset is None or len(dataset) == 0:
            continue
        report = None
        if accelerator.is_main_process:
            report = check_saliency_dataset(dataset, full=args.data_check == "full", progress=True,
                                            description=f"checking the {name} data")
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            payload = [report]
            broadcast_object_list(payload, from_process=0)
            report = payload[0]
        reports[name] = report
    unusable = {name: r.unusable(args.strict) for name, r in reports.items()}
    if accelerator.is_main_process:
        for name, report in reports.items():
            if report.size_mismatches and not args.strict:
                print(describe_problems(
                    report.size_mismatches, f"warning: {len(report.size_mismatches)} {name} mask(s) have another "
                    "size than their image (each is resized onto its image; --strict refuses such pairs)"),
                    file=sys.stderr, flush=True)
    if not any(unusable.values()):
        return train, validation
    if not args.skip_bad_samples:
        if accelerator.is_main_process:
            parts = [describe_problems(problems, f"error: {len(problems)} of {reports[name].num_samples} {name} "
                                                 "samples cannot be used")
                     for name, problems in unusable.items() if problems]
            print("\n".join(parts) + "\nNothing was trained. Fix or remove these files, or pass --skip_bad_samples "
                  "to train without them.", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_DATA)
    checked = {}
    for name, problems in unusable.items():
        if not problems:
            continue
        if accelerator.is_main_process:
            print(describe_problems(problems, f"warning: --skip_bad_samples: leaving out {len(problems)} of "
                                              f"{reports[name].num_samples} {name} samples"),
                  file=sys.stderr, flush=True)
        kept = reports[name].usable_indices(args.strict)
        if not kept:
            print(f"error: no {name} sample is usable", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_BAD_DATA)
        if name == "training":
            train = train.select(kept)
            info["dataset"] += f", {len(problems)} unusable sample(s) left out"
        else:
            validation = validation.select(kept)
            info["validation"] = info.get("validation", "validation") + \
                f", {len(problems)} unusable sample(s) left out"
        checked[name] = [str(p) for p in problems]
    info["data_check"] = {"skipped": checked}
    return train, validation


def _parse_holdout(value: str | None) -> float | int | None:
    """A fraction or a count of training samples to hold out; None for a split name."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if 0 < number < 1:
        return number
    if number >= 1 and number == int(number):
        return int(number)
    raise SystemExit(f"--validation_split {value!r}: a fraction must lie in (0, 1) and a count must be an integer >= 1")


# ---------------------------------------------------------------------- model


def build_model(args, logger):
    from u2net_hub import U2Net
    from u2net_hub.configs import Preprocessing

    if args.init_from:
        model = U2Net.from_pretrained(args.init_from)
        if args.variant and args.variant != model.variant:
            raise SystemExit(
                f"--init_from {args.init_from} is a {model.variant!r} model but --variant {args.variant} was asked for"
            )
        origin = f"fine-tuned from {args.init_from}"
    elif args.config:
        try:
            config = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SystemExit(f"--config {args.config}: cannot read it as JSON ({error})") from None
        if not isinstance(config, dict):
            raise SystemExit(f"--config {args.config} must hold a JSON object like config.json")
        model = U2Net(**config)
        origin = f"trained from scratch from {Path(args.config).name}"
    else:
        model = U2Net(variant=args.variant or "tiny")
        origin = "trained from scratch"
    pre = model.preprocessing
    if pre.input_size != args.resolution:
        logger.info(f"setting the model's input size to the training resolution {args.resolution} (was {pre.input_size})")
        model.preprocessing = Preprocessing(args.resolution, pre.mean, pre.std, pre.divide_by_max)
    return model, origin


# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None, *, keep_process_group: bool = False) -> int:
    """Train as the command line says; the exit status.

    ``keep_process_group``: finish the trackers but leave the process group of a multi-process launch up,
    for a caller that trains several networks in one launch (train/ablation.py); ``end_training`` would
    destroy it.
    """
    args = parse_args(argv)

    import torch
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from u2net_hub import training
    from u2net_hub.acceleration import reuse_freed_memory
    from u2net_hub.data import BadSampleError
    from u2net_hub.data.integrity import bad_sample_message
    from u2net_hub.metrics import SODMetrics

    reuse_freed_memory(every_size=True)  # activations are the same sizes every step: keep them mapped
    started = time.time()
    output_dir = Path(args.output_dir)
    logging_dir = Path(args.logging_dir) if args.logging_dir else output_dir / "logs"
    trackers = training.check_trackers(args.report_to)
    mixed_precision = training.default_mixed_precision() if args.mixed_precision == "auto" else args.mixed_precision

    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(logging_dir)),
        dataloader_config=DataLoaderConfiguration(even_batches=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    logger = get_logger("u2net.train")
    for noisy in ("accelerate", "datasets", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    world = accelerator.num_processes
    accelerator.print(
        f"world size: {world} | device: {accelerator.device} | mixed precision: {accelerator.mixed_precision} "
        f"| channels_last: {args.channels_last} | distributed: {accelerator.distributed_type}"
    )
    idle_cores = training.idle_cpu_cores(accelerator.device, world)
    if idle_cores:
        accelerator.print(
            f"warning: {idle_cores} CPU cores idle: each of the {world} processes computes with "
            f"{torch.get_num_threads()} thread(s) (`accelerate launch` without --cpu sets OMP_NUM_THREADS=1); "
            f"pass `accelerate launch --num_cpu_threads_per_process {torch.get_num_threads() + idle_cores // world}` "
            "to use them"
        )
    # One seed for the weights (the same initial model whatever the world size), then one per process
    # so the ranks draw different crops and flips.
    set_seed(args.seed)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for stale in training.remove_stale_temporaries(output_dir):
            logger.info(f"removed {stale.name}, a checkpoint interrupted while being written")
    accelerator.wait_for_everyone()

    # -- data (the main process builds/caches first, the others then reuse the cache)
    from u2net_hub.data import DatasetLoadError

    try:
        with accelerator.main_process_first():
            train_dataset, eval_dataset, data_info = build_datasets(args, logger)
        # Before anything decodes every image (--cache_resized), and outside main_process_first: it is collective.
        train_dataset, eval_dataset = check_data(args, accelerator, train_dataset, eval_dataset, data_info)
        if args.cache_resized:
            from u2net_hub.data import pre_resize

            with accelerator.main_process_first():
                train_dataset = pre_resize(train_dataset, args.resolution)
                if eval_dataset is not None and len(eval_dataset) > 0:
                    eval_dataset = pre_resize(eval_dataset, args.resolution)
    except (DatasetLoadError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    model, origin = build_model(args, logger)
    set_seed(args.seed, device_specific=True)
    train_sampler, train_dataloader, eval_dataloader = build_dataloaders(
        args, train_dataset, eval_dataset, model.preprocessing
    )

    # -- model and optimisation
    model.train()
    if args.freeze_batch_norm:
        logger.info(f"{training.freeze_batch_norms(model)} BatchNorms frozen in inference mode")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    learning_rate = args.learning_rate
    if args.scale_lr:
        learning_rate *= world * args.train_batch_size * args.gradient_accumulation_steps / 12
    optimizer = training.build_optimizer(
        model.parameters(), lr=learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
        weight_decay=args.adam_weight_decay, device=accelerator.device,
    )
    batches_per_epoch = math.ceil(len(train_dataloader) / world)  # what each process sees after sharding
    updates_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        max_train_steps = args.num_train_epochs * updates_per_epoch
    else:
        max_train_steps = args.max_train_steps
    num_epochs = math.ceil(max_train_steps / updates_per_epoch)
    # Accelerate steps a prepared scheduler once per process for every optimizer step.
    lr_scheduler = training.build_lr_scheduler(
        optimizer, args.lr_scheduler, warmup_steps=args.lr_warmup_steps * world, total_steps=max_train_steps * world
    )
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler
    )
    if eval_dataloader is not None:
        eval_dataloader = accelerator.prepare(eval_dataloader)
    weight_average = training.WeightAverage(accelerator.unwrap_model(model), args.ema_decay) if args.use_ema else None
    # Accelerate wraps the forward in autocast when it can; where it cannot (old CPUs), do it ourselves.
    autocast = None
    if accelerator.mixed_precision in ("bf16", "fp16") and not accelerator.native_amp:
        dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float16
        autocast = lambda: torch.autocast(accelerator.device.type, dtype=dtype)  # noqa: E731

    if trackers:
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        tracker_config.pop("hub_token", None)
        accelerator.init_trackers(args.tracker_project_name, config=tracker_config)

    total_batch_size = args.train_batch_size * world * args.gradient_accumulation_steps
    logger.info(
        f"{len(train_dataset)} training images, {len(eval_dataset) if eval_dataset is not None else 0} validation "
        f"images | {model_name(accelerator.unwrap_model(model))} {origin} | batch {args.train_batch_size} x "
        f"{world} processes x {args.gradient_accumulation_steps} accumulation = {total_batch_size} | "
        f"{max_train_steps} steps ({num_epochs} epochs of {updates_per_epoch})",
        main_process_only=True,
    )

    # -- resume
    resumed = resume_training(accelerator, args, output_dir, updates_per_epoch, len(train_dataset), weight_average)
    resume_path, global_step, train_seconds = resumed.path, resumed.global_step, resumed.train_seconds
    first_epoch, skip_batches = resumed.first_epoch, resumed.skip_batches
    distill_stream = None
    if args.distill_from:
        distill_stream = build_distillation(args, accelerator, accelerator.unwrap_model(model), autocast,
                                            start=global_step * args.gradient_accumulation_steps)
        data_info["distillation"] = (f"the seven maps of {args.distill_from} on {distill_stream.num_images} "
                                     f"unlabelled images ({args.distill_data_dir}), weight {args.distill_weight}")
        logger.info(f"distilling {args.distill_from} on {distill_stream.num_images} images, "
                    f"{args.distill_batch_size} per step and process", main_process_only=True)

    # img/s counts every image the student trains on in a step: the labelled batch and the distilled one
    images_per_step = total_batch_size + (
        args.distill_batch_size * world * args.gradient_accumulation_steps if distill_stream is not None else 0)

    log = training.JsonlLog(output_dir / training.TRAIN_LOG_NAME, enabled=accelerator.is_main_process)
    if resume_path is not None and accelerator.is_main_process:
        # Steps logged after this checkpoint (a kill between two saves) are trained again: one curve in the log.
        moved = training.supersede_log_after(log.path, global_step)
        if moved:
            accelerator.print(f"moved {moved} log records of steps after {global_step} (trained again now) to "
                              f"{training.SUPERSEDED_LOG_NAME}")
    if data_info.get("data_check"):
        log.write({"event": "data_check", **data_info["data_check"]})
    log.write({"event": "start", "world_size": world, "global_step": global_step, "max_train_steps": max_train_steps,
               "mixed_precision": accelerator.mixed_precision, "resumed_from": str(resume_path) if resume_path else None,
               "device": str(accelerator.device), "time": time.time()})

    def trainer_state(epoch: int) -> dict:
        return {
            "epoch": epoch, "world_size": world, "train_batch_size": args.train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "num_train_images": len(train_dataset), "seed": args.seed, "max_train_steps": max_train_steps,
            "train_seconds": train_seconds, "images_seen": global_step * total_batch_size,
        }

    metrics_factory = SODMetrics
    last_metrics: dict = {}

    def run_validation(step: int) -> dict:
        if eval_dataloader is None:
            return {}
        with weight_average.applied() if weight_average is not None else contextlib.nullcontext():
            results = training.evaluate(accelerator, model, eval_dataloader, metrics_factory,
                                        channels_last=args.channels_last, autocast=autocast, progress=True)
        if results:
            accelerator.log({f"val/{k}": v for k, v in results.items()}, step=step)
            log.write({"event": "validation", "step": step, **results})
            accelerator.print(
                f"step {step}: validation maxF {results['maxF']:.4f}  MAE {results['MAE']:.4f}  "
                f"Sm {results['Sm']:.4f}  loss {results['loss']:.4f}"
            )
        return results

    progress = tqdm(total=max_train_steps, initial=global_step, desc="training", unit="step",
                    disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    throughput = training.Throughput()
    samples_this_process = 0
    local_updates = 0
    first_loss = None
    forward_dtype = None
    step_losses, step_foreground = [], []
    last_checkpoint_step = global_step if resume_path is not None else None
    step_started = time.perf_counter()
    epoch = first_epoch

    try:
        for epoch in range(first_epoch, num_epochs):
            if global_step >= max_train_steps:
                break
            train_sampler.set_epoch(epoch)
            train_dataloader.set_epoch(epoch)
            loader = train_dataloader
            if epoch == first_epoch and skip_batches:
                loader = accelerator.skip_first_batches(train_dataloader, skip_batches)
                loader.set_epoch(epoch)
            for batch in loader:
                loss, dtype = training.training_step(
                    accelerator, model, batch, optimizer, lr_scheduler,
                    max_grad_norm=args.max_grad_norm, channels_last=args.channels_last, autocast=autocast,
                    distill=next(distill_stream) if distill_stream is not None else None,
                    distill_weight=args.distill_weight,
                )
                if forward_dtype is None:
                    forward_dtype = dtype
                    accelerator.print(f"forward pass dtype: {dtype}")
                samples_this_process += batch["pixel_values"].shape[0]
                step_losses.append(loss)
                step_foreground.append(batch["labels"].detach().float().mean())
                if not accelerator.sync_gradients:
                    continue
                # -- one optimizer step done
                global_step += 1
                if weight_average is not None:
                    weight_average.update()
                local_updates += 1
                now = time.perf_counter()
                train_seconds += now - step_started
                step_loss, foreground = accelerator.reduce(
                    torch.stack([torch.stack(step_losses).mean(), torch.stack(step_foreground).mean()]), reduction="mean"
                ).tolist()
                step_losses, step_foreground = [], []
                if first_loss is None:
                    first_loss = step_loss
                throughput.update(images_per_step)
                # mask_fraction (the batch's share of foreground pixels) also fingerprints which samples were used.
                record = {"step": global_step, "epoch": epoch, "loss": step_loss, "lr": lr_scheduler.get_last_lr()[0],
                          "mask_fraction": foreground}
                if throughput.value is not None:
                    record["images_per_s"] = throughput.value
                accelerator.log(record, step=global_step)
                log.write({"event": "train", **record})
                postfix = {"loss": f"{step_loss:.4f}"}
                if throughput.value is not None:
                    postfix["img/s"] = f"{throughput.value:.1f}"
                if last_metrics:
                    postfix["maxF"] = f"{last_metrics['maxF']:.3f}"
                progress.set_postfix(postfix, refresh=False)
                progress.update(1)

                if global_step % args.validation_steps == 0 and global_step < max_train_steps:
                    last_metrics = run_validation(global_step) or last_metrics
                    throughput.reset_clock()
                if global_step % args.checkpointing_steps == 0 and global_step < max_train_steps:
                    path = training.save_checkpoint(accelerator, output_dir, global_step, trainer_state(epoch),
                                                    args.checkpoints_total_limit, weight_average)
                    last_checkpoint_step = global_step
                    log.write({"event": "checkpoint", "step": global_step, "path": str(path)})
                    throughput.reset_clock()
                step_started = time.perf_counter()
                if global_step >= max_train_steps:
                    break
        progress.close()

        print(f"rank {accelerator.process_index}/{world}: {local_updates} optimizer steps on "
              f"{samples_this_process} samples this run", flush=True)

        # -- the end: last checkpoint, final validation, the model folder
        if last_checkpoint_step != global_step:
            training.save_checkpoint(accelerator, output_dir, global_step, trainer_state(epoch),
                                     args.checkpoints_total_limit, weight_average)
            last_checkpoint_step = global_step
            log.write({"event": "checkpoint", "step": global_step})
        final_metrics = run_validation(global_step)
    except BadSampleError as error:
        # A file that passed the check (or was not checked) failed to decode: keep the steps done so far.
        progress.close()
        message = bad_sample_message(error)
        kept = ""
        if world == 1 and global_step > 0 and last_checkpoint_step != global_step:
            path = training.save_checkpoint(accelerator, output_dir, global_step, trainer_state(epoch),
                                            args.checkpoints_total_limit, weight_average)
            log.write({"event": "checkpoint", "step": global_step, "path": str(path)})
            kept = f" Saved {path.name} first."
        elif last_checkpoint_step is not None:
            kept = f" The last checkpoint is checkpoint-{last_checkpoint_step}."
        log.write({"event": "bad_sample", "step": global_step, "error": message})
        print(f"error: a sample could not be read at step {global_step}: {message}.{kept} Fix or remove the file "
              "(or pass --skip_bad_samples), then continue with --resume_from_checkpoint latest.",
              file=sys.stderr, flush=True)
        return EXIT_BAD_DATA
    if not final_metrics:
        final_metrics = last_metrics

    exit_code = 0
    if weight_average is not None:  # the model saved is the average (the last step's weights are in the checkpoint)
        weight_average.copy_to_model()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped = unwrapped.to(memory_format=torch.contiguous_format).float().eval()
        wall = time.time() - started
        training_record = describe_training(
            args, accelerator, unwrapped, origin, data_info, learning_rate=learning_rate, steps=global_step,
            total_batch_size=total_batch_size, train_seconds=train_seconds, wall_seconds=wall,
            resumed=resume_path is not None,
        )
        card_kwargs = model_card_kwargs(training_record, final_metrics, data_info, args.resolution, global_step)
        card_metrics = card_kwargs["metrics"]
        save_model(unwrapped, output_dir, card_kwargs)
        summary = {"event": "end", "global_step": global_step, "first_loss": first_loss, "metrics": card_metrics,
                   "train_seconds": train_seconds, "wall_seconds": wall, "forward_dtype": str(forward_dtype)}
        log.write(summary)
        accelerator.print(f"saved the model to {output_dir} (step {global_step}, {training.format_duration(wall)})")
        if args.push_to_hub:
            exit_code = push_to_hub(args, output_dir, unwrapped, card_kwargs)
    accelerator.wait_for_everyone()
    if keep_process_group:
        for tracker in accelerator.trackers:
            tracker.finish()
    else:
        accelerator.end_training()
    return exit_code


def build_dataloaders(args, train_dataset, eval_dataset, preprocessing):
    """The training sampler and data loaders (the validation loader is None without validation data).

    Each sample's crop and flip come from (seed, epoch, index): the same whichever process or worker reads
    it and whatever was read before, so a resumed run draws exactly what an uninterrupted one would.
    """
    import torch

    from u2net_hub import training
    from u2net_hub.data import SaliencyTransform, TrainingSamples, collate_samples

    pre = preprocessing
    train_transform = SaliencyTransform(
        resolution=args.resolution, crop_size=args.crop_size or None, flip=args.random_flip, train=True,
        mean=pre.mean, std=pre.std, divide_by_max=pre.divide_by_max,
    )
    eval_transform = SaliencyTransform(
        resolution=args.resolution, crop_size=None, train=False, mean=pre.mean, std=pre.std, divide_by_max=pre.divide_by_max,
    )
    train_sampler = training.EpochShuffleSampler(len(train_dataset), seed=args.seed, keyed=True)
    train_dataloader = torch.utils.data.DataLoader(
        TrainingSamples(train_dataset, train_transform, seed=args.seed, skip_bad=args.skip_bad_samples),
        batch_size=args.train_batch_size, sampler=train_sampler,
        collate_fn=collate_samples, num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0, pin_memory=torch.cuda.is_available(),
    )
    eval_dataloader = None
    if eval_dataset is not None and len(eval_dataset) > 0:
        eval_dataloader = torch.utils.data.DataLoader(
            TrainingSamples(eval_dataset, eval_transform, seed=args.seed, skip_bad=args.skip_bad_samples),
            batch_size=args.eval_batch_size, shuffle=False,
            collate_fn=collate_samples, num_workers=args.dataloader_num_workers,
            persistent_workers=args.dataloader_num_workers > 0,
        )
    return train_sampler, train_dataloader, eval_dataloader


def build_distillation(args, accelerator, student, autocast, start: int):
    """The teacher and its stream of unlabelled batches (crops and flips as the training data's), from `start`."""
    import torch

    from u2net_hub import U2Net, training
    from u2net_hub.data import SaliencyTransform, TrainingSamples, collate_samples
    from u2net_hub.distillation import DistillationStream, unlabelled_images
    from u2net_hub.hub import ModelLoadError

    try:
        teacher = U2Net.load(args.distill_from)
    except ModelLoadError as error:
        raise SystemExit(f"error: --distill_from: {error}") from None
    mine, theirs = student.preprocessing, teacher.preprocessing
    if (mine.mean, mine.std, mine.divide_by_max) != (theirs.mean, theirs.std, theirs.divide_by_max):
        raise SystemExit(f"error: --distill_from {args.distill_from} normalises its input differently ({theirs}) "
                         f"from the model trained ({mine}); both must see the same pixels")
    try:
        images = unlabelled_images(args.distill_data_dir)
    except ValueError as error:
        raise SystemExit(f"error: --distill_data_dir: {error}") from None
    transform = SaliencyTransform(
        resolution=args.resolution, crop_size=args.crop_size or None, flip=args.random_flip, train=True,
        mean=mine.mean, std=mine.std, divide_by_max=mine.divide_by_max,
    )
    sampler = training.EpochShuffleSampler(len(images), seed=args.seed + 1, keyed=True)
    loader = torch.utils.data.DataLoader(
        TrainingSamples(images, transform, seed=args.seed + 1, skip_bad=args.skip_bad_samples, mask_column=None),
        batch_size=args.distill_batch_size, sampler=sampler, collate_fn=collate_samples,
        num_workers=args.dataloader_num_workers, persistent_workers=args.dataloader_num_workers > 0, drop_last=True,
    )
    if len(loader) < 1:
        raise SystemExit(f"error: --distill_data_dir holds {len(images)} images, fewer than --distill_batch_size "
                         f"{args.distill_batch_size}")
    return DistillationStream(
        teacher, accelerator.prepare(loader), sampler, accelerator.device, start=start,
        channels_last=args.channels_last, autocast=autocast or accelerator.autocast,
        skip_first_batches=accelerator.skip_first_batches,
    )


@dataclass
class Resumed:
    """Where a run starts: the checkpoint it resumed from (None: a new run) and the position in the data."""

    path: Path | None = None
    global_step: int = 0
    train_seconds: float = 0.0
    first_epoch: int = 0
    skip_batches: int = 0


def resume_training(accelerator, args, output_dir: Path, updates_per_epoch: int, num_train_images: int,
                    weight_average=None) -> Resumed:
    """Load --resume_from_checkpoint into the prepared objects and say where training continues.

    Settings that move the data position (world size, batch size, accumulation, data size, seed) are
    compared with the checkpoint's and named when they changed. The weight average (--use_ema) continues
    from the checkpoint's, or starts from the resumed weights when the checkpoint has none.
    """
    from u2net_hub import training

    path = training.resolve_resume_checkpoint(args.resume_from_checkpoint, output_dir)
    if args.resume_from_checkpoint and path is None:
        accelerator.print(f"no complete checkpoint in {output_dir} yet: starting a new run")
    if path is None:
        return Resumed()
    state = training.read_trainer_state(path)
    try:
        training.load_checkpoint(accelerator, path)
    except training.CheckpointError as error:
        raise SystemExit(f"error: {error}") from None
    if weight_average is not None:
        average = path / training.WEIGHT_AVERAGE_DIR
        if average.is_dir():
            try:
                weight_average.load(average)
            except training.CheckpointError as error:
                raise SystemExit(f"error: {error}") from None
        else:
            weight_average.reset()
            accelerator.print(f"{path} holds no weight average: --use_ema starts one from its weights")
    global_step = int(state["global_step"])
    first_epoch, skip_batches = training.resume_position(global_step, updates_per_epoch, args.gradient_accumulation_steps)
    changed = {
        key: (state.get(key), now) for key, now in
        (("world_size", accelerator.num_processes), ("train_batch_size", args.train_batch_size),
         ("gradient_accumulation_steps", args.gradient_accumulation_steps),
         ("num_train_images", num_train_images), ("seed", args.seed))
        if state.get(key) != now
    }
    if changed:
        accelerator.print(f"warning: resuming with different settings {changed}; the data position is approximate")
    accelerator.print(f"resumed from {path} at step {global_step} (epoch {first_epoch}, "
                      f"skipping {skip_batches} batches)")
    return Resumed(path, global_step, float(state.get("train_seconds", 0.0)), first_epoch, skip_batches)


def describe_training(args, accelerator, model, origin: str, data_info: dict, *, learning_rate: float, steps: int,
                      total_batch_size: int, train_seconds: float, wall_seconds: float, resumed: bool) -> dict:
    """The training record of the model card: data, model, recipe, length, precision, hardware, time, command."""
    from u2net_hub import training

    world = accelerator.num_processes
    record = {
        "dataset": data_info.get("dataset"),
        "validation": data_info.get("validation", "none"),
        "model": f"{model.variant} ({model.num_parameters:,} parameters), {origin}",
        "recipe": (
            f"resize {args.resolution}, random crop {args.crop_size or 'none'}, "
            f"{'no flip' if args.random_flip == 'none' else f'random {args.random_flip} flip'}, "
            f"{'AdamW' if args.adam_weight_decay > 0 else 'Adam'} lr {learning_rate:g} "
            f"(betas {args.adam_beta1}, {args.adam_beta2}, eps {args.adam_epsilon:g}, "
            f"weight decay {args.adam_weight_decay:g}), {args.lr_scheduler} schedule"
            f"{f' with {args.lr_warmup_steps} warmup steps' if args.lr_warmup_steps else ''}, "
            "BCE-with-logits summed over the fused map and six side outputs"
            f"{', BatchNorms frozen in inference mode' if args.freeze_batch_norm else ''}"
            f"{f', the weights saved are their exponential moving average (decay {args.ema_decay:g})' if args.use_ema else ''}"
            f"{f', gradients clipped to {args.max_grad_norm:g}' if args.max_grad_norm else ''}"
        ),
        "steps": steps,
        "batch size": f"{total_batch_size} ({args.train_batch_size} per process x {world} processes x "
                      f"{args.gradient_accumulation_steps} accumulation)",
        "images seen": steps * total_batch_size,
        "precision": f"{accelerator.mixed_precision} mixed precision" if accelerator.mixed_precision != "no"
        else "fp32",
        "hardware": hardware_description(accelerator),
        "training time": training.format_duration(train_seconds),
        "wall time": training.format_duration(wall_seconds) + (" (this session)" if resumed else ""),
        "command": training.redacted_command(launcher=launcher_prefix(world)),
    }
    if data_info.get("distillation"):
        record["distillation"] = data_info["distillation"]
    if data_info.get("dataset_id"):
        record["dataset_id"] = data_info["dataset_id"]
    return record


def model_card_kwargs(training_record: dict, final_metrics: dict, data_info: dict, resolution: int, step: int) -> dict:
    """What the model card is rendered from: the training record and the last validation metrics."""
    card_metrics = {k: v for k, v in final_metrics.items() if k not in ("num_images", "count")}
    metrics_dataset = None
    if card_metrics:
        metrics_dataset = (f"{data_info.get('validation')} at {resolution}x{resolution} "
                           f"(validation during training, step {step})")
    return {"training": training_record, "metrics": card_metrics, "metrics_dataset": metrics_dataset}


def save_model(model, output_dir: Path, card_kwargs: dict) -> None:
    """save_pretrained, and (re)write the model card: the mixin keeps an existing README.md, which after a
    resumed or repeated run would describe the previous one."""
    model.save_pretrained(output_dir, model_card_kwargs=card_kwargs)
    model.generate_model_card(**card_kwargs).save(output_dir / "README.md")


def model_name(model) -> str:
    return f"U2Net-{model.variant}"


def hardware_description(accelerator) -> str:
    import platform

    import torch

    if accelerator.device.type == "cuda":
        return f"{accelerator.num_processes} x {torch.cuda.get_device_name(accelerator.device)}"
    cpu = platform.processor() or platform.machine()
    return f"{accelerator.num_processes} CPU process(es), {os.cpu_count()} cores ({cpu})"


def launcher_prefix(world: int) -> str | None:
    """How the script was started, as far as the environment tells (for the model card's command)."""
    if "ACCELERATE_MIXED_PRECISION" in os.environ or world > 1:
        parts = ["accelerate launch"]
        if world > 1:
            parts.append(f"--num_processes {world}")
        return " ".join(parts)
    return "python"


def push_to_hub(args, output_dir: Path, model, card_kwargs: dict) -> int:
    """Upload the saved folder (not the checkpoints) to the Hub; return the exit code."""
    from huggingface_hub import constants

    repo_id = args.hub_model_id or output_dir.resolve().name
    if constants.HF_HUB_OFFLINE:
        print(
            f"cannot push to the Hub: HF_HUB_OFFLINE is set. Everything is saved in {output_dir}; upload it later with\n"
            f"  hf upload {repo_id} {output_dir} . --exclude 'checkpoint-*/*' '.checkpoint-*/*'",
            file=sys.stderr, flush=True,
        )
        return EXIT_PUSH_FAILED
    try:
        from huggingface_hub import create_repo, upload_folder

        repo_id = create_repo(repo_id, private=args.hub_private_repo, token=args.hub_token, exist_ok=True).repo_id
        # The card's usage snippet names the repo: write it again with the real id before uploading.
        save_model(model, output_dir, dict(card_kwargs, repo_id=repo_id))
        upload_folder(
            repo_id=repo_id, folder_path=str(output_dir), token=args.hub_token,
            commit_message=f"Upload U2Net ({model.variant}) trained with u2net-hub",
            ignore_patterns=["checkpoint-*", "checkpoint-*/**", ".checkpoint-*", ".checkpoint-*/**"],
        )
    except Exception as error:  # network, auth, permissions: the local save is intact either way
        print(f"could not push to the Hub ({type(error).__name__}: {error}). Everything is saved in {output_dir}.",
              file=sys.stderr, flush=True)
        return EXIT_PUSH_FAILED
    print(f"pushed to https://huggingface.co/{repo_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
