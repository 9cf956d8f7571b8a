#!/usr/bin/env python
# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Fine-tune AVF-MAE++ for video emotion recognition with the transformers `Trainer`.

Single process (CPU or one GPU):

    python training/run_finetuning.py --model_name_or_path avf-mae-pp-huge --dataset MAFW \\
        --train_file split01/train.csv --validation_file split01/val.csv --test_file split01/test.csv \\
        --output_dir mafw-split01 --do_train --do_eval

A paper recipe with local paths (flags after the JSON file override it):

    python training/run_finetuning.py training/finetune_mafw_huge.json --model_name_or_path avf-mae-pp-huge \\
        --train_file split01/train.csv --validation_file split01/val.csv --test_file split01/test.csv \\
        --output_dir mafw-split01

The official train augmentations (RandAugment, random resized crop, flip, random erasing, mixup/cutmix) are on by
default; `--no_randaugment`, `--no_random_resized_crop`, `--no_horizontal_flip`, `--no_random_erasing` and
`--no_mixup_cutmix` switch them off one by one, `--save_augmentation_preview 8` writes what training sees to
`<output_dir>/augmentation_preview.png`.

Several processes: `torchrun --standalone --nproc_per_node 4 training/run_finetuning.py ...` or
`accelerate launch --multi_gpu --num_processes 4 training/run_finetuning.py ...` (on CPUs add `--use_cpu`).
See training/README.md.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from avfmae_hf import AVFMAEForVideoClassification
from avfmae_hf.augmentation_avfmae import (
    DEFAULT_RANDAUGMENT,
    FINE_TUNE_AUGMENTATIONS,
    FineTuningAugmentation,
    MixupCutmix,
    save_augmentation_preview,
)
from avfmae_hf.data_avfmae import (
    DEFAULT_MAX_BAD_CLIP_SHARE,
    BadClipLog,
    BadClipSkippingDataset,
    DatasetArguments,
    FingerprintCallback,
    check_fingerprint,
    check_launch,
    check_not_finished,
    run_fingerprint,
)
from avfmae_hf.hub_avfmae import build_model_card, push_to_hub
from avfmae_hf.mixture_avfmae import MixtureDataset, load_mixture
from avfmae_hf.training_avfmae import (
    PROBLEM_TYPES,
    SINGLE_LABEL,
    AVFMAEDataCollator,
    AVFMAETrainer,
    AVFMAEVideoDataset,
    build_compute_metrics,
    check_model_source,
    finetuning_labels,
    keep_logits,
    load_model_and_processor,
    parse_arguments,
    remove_arguments,
    scale_learning_rate,
)
from avfmae_hf.video_processing_avfmae import SAMPLING_MODES


logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which model to fine-tune, and its processor."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A converted or saved AVF-MAE++ folder (or Hub id): a pretraining checkpoint (a new head is made) "
            "or a classification checkpoint. Leave unset to train from scratch with --size or --config_name."
        },
    )
    size: str | None = field(
        default=None, metadata={"help": "Train from scratch at a paper size: base, large or huge."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Train from scratch with this config (a folder or config.json)."}
    )
    processor_name: str | None = field(
        default=None,
        metadata={
            "help": "Processor folder; defaults to the one saved with --model_name_or_path, else the config's default."
        },
    )
    drop_path_rate: float | None = field(
        default=None, metadata={"help": "Stochastic depth rate (official fine-tuning: 0.1); default: the config's."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Start from a classification checkpoint with another number of labels (new head)."},
    )
    do_face_crop: bool | None = field(
        default=None,
        metadata={
            "help": "Crop and align faces (default: the processor's setting: videos yes, frame folders no, since the "
            "official datasets' frames are aligned faces already)."
        },
    )
    new_head: bool = field(
        default=False,
        metadata={
            "help": "Start a new classification head (stage 3 of the three-stage recipe: the stage-2 backbone, "
            "the target dataset's classes), even when the checkpoint's head has the same number of classes."
        },
    )
    video_only: bool = field(
        default=False,
        metadata={
            "help": "Fine-tune the video tower alone (datasets without audio, e.g. micro-expressions), also from an "
            "audio-visual checkpoint: its audio tower and fusion are left out and the head is new."
        },
    )

    def __post_init__(self):
        check_model_source(self.model_name_or_path, self.size, self.config_name)


@dataclass
class DataTrainingArguments(DatasetArguments):
    """The list files (or the `datasets` dataset of `DatasetArguments`) and how videos are sampled."""

    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training list: `<frames_dir> <audio.wav> <label>` lines (official format), `<video> <label>` "
            "lines, or a CSV with a `video,label` (and optional `audio`) header. Labels: indices or class names."
        },
    )
    train_mixture: str | None = field(
        default=None,
        metadata={
            "help": "Stage 2 (hybrid intermediate fine-tuning): a mixture file of labelled source datasets, their "
            "label mappings into one vocabulary, sampling weights and the target test splits to keep out (see "
            "training/README.md). Replaces --train_file; the classes are the mixture's vocabulary."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Validation list (same formats)."})
    test_file: str | None = field(default=None, metadata={"help": "Test list, evaluated after training."})
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Official dataset name (MAFW, CREMA-D, MER24, MSP-IMPROV, ...) to use its official label order."
        },
    )
    id2label: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated class names in index order (regression: target names), for datasets without a "
            "known official order."
        },
    )
    problem_type: str = field(
        default=SINGLE_LABEL,
        metadata={
            "help": f"One of {', '.join(PROBLEM_TYPES)} (multi-label lists: `<frames_dir> <audio> <label> [<label> "
            "...]`; regression: `<frames_dir> <audio> <value> [<value> ...]`)."
        },
    )
    train_sampling_mode: str = field(
        default="train", metadata={"help": f"Frame sampling for training: {', '.join(SAMPLING_MODES)}."}
    )
    eval_sampling_mode: str = field(
        default="test",
        metadata={
            "help": "Frame sampling of the test split: 'test' (official: the temporal segments, softmax averaged per "
            "video) or 'uniform'."
        },
    )
    num_test_segments: int | None = field(
        default=None,
        metadata={"help": "Temporal segments per video in the 'test' mode (official: 2); default: the processor's."},
    )
    audio_gain_jitter: bool | None = field(
        default=None,
        metadata={"help": "Official random audio gain; default: on for training, off for evaluation."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training videos (quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N validation and test videos (quick runs)."}
    )
    max_bad_clip_share: float = field(
        default=DEFAULT_MAX_BAD_CLIP_SHARE,
        metadata={
            "help": "Training clips that fail to decode are skipped (a warning names each, bad_clips.json lists them); "
            "once more than this share of the training clips failed, a checkpoint is saved and the run stops with an "
            "error."
        },
    )

    validation_sampling_mode: str = field(
        default="train",
        metadata={
            "help": "Frame sampling of the validation split: 'train' (official: one random clip per video, centre "
            "crop, fixed by the data seed), 'test' or 'uniform'."
        },
    )
    model_selection_split: str = field(
        default="validation",
        metadata={
            "help": "The split evaluated during training (checkpoint selection with --load_best_model_at_end): "
            "'validation' (--validation_file or --validation_split), or 'test' (--test_file or --test_split; what the "
            "official MAFW, CREMA-D, RAVDESS, MER24 scripts do; it makes the reported test numbers optimistic, and a "
            "warning says so)."
        },
    )

    def __post_init__(self):
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"Unsupported problem_type {self.problem_type!r}; choose one of {PROBLEM_TYPES}.")
        if self.model_selection_split not in ("validation", "test"):
            raise ValueError(f"--model_selection_split is 'validation' or 'test', not {self.model_selection_split!r}.")
        for mode in (self.train_sampling_mode, self.eval_sampling_mode, self.validation_sampling_mode):
            if mode not in SAMPLING_MODES:
                raise ValueError(f"Unknown sampling mode {mode!r}; choose one of {SAMPLING_MODES}.")


@dataclass
class AugmentationArguments:
    """The official fine-tuning train augmentations, each on by default (`--no_<name>` switches one off)."""

    randaugment: bool = field(default=True, metadata={"help": "RandAugment on the resized uint8 frames."})
    randaugment_policy: str = field(
        default=DEFAULT_RANDAUGMENT,
        metadata={"help": "RandAugment policy string (official: rand-m7-n4-mstd0.5-inc1)."},
    )
    random_resized_crop: bool = field(
        default=True, metadata={"help": "Random resized crop (scale 0.08-1, ratio 3/4-4/3) of the normalised clip."}
    )
    horizontal_flip: bool = field(default=True, metadata={"help": "Horizontal flip with probability 0.5."})
    random_erasing: bool = field(
        default=True, metadata={"help": "Random erasing, p=0.25, one noise box in every frame."}
    )
    mixup_cutmix: bool = field(
        default=True,
        metadata={
            "help": "Mixup/CutMix of training batches (single-label only; video only), with the label smoothing of "
            "--label_smoothing_factor in the mixed targets. Needs an even per-device batch size."
        },
    )
    mixup_alpha: float = field(default=0.8, metadata={"help": "Mixup Beta parameter (official: 0.8)."})
    cutmix_alpha: float = field(default=1.0, metadata={"help": "CutMix Beta parameter (official: 1.0)."})
    mixup_switch_probability: float = field(
        default=0.5, metadata={"help": "Probability of CutMix rather than Mixup for a batch (official: 0.5)."}
    )
    save_augmentation_preview: int = field(
        default=0,
        metadata={"help": "Write N augmented training clips to <output_dir>/augmentation_preview.png (0: none)."},
    )

    def enabled(self) -> list[str]:
        return [name for name in FINE_TUNE_AUGMENTATIONS if getattr(self, name)]


@dataclass
class AVFMAETrainingArguments(TrainingArguments):
    """`TrainingArguments` with the official fine-tuning recipe's extras."""

    layer_decay: float = field(
        default=0.75, metadata={"help": "Layer-wise learning-rate decay (official: 0.75; 1 turns it off)."}
    )
    base_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "If set, learning_rate = base_learning_rate * total batch size / 256 (official rule; total = "
            "per-device batch x accumulation steps x processes)."
        },
    )
    weight_decay: float = field(
        default=0.05, metadata={"help": "AdamW weight decay (official: 0.05), none on 1-D parameters and biases."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every column: the collator picks the model inputs."}
    )
    allow_finished_resume: bool = field(
        default=False,
        metadata={
            "help": "Resuming a checkpoint that already reached --max_steps is an error; with this flag the script "
            "goes on to evaluation and saving."
        },
    )


# `TrainingArguments` fields of the Trainer's own Hub uploads: this script uploads once, at the end, a Hub-ready
# folder (code files, processor, model card), so these are not offered; nor is `do_predict`: the test list is
# evaluated whenever one is given.
UNHONOURED_TRAINING_ARGUMENTS = ("hub_strategy", "hub_always_push", "do_predict")


ARGUMENT_CLASSES = (ModelArguments, DataTrainingArguments, AugmentationArguments, AVFMAETrainingArguments)


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    remove_arguments(parser, UNHONOURED_TRAINING_ARGUMENTS)
    return parser


def select_evaluation_split(data_args: DataTrainingArguments, validation, data_seed, load_split):
    """The dataset evaluated during training: the validation split, or with `--model_selection_split test` the test
    list (with the validation sampling, as the official scripts do), with a warning. A validation list that is the
    test list is refused: selecting on the test split must be asked for by name."""
    if data_args.model_selection_split == "test":
        test_source = data_args.sources(data_args.train_file, data_args.validation_file, data_args.test_file)[2]
        if test_source is None:
            raise ValueError("--model_selection_split test needs --test_file (or --test_split).")
        logger.warning(
            f"Selecting checkpoints on the test split {test_source} (--model_selection_split test), as the "
            "official MAFW / CREMA-D / RAVDESS / MER24 scripts do: the test numbers of the selected checkpoint are "
            "optimistic. Use a validation split for honest numbers."
        )
        return load_split(test_source, data_args.validation_sampling_mode, data_args.max_eval_samples, data_seed)
    if data_args.dataset_name is not None and data_args.validation_split == data_args.test_split is not None:
        raise ValueError(
            f"--validation_split and --test_split are the same split ({data_args.test_split}): checkpoint selection "
            "would see the test split. Pass a validation split, or --model_selection_split test to do it knowingly."
        )
    if (
        data_args.validation_file is not None
        and data_args.test_file is not None
        and os.path.realpath(data_args.validation_file) == os.path.realpath(data_args.test_file)
    ):
        raise ValueError(
            f"--validation_file and --test_file are the same list ({data_args.test_file}): checkpoint selection would "
            "see the test split. Pass a validation split, or --model_selection_split test to do it knowingly."
        )
    return validation


def build_mixup(augmentation_args, data_args, training_args, num_labels: int) -> MixupCutmix | None:
    """The batch mixing of the recipe, or `None`; checks the batch size before training starts and moves the label
    smoothing into the mixed targets."""
    if not augmentation_args.mixup_cutmix:
        return None
    if data_args.problem_type != SINGLE_LABEL:
        logger.info(f"Mixup/CutMix is for single-label classification; off for {data_args.problem_type}.")
        return None
    if training_args.do_train and training_args.per_device_train_batch_size % 2:
        raise ValueError(
            f"Mixup/CutMix pairs each clip with the batch reversed and needs an even batch size; "
            f"--per_device_train_batch_size is {training_args.per_device_train_batch_size} (or pass --no_mixup_cutmix)."
        )
    smoothing, training_args.label_smoothing_factor = training_args.label_smoothing_factor, 0.0
    return MixupCutmix(
        num_classes=num_labels,
        mixup_alpha=augmentation_args.mixup_alpha,
        cutmix_alpha=augmentation_args.cutmix_alpha,
        switch_probability=augmentation_args.mixup_switch_probability,
        label_smoothing=smoothing,
    )


def main(args: list[str] | None = None) -> dict[str, float]:
    # 1. Arguments: flags, or a JSON recipe followed by flags that override it
    model_args, data_args, augmentation_args, training_args = parse_arguments(build_parser(), args)

    # 2. Logging
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        f"Process rank: {training_args.process_index}, device: {training_args.device}, world size: "
        f"{training_args.world_size}, distributed: {training_args.parallel_mode.value}"
    )
    logger.info(f"Training parameters {training_args}")
    check_launch(training_args.world_size, training_args.distributed_state.distributed_type, training_args.use_cpu)

    # 3. Resume from the last checkpoint in output_dir, if any
    last_checkpoint = None
    if (
        training_args.do_train
        and training_args.resume_from_checkpoint is None
        and os.path.isdir(training_args.output_dir)
    ):
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
        if last_checkpoint is not None:
            logger.warning(
                f"Resuming from {last_checkpoint}, found in --output_dir {training_args.output_dir}; use a new "
                "--output_dir to start over."
            )
    set_seed(training_args.seed)

    # 4. Labels, config, model and processor; stage 2 checks its mixture (labels, test splits) first
    mixture = None
    if data_args.train_mixture is not None:
        if data_args.train_file or data_args.dataset or data_args.id2label:
            raise ValueError(
                "--train_mixture brings its training lists and vocabulary: leave out --train_file, --dataset and "
                "--id2label."
            )
        mixture = load_mixture(data_args.train_mixture)
        mixture.check_test_splits()
        for source in mixture.sources:
            logger.info(
                f"Mixture source {source.name}: {len(source.entries)} clips (weight {source.weight}), "
                f"{source.dropped} left out by its label mapping"
            )
        id2label = mixture.id2label
    else:
        id2label = finetuning_labels(data_args.dataset, data_args.id2label, model_args.model_name_or_path)
    overrides = {
        "problem_type": data_args.problem_type,
        "id2label": id2label,
        "label2id": {name: index for index, name in id2label.items()},
    }
    if model_args.drop_path_rate is not None:
        overrides["drop_path_rate"] = model_args.drop_path_rate
    if model_args.video_only:
        overrides["use_audio"] = False
    # a video-only head reads C features instead of the fused 2C, and --new_head asks for a new one: either way the
    # checkpoint's head is not loaded
    new_head = model_args.new_head or model_args.video_only
    model, processor = load_model_and_processor(
        AVFMAEForVideoClassification,
        model_name_or_path=model_args.model_name_or_path,
        size=model_args.size,
        config_name=model_args.config_name,
        processor_name=model_args.processor_name,
        do_face_crop=model_args.do_face_crop,
        config_overrides=overrides,
        **({"ignore_mismatched_sizes": True} if model_args.ignore_mismatched_sizes or new_head else {}),
    )
    if new_head and model_args.model_name_or_path is not None and isinstance(model.classifier, torch.nn.Linear):
        model.classifier.reset_parameters()  # PyTorch's default initialisation, as the official head
    if data_args.num_test_segments is not None:
        processor.video_processor.num_test_segments = data_args.num_test_segments

    # 5. Datasets: training windows and augmentations are random (seeded per epoch and video); the validation clip
    #    is random as in the official code but fixed by the data seed; the test views are deterministic
    label2id = model.config.label2id
    data_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    augmentation = FineTuningAugmentation.from_names(augmentation_args.enabled(), augmentation_args.randaugment_policy)

    def load_split(
        path: str | None, mode: str, limit: int | None, seed: int | None, training: bool = False
    ) -> AVFMAEVideoDataset | None:
        if path is None:
            return None
        # every problem of the list (syntax, labels out of range or unknown, regression width, missing files) in one
        # error, before the first step
        entries = data_args.read_entries(
            path,
            label2id=label2id,
            problem_type=data_args.problem_type,
            num_labels=model.config.num_labels,
            with_labels=True,
        )
        return make_dataset(entries, mode, limit, seed, training)

    def make_dataset(entries, mode: str, limit: int | None, seed: int | None, training: bool) -> AVFMAEVideoDataset:
        gain_jitter = data_args.audio_gain_jitter
        return AVFMAEVideoDataset(
            entries[:limit] if limit is not None else entries,
            processor,
            sampling_mode=mode,
            seed=seed,
            # evaluation clips get no random gain unless asked for, whatever their sampling mode
            audio_gain_jitter=gain_jitter if gain_jitter is not None or training else False,
            problem_type=data_args.problem_type,
            use_audio=model.config.use_audio,
            augmentation=augmentation if training and not augmentation.is_identity else None,
            num_labels=model.config.num_labels,
        )

    # list files, or the splits of a `datasets` dataset
    sources = data_args.sources(data_args.train_file, data_args.validation_file, data_args.test_file)
    train_dataset = load_split(
        sources[0], data_args.train_sampling_mode, data_args.max_train_samples, data_seed, training=True
    )
    if mixture is not None:
        mixed = [
            make_dataset(source.entries, data_args.train_sampling_mode, data_args.max_train_samples, data_seed, True)
            for source in mixture.sources
        ]
        train_dataset = MixtureDataset(mixed, [source.weight for source in mixture.sources], seed=data_seed)
    eval_dataset = load_split(sources[1], data_args.validation_sampling_mode, data_args.max_eval_samples, data_seed)
    test_dataset = load_split(sources[2], data_args.eval_sampling_mode, data_args.max_eval_samples, data_seed)
    eval_dataset = select_evaluation_split(data_args, eval_dataset, data_seed, load_split)
    if training_args.do_train and train_dataset is None:
        raise ValueError("--do_train needs --train_file (or --train_mixture).")
    if training_args.do_eval and eval_dataset is None:
        raise ValueError(
            "--do_eval needs --validation_file or --validation_split (or --model_selection_split test with a test "
            "split)."
        )
    mixup = build_mixup(augmentation_args, data_args, training_args, model.config.num_labels)
    if augmentation_args.save_augmentation_preview > 0 and train_dataset is not None:
        os.makedirs(training_args.output_dir, exist_ok=True)
        preview = save_augmentation_preview(
            train_dataset,
            os.path.join(training_args.output_dir, "augmentation_preview.png"),
            augmentation_args.save_augmentation_preview,
            model.config.id2label,
        )
        logger.info(f"Wrote {augmentation_args.save_augmentation_preview} augmented training clips to {preview}")
    bad_clip_log = None
    if train_dataset is not None:  # a clip that fails to decode mid-epoch is skipped and counted
        bad_clip_log = BadClipLog(len(train_dataset), data_args.max_bad_clip_share)
        train_dataset = BadClipSkippingDataset(train_dataset, warn=False)  # BadClipLog warns

    # 6. Learning rate from the official rule, when a base rate is given
    if training_args.base_learning_rate is not None:
        total_batch_size = (
            training_args.per_device_train_batch_size
            * training_args.gradient_accumulation_steps
            * training_args.world_size
        )
        training_args.learning_rate = scale_learning_rate(training_args.base_learning_rate, total_batch_size)
        logger.info(
            f"learning_rate = {training_args.base_learning_rate} x {total_batch_size} / 256 = "
            f"{training_args.learning_rate}"
        )

    # 7. Trainer: official optimizer groups, multi-view evaluation, UAR/WAR/F1 (or CCC), Hub-ready checkpoints, skipped
    #    clips counted; the upload to the Hub is done once at the end (a Hub-ready folder), not by the Trainer
    push, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = AVFMAETrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        data_collator=AVFMAEDataCollator(),
        compute_metrics=build_compute_metrics(data_args.problem_type),
        preprocess_logits_for_metrics=keep_logits,
        layer_decay=training_args.layer_decay,
        mixup=mixup,
        bad_clip_log=bad_clip_log,
    )
    trainer.model_card_kwargs = finetuning_card_kwargs(model_args, data_args)

    # 8. Training; a checkpoint of another model config, dataset or batch layout is refused before any step
    results = {}
    if training_args.do_train:
        fingerprint = run_fingerprint(
            model.config,
            training_entries(train_dataset.dataset),
            per_device_train_batch_size=training_args.per_device_train_batch_size,
            gradient_accumulation_steps=training_args.gradient_accumulation_steps,
            num_processes=training_args.world_size,
        )
        trainer.add_callback(FingerprintCallback(fingerprint))
        checkpoint = training_args.resume_from_checkpoint or last_checkpoint
        if checkpoint is not None:
            check_resumable(checkpoint, fingerprint, training_args)
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        if training_args.should_save:
            bad_clip_log.save(training_args.output_dir)
        if bad_clip_log.exceeded:
            raise bad_clip_log.error(os.path.join(training_args.output_dir, f"checkpoint-{trainer.state.global_step}"))
        trainer.save_model()
        train_result.metrics["train_bad_clips"] = len(bad_clip_log.failures)
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        results.update(train_result.metrics)

    # 9. Evaluation on the validation list, then the test list
    if training_args.do_eval:
        metrics = trainer.evaluate()  # the selection split (validation by default)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    if test_dataset is not None:
        metrics = trainer.evaluate(test_dataset, metric_key_prefix="test")
        trainer.log_metrics("test", metrics)
        trainer.save_metrics("test", metrics)
        results.update(metrics)

    # 10. The Hub: the final model as a Hub-ready folder (code files, auto_map, processor, model card), one commit
    #     (the saved folders carry the same files and card)
    if push and training_args.should_save:
        repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
        model = trainer.accelerator.unwrap_model(trainer.model)
        push_to_hub(
            model,
            repo_id,
            processor=processor,
            model_card=build_model_card(model, repo_id=repo_id, with_processor=True, **trainer.model_card_kwargs),
            private=training_args.hub_private_repo,
            revision=training_args.hub_revision,
            token=training_args.hub_token,
        )
        logger.info(f"Pushed the fine-tuned model to {repo_id}")
    return results


def finetuning_card_kwargs(model_args: ModelArguments, data_args: DataTrainingArguments) -> dict:
    """What the model cards of this script's folders say besides the model itself."""
    trained_on = f" on {data_args.dataset}" if data_args.dataset else ""
    notes = [f"Fine-tuned{trained_on} for video emotion recognition (training/run_finetuning.py)."]
    base_model = model_args.model_name_or_path
    if base_model is not None and os.path.exists(base_model):
        base_model = None  # a local folder is no Hub reference
    return {"base_model": base_model, "notes": notes}


def training_entries(dataset) -> list:
    """The clips of the training dataset (of every source of a mixture), for the resume fingerprint."""
    if hasattr(dataset, "entries"):
        return list(dataset.entries)
    return [entry for source in dataset.datasets for entry in source.entries]


def check_resumable(checkpoint: str, fingerprint: dict, training_args: TrainingArguments) -> None:
    """Refuse a checkpoint of another run (see `check_fingerprint`) or one that already reached --max_steps."""
    check_fingerprint(checkpoint, fingerprint)
    state_file = os.path.join(checkpoint, "trainer_state.json")
    if os.path.isfile(state_file):
        with open(state_file) as handle:
            completed_steps = json.load(handle).get("global_step", 0)
        check_not_finished(completed_steps, training_args.max_steps, checkpoint, training_args.allow_finished_resume)


if __name__ == "__main__":
    main()
