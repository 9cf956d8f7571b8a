#!/usr/bin/env python
# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Pretrain AVF-MAE++ (masked audio-visual reconstruction + contrastive loss) with Accelerate.

Single process:

    python training/run_pretraining.py --size base --train_file videos.csv --output_dir pretrain-base \\
        --per_device_train_batch_size 8 --max_steps 1000 --save_steps 200

Instead of list files, a `datasets` dataset (a Hub id or a folder saved with `save_to_disk`) whose columns hold the
media paths: `--dataset_name my-org/clips --train_split train --validation_split validation`.

A paper recipe with local paths (flags after the JSON file override it):

    accelerate launch --multi_gpu --num_processes 8 training/run_pretraining.py training/pretrain_base.json \\
        --train_file videos.csv --output_dir pretrain-base

Two processes on a CPU-only machine: `torchrun --standalone --nproc_per_node 2 training/run_pretraining.py ...
--use_cpu` (or `accelerate launch --multi_gpu --num_processes 2 ... --use_cpu`). Resume exactly where a run stopped
with `--resume_from_checkpoint pretrain-base/step_200` (or `latest`). See training/README.md.

Of `TrainingArguments`, this script honours the fields in `HONOURED_TRAINING_ARGUMENTS` (batch sizes, accumulation,
optimizer and schedule settings, max_steps / num_train_epochs, seed and data_seed, evaluation, saving and logging
steps, use_cpu, bf16 / fp16, resume_from_checkpoint, dataloader_num_workers, report_to, push_to_hub and the hub_*
settings it uses); the other fields are not offered as flags.
"""

import dataclasses
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.logging import get_logger
from accelerate.utils import DistributedType, set_seed
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import HfArgumentParser, TrainingArguments, get_scheduler
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from avfmae_hf import AVFMAEForPreTraining
from avfmae_hf.augmentation_avfmae import PretrainingAugmentation
from avfmae_hf.data_avfmae import (
    BAD_CLIPS_KEY,
    DEFAULT_MAX_BAD_CLIP_SHARE,
    BadClipLog,
    BadClipSkippingDataset,
    DatasetArguments,
    check_fingerprint,
    check_launch,
    check_not_finished,
    run_fingerprint,
    save_fingerprint,
    steps_from_ratio,
)
from avfmae_hf.hub_avfmae import build_model_card, push_to_hub
from avfmae_hf.training_avfmae import (
    AVFMAEDataCollator,
    AVFMAEPretrainingDataset,
    TrainingProgress,
    check_model_source,
    layer_decay_parameter_groups,
    load_model_and_processor,
    mask_generator,
    parse_arguments,
    remove_arguments,
    save_hub_ready,
    scale_learning_rate,
)
from avfmae_hf.visualization_avfmae import ReconstructionLogger


logger = get_logger(__name__)


@dataclass
class ModelArguments:
    """Which model to pretrain, and its processor."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue pretraining a saved AVFMAEForPreTraining folder (or Hub id)."}
    )
    size: str | None = field(default=None, metadata={"help": "Start from scratch at a paper size: base, large, huge."})
    config_name: str | None = field(
        default=None, metadata={"help": "Start from scratch with this config (a folder or config.json)."}
    )
    processor_name: str | None = field(
        default=None,
        metadata={"help": "Processor folder; defaults to the one saved with the model, else the config's default."},
    )
    do_face_crop: bool | None = field(
        default=None, metadata={"help": "Crop and align faces (default: the processor's setting)."}
    )

    def __post_init__(self):
        check_model_source(self.model_name_or_path, self.size, self.config_name)


@dataclass
class DataTrainingArguments(DatasetArguments):
    """The videos to pretrain on: list files, or the `datasets` dataset of `DatasetArguments` (no labels read)."""

    train_file: str | None = field(
        default=None,
        metadata={
            "help": "List of videos: `<video.mp4> <label>` lines (official pretraining format; the label is ignored), "
            "one path per line, or a CSV with a `video` (and optional `audio`) header. Each video's own audio stream "
            "is used unless an audio file is listed."
        },
    )
    validation_file: str | None = field(
        default=None,
        metadata={
            "help": "Held-out videos (same formats): their loss, with uniform frame sampling and fixed masks, is "
            "reported at every evaluation (--eval_strategy steps/epoch) and at the end."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N videos (quick runs)."}
    )
    audio_gain_jitter: bool = field(
        default=True, metadata={"help": "Official random audio gain (Beta(10, 10) + 0.5) on every clip."}
    )
    multiscale_crop: bool = field(
        default=True,
        metadata={
            "help": "Official multi-scale crop (scales 1/.875/.75/.66 of the short side, 13 fixed offsets, the same "
            "for every frame) resized to the frame size; --no_multiscale_crop resizes the whole frame."
        },
    )
    random_temporal_start: bool = field(
        default=True,
        metadata={
            "help": "Official temporal sampling: 16 frames at the stride from a uniformly random start; "
            "--no_random_temporal_start uses the fine-tuning 'train' window."
        },
    )
    max_bad_clip_share: float = field(
        default=DEFAULT_MAX_BAD_CLIP_SHARE,
        metadata={
            "help": "Clips that fail to decode are skipped (a warning names each, bad_clips.json lists them); once "
            "more than this share of the training clips failed, the state is saved and the run stops with an error."
        },
    )

    def __post_init__(self):
        if self.train_file is None and self.dataset_name is None:
            raise ValueError("--train_file (or --dataset_name) is required.")


@dataclass
class AVFMAETrainingArguments(TrainingArguments):
    """`TrainingArguments` with the official pretraining recipe's defaults (architecture.md §10.1)."""

    base_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "If set, learning_rate = base_learning_rate * total batch size / 256 (official rule; total = "
            "per-device batch x accumulation steps x processes)."
        },
    )
    reconstruction_steps: int = field(
        default=0,
        metadata={
            "help": "Every N steps and at the end, draw the first clip of the batch (frames, masked, reconstructed; "
            "the same for the spectrogram) into <output_dir>/reconstructions/step_<n>.png and send it to the "
            "--report_to trackers; 0: never. Needs matplotlib (pip install avfmae-hf[plot])."
        },
    )
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (official pretraining: 0.95)."})
    weight_decay: float = field(
        default=0.05, metadata={"help": "AdamW weight decay (official: 0.05), none on 1-D parameters and biases."}
    )
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping norm; 0 turns it off (official: off, huge recipe: 0.7)."}
    )
    lr_scheduler_type: str = field(
        default="cosine",
        metadata={"help": "transformers schedule name (official: cosine with warm-up, use cosine_with_min_lr)."},
    )
    allow_finished_resume: bool = field(
        default=False,
        metadata={
            "help": "Resuming a checkpoint that already reached --max_steps is an error; with this flag it only "
            "writes the final output."
        },
    )


# The `TrainingArguments` fields this script honours; the others are not offered as flags.
HONOURED_TRAINING_ARGUMENTS = {
    "output_dir", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "num_train_epochs",
    "max_steps", "warmup_steps", "lr_scheduler_type", "lr_scheduler_kwargs", "seed", "data_seed", "eval_strategy",
    "eval_steps", "save_strategy", "save_steps", "logging_steps", "use_cpu", "bf16", "fp16", "resume_from_checkpoint",
    "dataloader_num_workers", "report_to", "push_to_hub", "hub_model_id", "hub_token", "hub_private_repo",
    "hub_revision",
}  # fmt: skip


# `DatasetArguments` fields of fine-tuning only: pretraining reads no labels and evaluates no test split.
UNUSED_DATASET_ARGUMENTS = ("test_split", "label_column")

ARGUMENT_CLASSES = (ModelArguments, DataTrainingArguments, AVFMAETrainingArguments)


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    own = {field.name for field in dataclasses.fields(AVFMAETrainingArguments)} - {
        field.name for field in dataclasses.fields(TrainingArguments)
    }
    unused = {field.name for field in dataclasses.fields(TrainingArguments)} - HONOURED_TRAINING_ARGUMENTS - own
    remove_arguments(parser, unused | set(UNUSED_DATASET_ARGUMENTS))
    return parser


def find_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The `step_{n}` folder to resume from: a given folder, or the newest one in `output_dir` for `latest`."""
    if resume_from_checkpoint in (None, "", "False", "false"):
        return None
    if resume_from_checkpoint not in ("latest", "True", "true"):
        return resume_from_checkpoint
    steps = [
        (int(match.group(1)), path)
        for path in Path(output_dir).glob("step_*")
        if (match := re.fullmatch(r"step_(\d+)", path.name)) and path.is_dir()
    ]
    if not steps:
        raise ValueError(f"No step_* checkpoint in {output_dir} to resume from.")
    return os.fspath(max(steps)[1])


def evaluate(model, dataloader, accelerator: Accelerator, seed: int) -> float:
    """Mean pretraining loss over a prepared validation loader. Masks depend on the seed and the global batch index
    only (accelerate gives batch `i * num_processes + process_index` to each process); `gather_for_metrics` drops the
    samples repeated to even out the last batch."""
    model.eval()
    losses = []
    for batch_index, batch in enumerate(dataloader):
        global_batch = batch_index * accelerator.num_processes + accelerator.process_index
        with torch.no_grad():
            outputs = model(**batch, generator=mask_generator(seed, global_batch))
        per_sample = outputs.loss.detach().float().repeat(batch["pixel_values"].shape[0])
        losses.append(accelerator.gather_for_metrics(per_sample))
    model.train()
    return torch.cat(losses).mean().item()


def main(args: list[str] | None = None) -> dict:
    # 1. Arguments: flags, or a JSON recipe followed by flags that override it
    model_args, data_args, training_args = parse_arguments(build_parser(), args)
    if training_args.save_strategy == "best":
        raise ValueError("--save_strategy best needs a metric to compare checkpoints; pretraining saves by steps, by "
                         "epoch or not at all (--save_strategy steps/epoch/no).")  # fmt: skip

    # 2. Accelerator (cpu=True makes torchrun / `accelerate launch --multi_gpu` runs on CPUs real multi-process
    #    runs), then logging: progress from the main process, warnings from all
    trackers = [name for name in (training_args.report_to or []) if name != "none"]
    if trackers and trackers != ["all"]:
        from accelerate.tracking import get_available_trackers

        missing = sorted(
            set(trackers) - {str(getattr(tracker, "value", tracker)) for tracker in get_available_trackers()}
        )
        if missing:
            raise ValueError(f"--report_to {' '.join(missing)}: not installed in this environment (pip install ...).")
    data_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    mixed_precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no"
    accelerator = Accelerator(
        cpu=training_args.use_cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        # one shuffling seed for every process (the default, torch's initial seed, differs per process once the
        # seed is made device-specific below): the ranks then split one permutation, disjoint and complete
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=data_seed),
        log_with=trackers or None,
        project_dir=training_args.output_dir,
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        level=logging.INFO if accelerator.is_local_main_process else logging.WARNING,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    logger.info(accelerator.state, main_process_only=False)
    check_launch(accelerator.num_processes, accelerator.distributed_type, training_args.use_cpu)

    # 3. Model and processor, built after seeding so that every process starts from the same weights
    set_seed(training_args.seed)
    model, processor = load_model_and_processor(
        AVFMAEForPreTraining,
        model_name_or_path=model_args.model_name_or_path,
        size=model_args.size,
        config_name=model_args.config_name,
        processor_name=model_args.processor_name,
        do_face_crop=model_args.do_face_crop,
    )
    # from here on each process draws its own random numbers (drop path, if any)
    set_seed(training_args.seed, device_specific=True)

    # 4. Data: random starts, crops and audio gains are a function of (data seed, epoch, video), masks of
    #    (seed, process, epoch, batch), so a resumed run sees exactly what an uninterrupted one would
    #    Every list problem (syntax, missing files) is reported at once, before the first step; clips that fail to
    #    decode later are skipped and counted (BadClipSkippingDataset, BadClipLog). The clips come from list files or
    #    from the splits of a `datasets` dataset
    train_source, validation_source = data_args.sources(data_args.train_file, data_args.validation_file)
    if validation_source is None and training_args.eval_strategy != "no":
        raise ValueError(f"--eval_strategy {training_args.eval_strategy} needs validation data (--validation_file).")
    entries = data_args.read_entries(train_source, read_labels=False)
    if data_args.max_train_samples is not None:
        entries = entries[: data_args.max_train_samples]
    augmentation = PretrainingAugmentation(
        multiscale_crop=data_args.multiscale_crop, random_temporal_start=data_args.random_temporal_start
    )
    train_dataset = BadClipSkippingDataset(
        AVFMAEPretrainingDataset(
            entries,
            processor,
            seed=data_seed,
            audio_gain_jitter=data_args.audio_gain_jitter,
            augmentation=augmentation,
        ),
        warn=False,  # BadClipLog warns about the clips of the batches the loop takes
    )
    bad_clip_log = BadClipLog(len(train_dataset), data_args.max_bad_clip_share)
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=training_args.per_device_train_batch_size,
        shuffle=True,
        drop_last=True,  # the contrastive loss and the fusion BatchNorm want full batches
        collate_fn=AVFMAEDataCollator(),
        num_workers=training_args.dataloader_num_workers,
    )
    eval_dataloader = None
    if validation_source is not None:
        eval_dataset = AVFMAEPretrainingDataset(
            data_args.read_entries(validation_source, read_labels=False),
            processor,
            sampling_mode="uniform",
            seed=data_seed,
            audio_gain_jitter=False,
        )
        eval_dataloader = torch.utils.data.DataLoader(
            eval_dataset,
            batch_size=training_args.per_device_eval_batch_size,
            collate_fn=AVFMAEDataCollator(),
            num_workers=training_args.dataloader_num_workers,
        )

    # 5. Optimizer: AdamW, no weight decay on 1-D parameters and biases; learning rate by the official rule
    total_batch_size = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * accelerator.num_processes
    )
    learning_rate = training_args.learning_rate
    if training_args.base_learning_rate is not None:
        learning_rate = scale_learning_rate(training_args.base_learning_rate, total_batch_size)
    optimizer = torch.optim.AdamW(
        layer_decay_parameter_groups(model, learning_rate, training_args.weight_decay),
        lr=learning_rate,
        betas=(training_args.adam_beta1, training_args.adam_beta2),
        eps=training_args.adam_epsilon,
    )

    # 6. One prepare; the schedule (per optimizer step) is built on the prepared data loader's length
    model, optimizer, train_dataloader, eval_dataloader = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader
    )
    if len(train_dataloader) == 0:
        raise ValueError(
            f"{len(train_dataset)} videos give no full batch of {training_args.per_device_train_batch_size} per "
            f"process on {accelerator.num_processes} processes."
        )
    update_steps_per_epoch = math.ceil(len(train_dataloader) / training_args.gradient_accumulation_steps)
    if training_args.max_steps > 0:
        max_steps = training_args.max_steps
    else:
        max_steps = math.ceil(training_args.num_train_epochs * update_steps_per_epoch)
    num_epochs = math.ceil(max_steps / update_steps_per_epoch)
    logging_steps = steps_from_ratio(training_args.logging_steps, max_steps)
    eval_steps = steps_from_ratio(training_args.eval_steps or training_args.logging_steps, max_steps)
    save_steps = steps_from_ratio(training_args.save_steps, max_steps)
    lr_scheduler = get_scheduler(
        training_args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=training_args.get_warmup_steps(max_steps),
        num_training_steps=max_steps,
        scheduler_specific_kwargs=training_args.lr_scheduler_kwargs or {},
    )
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(lr_scheduler, progress)
    if trackers:
        accelerator.init_trackers("avfmae_pretraining", config=training_args.to_sanitized_dict())

    # 7. Resume: weights, optimizer, schedule, random states and the step counter, then skip the used batches; a
    #    checkpoint of another model config, dataset or batch layout is refused before anything is loaded
    fingerprint = run_fingerprint(
        accelerator.unwrap_model(model).config,
        entries,
        per_device_train_batch_size=training_args.per_device_train_batch_size,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        num_processes=accelerator.num_processes,
    )
    register_hub_ready_checkpoints(accelerator, processor)
    checkpoint = find_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if training_args.resume_from_checkpoint is None and list(Path(training_args.output_dir).glob("step_*")):
        # as the fine-tuning script does: a rerun into the same folder goes on rather than overwriting its steps
        checkpoint = find_checkpoint("latest", training_args.output_dir)
        logger.warning(
            f"Resuming from {checkpoint}, found in --output_dir {training_args.output_dir}; use a new --output_dir "
            "(or --resume_from_checkpoint false) to start over."
        )
    if checkpoint is not None:
        check_fingerprint(checkpoint, fingerprint)
        accelerator.load_state(checkpoint)
        logger.info(f"Resumed from {checkpoint} after {progress.completed_steps} steps")
        check_not_finished(progress.completed_steps, max_steps, checkpoint, training_args.allow_finished_resume)

    def save_checkpoint() -> str:
        folder = os.path.join(training_args.output_dir, f"step_{progress.completed_steps}")
        accelerator.save_state(folder)
        if accelerator.is_main_process:
            save_fingerprint(folder, fingerprint)
        return folder

    starting_epoch, batches_to_skip = progress.position(
        update_steps_per_epoch, training_args.gradient_accumulation_steps
    )

    logger.info(
        f"{len(train_dataset)} videos, {accelerator.num_processes} processes x {training_args.per_device_train_batch_size} "
        f"x {training_args.gradient_accumulation_steps} accumulation = {total_batch_size} per step, learning rate "
        f"{learning_rate:.3g}, {max_steps} steps ({update_steps_per_epoch} per epoch)"
    )

    # 8. Training loop
    started, steps_before = time.perf_counter(), progress.completed_steps
    progress_bar = tqdm(
        total=max_steps, initial=progress.completed_steps, disable=not accelerator.is_local_main_process
    )
    model.train()
    last_loss = eval_loss = None
    log_reconstruction = ReconstructionLogger(
        accelerator,
        accelerator.unwrap_model(model).config,
        training_args.output_dir,
        every_steps=training_args.reconstruction_steps,
        max_steps=max_steps,
    )

    def run_evaluation() -> float:
        loss = evaluate(model, eval_dataloader, accelerator, training_args.seed)
        logger.info(f"step {progress.completed_steps}: eval_loss {loss:.4g}")
        if trackers:
            accelerator.log({"eval_loss": loss}, step=progress.completed_steps)
        return loss

    for epoch in range(starting_epoch, num_epochs):
        if progress.completed_steps >= max_steps:
            break
        train_dataloader.set_epoch(epoch)
        train_dataset.set_epoch(epoch)
        skip = batches_to_skip if epoch == starting_epoch else 0
        batches = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
        for batch_index, batch in enumerate(batches, start=skip):
            bad_clip_log.record(batch.pop(BAD_CLIPS_KEY, None))
            with accelerator.accumulate(model):
                generator = mask_generator(training_args.seed, accelerator.process_index, epoch, batch_index)
                outputs = model(**batch, generator=generator)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients and training_args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:
                lr_scheduler.step()
            progress.completed_steps += 1
            progress_bar.update(1)
            step = progress.completed_steps
            bad_clip_log.synchronize()
            if bad_clip_log.exceeded:
                folder = save_checkpoint()
                if accelerator.is_main_process:
                    bad_clip_log.save(training_args.output_dir)
                raise bad_clip_log.error(folder)
            if step % logging_steps == 0 or step == max_steps:
                losses = {
                    name: accelerator.gather(getattr(outputs, name).detach()).mean().item()
                    for name in ("loss", "video_loss", "audio_loss", "contrastive_loss")
                }
                last_loss = losses["loss"]
                losses["learning_rate"] = lr_scheduler.get_last_lr()[0]
                progress_bar.set_postfix(loss=f"{last_loss:.4f}")
                logger.info(f"step {step}: " + ", ".join(f"{name} {value:.4g}" for name, value in losses.items()))
                if trackers:
                    accelerator.log(losses, step=step)
            log_reconstruction(step, batch, outputs)
            if eval_dataloader is not None and training_args.eval_strategy == "steps" and step % eval_steps == 0:
                eval_loss = run_evaluation()
            if training_args.save_strategy == "steps" and step % save_steps == 0:
                save_checkpoint()
            if step >= max_steps:
                break
        if eval_dataloader is not None and training_args.eval_strategy == "epoch":
            eval_loss = run_evaluation()
        if training_args.save_strategy == "epoch":
            save_checkpoint()
    progress_bar.close()
    train_runtime = time.perf_counter() - started
    if eval_dataloader is not None and training_args.eval_strategy == "no":
        eval_loss = run_evaluation()

    # 9. Final model and processor, Hub-ready (code files, auto_map, model card), and the upload when asked
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    card = pretraining_card_kwargs(model_args)
    save_hub_ready(
        unwrapped,
        training_args.output_dir,
        processor=processor,
        state_dict=accelerator.get_state_dict(model),
        is_main_process=accelerator.is_main_process,
        **card,
    )
    results = {
        "completed_steps": progress.completed_steps,
        "epoch": progress.completed_steps / update_steps_per_epoch,
        "train_loss": last_loss,
        "eval_loss": eval_loss,
        "num_processes": accelerator.num_processes,
        "train_runtime": train_runtime,  # seconds of the training loop in this run (evaluations included)
        "train_steps_per_second": (progress.completed_steps - steps_before) / train_runtime if train_runtime else None,
        "max_memory_allocated_gb": (
            torch.cuda.max_memory_allocated() / 2**30
            if torch.cuda.is_available() and not training_args.use_cpu
            else None
        ),
        "num_bad_clips": len(bad_clip_log.failures),
        "bad_clips": [name for name, _ in bad_clip_log.failures.values()],
    }
    if accelerator.is_main_process:
        bad_clip_log.save(training_args.output_dir)
        Path(training_args.output_dir, "train_results.json").write_text(json.dumps(results, indent=2) + "\n")
        if training_args.push_to_hub:
            repo_id = training_args.hub_model_id or Path(training_args.output_dir).absolute().name
            push_to_hub(
                unwrapped,
                repo_id,
                processor=processor,
                model_card=build_model_card(unwrapped, repo_id=repo_id, with_processor=True, **card),
                private=training_args.hub_private_repo,
                revision=training_args.hub_revision,
                token=training_args.hub_token,
            )
            logger.info(f"Pushed the pretrained model to {repo_id}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {**results, "process_index": accelerator.process_index, "model": unwrapped}


def pretraining_card_kwargs(model_args: ModelArguments) -> dict:
    """What the model cards of this script's folders say besides the model itself."""
    notes = [
        "Pretrained with masked audio-visual reconstruction and the contrastive loss (training/run_pretraining.py)."
    ]
    base_model = model_args.model_name_or_path
    if base_model is not None and os.path.exists(base_model):
        base_model = None  # a local folder is no Hub reference
    return {"base_model": base_model, "notes": notes}


CHECKPOINT_CARD_NOTES = ["A pretraining checkpoint."]


def save_hub_ready_models(accelerator: Accelerator, models: list, output_dir: str, processor) -> None:
    """Write each prepared model of a `step_*` folder as a Hub-ready model folder (weights, config with the complete
    `auto_map`, code files, processor, model card) into `output_dir`.

    The full weights are gathered with `accelerator.get_state_dict`, a collective operation under FSDP (and DeepSpeed
    ZeRO-3): every process calls this function, and only the main process writes. Under DeepSpeed ZeRO-3 without
    `stage3_gather_16bit_weights_on_model_save` the weights cannot be gathered; the folder then keeps DeepSpeed's
    state only, with a warning."""
    for model in models:
        try:
            state_dict = accelerator.get_state_dict(model)
        except ValueError as error:  # DeepSpeed ZeRO-3 that does not gather 16-bit weights on save
            logger.warning(f"{output_dir} holds DeepSpeed's sharded state only, no Hub-ready model: {error}")
            continue
        save_hub_ready(
            accelerator.unwrap_model(model),
            output_dir,
            processor=processor,
            state_dict=state_dict,
            is_main_process=accelerator.is_main_process,
            notes=CHECKPOINT_CARD_NOTES,
        )


def register_hub_ready_checkpoints(accelerator: Accelerator, processor) -> None:
    """Make every `step_*` folder a loadable, Hub-ready model folder as well as a resumable state, under every engine
    (see `save_hub_ready_models`).

    DDP and single process: the Hub-ready model replaces accelerate's plain weights file and is what resume reads
    back. FSDP and DeepSpeed save sharded states of their own (FSDP: `pytorch_model_fsdp_0/`, `optimizer_0/`;
    DeepSpeed: `pytorch_model/`, `latest`), which stay what resume reads; the Hub-ready files (`config.json`,
    `model.safetensors`, code files, processor, `README.md`) are written beside them, under names those engines do
    not use."""

    def save_model(models, weights, output_dir):
        save_hub_ready_models(accelerator, models, output_dir, processor)
        weights.clear()  # DDP / one process: accelerate writes no second copy of the weights

    def load_model(models, input_dir):
        if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            return  # the engine's own sharded state
        if not Path(input_dir, CONFIG_NAME).is_file():  # a checkpoint in accelerate's own layout
            return
        for model in models:
            unwrapped = accelerator.unwrap_model(model)
            if Path(input_dir, SAFE_WEIGHTS_NAME).is_file():
                files = [SAFE_WEIGHTS_NAME]
            else:  # weights sharded by save_pretrained
                files = sorted(
                    set(json.loads(Path(input_dir, SAFE_WEIGHTS_INDEX_NAME).read_text())["weight_map"].values())
                )
            unwrapped.load_state_dict(
                {name: value for file in files for name, value in load_file(Path(input_dir, file)).items()}
            )
        models.clear()

    accelerator.register_save_state_pre_hook(save_model)
    accelerator.register_load_state_pre_hook(load_model)


def finish() -> None:
    """End a multi-process run without the gloo teardown abort that raw DDP loops can hit at interpreter exit: close
    the process group, flush, and leave immediately (single-process runs exit normally)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
    finish()
