# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The `avfmae` command line. Each subcommand is one `add_<name>_command(subparsers)` function listed in `COMMANDS`;
it declares its options and a `run` function that calls the library and returns the exit status."""

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import save_file

from .checkpoint_avfmae import VerificationError, convert_checkpoint, read_original_config
from .configuration_avfmae import MODEL_SIZES
from .hub_avfmae import DEFAULT_MAX_SHARD_SIZE
from .inference_avfmae import extract_features, load_classifier, load_processor, predict_videos, run_demo
from .labels_avfmae import OFFICIAL_DATASET_NUM_LABELS, OFFICIAL_LABEL_ORDERS, parse_id2label
from .modeling_avfmae import AVFMAEModel


CONVERT_DESCRIPTION = """\
Convert an official AVF-MAE++ checkpoint (the release's AVF-MAE++_huge.pth, a fine-tuning run's
checkpoint-best.pth, or a .safetensors state dict) into a folder that loads with from_pretrained:
safetensors weights (sharded when large), config.json with a complete auto_map, the model code files
(for trust_remote_code=True) and a model card README.md. Optionally verify it and publish it to the Hub
in one commit.

Pickles are loaded safely: torch.load(weights_only=True) allowing only tensors, argparse.Namespace and
numpy values; optimizer and loss-scaler state are dropped, the training arguments are kept and describe
the model where they can. Output is written to a temporary folder next to --output-dir and moved into
place at the end, so an error leaves nothing behind."""

CONVERT_EPILOG = """\
label orders of the official datasets (--dataset):
{orders}
  other datasets ({others}) store integer labels in their list files: give their
  names with --id2label.

exit status: 0 on success, 1 when the checkpoint cannot be converted or verification fails,
2 for invalid options.

examples:
  # the released huge pretraining checkpoint, checked and published
  avfmae convert --checkpoint AVF-MAE++_huge.pth --output-dir avf-mae-pp-huge --verify \\
      --push-to-hub your-name/avf-mae-pp-huge
  # a MAFW fine-tuning run; the label names come from the dataset
  avfmae convert --checkpoint checkpoint-best.pth --dataset MAFW --output-dir avf-mae-pp-huge-mafw
  # the pretraining checkpoint as the start of a 7-class DFEW classifier (new head)
  avfmae convert --checkpoint AVF-MAE++_huge.pth --task classification \\
      --id2label happy,sad,neutral,angry,surprise,disgust,fear --output-dir avf-mae-pp-huge-dfew-init
  # a model of another size, described by the official constructor arguments, checked
  # against outputs of the official code (inputs.safetensors, outputs.safetensors)
  avfmae convert --checkpoint state_dict.safetensors --original-config config.json \\
      --reference-dir reference/ --output-dir converted
"""


def _convert_epilog() -> str:
    orders = "\n".join(
        f"  {dataset} ({count} classes): {', '.join(labels)}"
        for (dataset, count), labels in OFFICIAL_LABEL_ORDERS.items()
    )
    with_order = {dataset for dataset, _ in OFFICIAL_LABEL_ORDERS}
    others = ", ".join(
        f"{dataset} {'/'.join(str(c) for c in counts if (dataset, c) not in OFFICIAL_LABEL_ORDERS)}"
        for dataset, counts in OFFICIAL_DATASET_NUM_LABELS.items()
        if dataset not in with_order or any((dataset, c) not in OFFICIAL_LABEL_ORDERS for c in counts)
    )
    return CONVERT_EPILOG.format(orders=orders, others=others)


def _metric(text: str) -> tuple[str, float]:
    name, separator, value = text.partition("=")
    try:
        if not separator or not name.strip():
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METRIC=VALUE (e.g. uar=46.05), got {text!r}") from None


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("checkpoint and model")
    source.add_argument("--checkpoint", required=True, metavar="PATH", help="official .pth or .safetensors file")
    source.add_argument(
        "--size",
        default="auto",
        choices=("auto", *MODEL_SIZES),
        help="released size; auto (default) reads widths and depths from the weights, the attention heads follow "
        "the released size of that width; a named size must match the weights",
    )
    source.add_argument(
        "--task",
        choices=("pretraining", "classification"),
        help="model to build (default: the checkpoint's own); a pretraining checkpoint converted to "
        "classification keeps its encoders and fusion module and gets a new, untrained head",
    )
    source.add_argument(
        "--original-config",
        metavar="JSON",
        help="official constructor arguments (a JSON object, or one with 'constructor_kwargs') for models of other "
        "sizes, whose attention heads cannot be read from the weights",
    )
    source.add_argument(
        "--unsafe-pickle",
        action="store_true",
        help="load a trusted .pth that safe loading refuses with unrestricted unpickling (can run arbitrary code)",
    )
    labels = parser.add_argument_group("labels (classification)")
    labels.add_argument("--num-labels", type=int, metavar="N", help="number of classes")
    labels.add_argument(
        "--id2label",
        metavar="LABELS",
        help='class names in index order: comma-separated (anger,disgust,...) or JSON ({"0": "anger", ...})',
    )
    labels.add_argument(
        "--dataset",
        metavar="NAME",
        help=f"official fine-tuning dataset ({', '.join(OFFICIAL_DATASET_NUM_LABELS)}): sets its class count and, "
        "where the release states it, its label order; default: the dataset named in the checkpoint's arguments",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", metavar="DIR", help="folder to write (required unless --push-to-hub)")
    output.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    output.add_argument(
        "--max-shard-size",
        default=DEFAULT_MAX_SHARD_SIZE,
        metavar="SIZE",
        help=f"largest safetensors file (default {DEFAULT_MAX_SHARD_SIZE})",
    )
    output.add_argument(
        "--verify",
        action="store_true",
        help="reload the saved folder and check its weights are bit-identical, then reproduce --reference-dir or "
        "run a forward pass on random inputs with finite outputs",
    )
    output.add_argument(
        "--reference-dir",
        metavar="DIR",
        help="inputs.safetensors and outputs.safetensors of the official model to reproduce (atol = rtol = 1e-5); "
        "implies --verify",
    )
    hub = parser.add_argument_group("publishing")
    hub.add_argument("--push-to-hub", metavar="REPO_ID", help="create or update this Hub repository in one commit")
    hub.add_argument("--private", action="store_true", help="create the repository as private")
    hub.add_argument("--base-model", metavar="REPO_ID", help="model card: the repository this model was tuned from")
    hub.add_argument(
        "--eval-result",
        action="append",
        type=_metric,
        metavar="METRIC=VALUE",
        help="model card: a result on --dataset (e.g. uar=46.05); repeat for several",
    )


def run_convert(args: argparse.Namespace) -> int:
    try:
        result = convert_checkpoint(
            args.checkpoint,
            args.output_dir,
            size=args.size,
            task=args.task,
            num_labels=args.num_labels,
            id2label=parse_id2label(args.id2label) if args.id2label else None,
            dataset=args.dataset,
            original_config=read_original_config(args.original_config) if args.original_config else None,
            verify=args.verify,
            reference_dir=args.reference_dir,
            push_to_hub=args.push_to_hub,
            private=args.private or None,
            unsafe_pickle=args.unsafe_pickle,
            overwrite=args.overwrite,
            max_shard_size=args.max_shard_size,
            base_model=args.base_model,
            eval_results=args.eval_result,
        )
    except VerificationError as error:
        print(error.report.summary())
        print(error.verification.summary())
        print(f"avfmae convert: error: {error} Nothing was written.", file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError, HfHubHTTPError) as error:
        print(f"avfmae convert: error: {error}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def add_convert_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official checkpoint into a Hugging Face folder or Hub repository",
        description=CONVERT_DESCRIPTION,
        epilog=_convert_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_convert_arguments(parser)
    parser.set_defaults(run=run_convert)


def _print_input_error(command: str, error: Exception) -> int:
    print(f"avfmae {command}: error: {error}", file=sys.stderr)
    return 1


def run_demo_command(args: argparse.Namespace) -> int:
    try:
        result = run_demo(args.video, args.model, args.size, args.output_dir)
    except (ValueError, OSError) as error:
        return _print_input_error("demo", error)
    prediction = result.prediction
    print(f"video:      {prediction.video}")
    if result.pretrained:
        print(f"model:      {args.model}")
    else:
        print(
            f"model:      AVF-MAE++ {result.size}, randomly initialised: nothing is downloaded. Convert the official "
            "checkpoint with `avfmae convert` and pass --model DIR for real predictions."
        )
    face = {True: "yes", False: "no (centre crop used)", None: "not searched"}[prediction.face_found]
    print(f"face found: {face}")
    print(
        f"time:       {prediction.timings['processing_s']:.2f} s processing (decode, face crop, fbank), "
        f"{prediction.timings['model_s']:.2f} s model"
    )
    print(
        f"feature:    {prediction.features.shape[0]} values, L2 norm {float((prediction.features**2).sum() ** 0.5):.2f}"
    )
    if result.pretrained:
        print("prediction: " + ", ".join(f"{label} {score:.3f}" for label, score in prediction.top(3)))
    print("wrote:      " + ", ".join(str(path) for path in result.files))
    return 0


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run one talking-face video through the processor and the model, offline",
        description="Face crop, frame sampling and Kaldi fbank on a video (default: a short public-domain sample "
        "shipped with the package), then AVF-MAE++; prints what happened and writes previews of the face crops and "
        "the spectrogram. Nothing is downloaded: without --model the model is randomly initialised.",
    )
    parser.add_argument("--video", metavar="PATH", help="a talking-face video (default: the bundled sample)")
    parser.add_argument("--model", metavar="DIR", help="a converted or fine-tuned classification model folder")
    parser.add_argument("--size", default="base", choices=tuple(MODEL_SIZES), help="size of the untrained model")
    parser.add_argument("--output-dir", default="avfmae-demo", metavar="DIR", help="where to write the previews")
    parser.set_defaults(run=run_demo_command)


def run_predict(args: argparse.Namespace) -> int:
    try:
        model, processor, _ = load_classifier(args.model)
        predictions = predict_videos(
            args.videos, model, processor, batch_size=args.batch_size, sampling_mode=args.sampling_mode
        )
    except (ValueError, OSError) as error:
        return _print_input_error("predict", error)
    for prediction in predictions:
        top = ", ".join(f"{label} {score:.3f}" for label, score in prediction.top(args.top_k))
        face = "" if prediction.face_found is not False else "  (no face found: centre crop)"
        print(f"{prediction.video}: {top}{face}")
    if args.json:
        records = [
            {"video": prediction.video, "scores": prediction.scores, "face_found": prediction.face_found}
            for prediction in predictions
        ]
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0


def add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="emotion predictions for talking-face videos with a converted classification model",
        description="Runs the processor saved with the model (face crop, 16 frames, fbank) and the classifier on "
        "every video and prints the top labels with their probabilities.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or folders of face frames)")
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="a converted or fine-tuned classification model folder"
    )
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="labels to print per video (default 3)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="videos per forward pass")
    parser.add_argument(
        "--sampling-mode", choices=("uniform", "test"), default="uniform", help="frame sampling (default uniform)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every score to this JSON file")
    parser.set_defaults(run=run_predict)


def run_extract_features(args: argparse.Namespace) -> int:
    try:
        model = AVFMAEModel.from_pretrained(args.model).eval()
        processor = load_processor(args.model, model.config)
        features = extract_features(args.videos, model, processor, batch_size=args.batch_size)
    except (ValueError, OSError) as error:
        return _print_input_error("extract-features", error)
    save_file(
        {"features": features.contiguous()},
        args.output,
        metadata={"videos": json.dumps([str(video) for video in args.videos])},
    )
    print(f"wrote {args.output}: features {tuple(features.shape)} (one row per video, in the order given)")
    return 0


def add_extract_features_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract-features",
        help="pooled audio-visual features of videos, from any converted model",
        description="Writes a safetensors file whose 'features' tensor holds one row per video: the concatenated "
        "means of the fused video and audio tokens (AVFMAEModel's pooler_output). Works with pretraining and "
        "classification folders alike.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or folders of face frames)")
    parser.add_argument("--model", required=True, metavar="DIR", help="a converted or saved model folder")
    parser.add_argument("--output", required=True, metavar="FILE", help="the .safetensors file to write")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="videos per forward pass")
    parser.set_defaults(run=run_extract_features)


def run_preprocess(args: argparse.Namespace) -> int:
    from .data_avfmae import dataset_entries, load_dataset_split
    from .errors_avfmae import ListFileError
    from .labels_avfmae import dataset_id2label
    from .preprocessing_avfmae import PreprocessingFormatError, preprocess_corpus
    from .processing_avfmae import AVFMAEProcessor
    from .training_avfmae import read_list_file

    try:
        id2label = parse_id2label(args.id2label) if args.id2label else None
        if args.dataset:
            id2label = dataset_id2label(args.dataset)
        label2id = {name: index for index, name in (id2label or {}).items()} or None
        saved = [Path(args.input) / marker for marker in ("dataset_dict.json", "state.json")]
        if any(marker.is_file() for marker in saved):
            split = load_dataset_split(args.input, args.split)
            entries = dataset_entries(split, label2id=label2id, name=f"{args.input}[{args.split}]")
        else:
            entries = read_list_file(args.input, label2id=label2id)
        processor = AVFMAEProcessor.from_pretrained(args.model) if args.model else AVFMAEProcessor()
        report = preprocess_corpus(
            entries,
            args.output_dir,
            processor=processor,
            num_workers=args.num_workers,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
        )
    except ListFileError as error:
        if args.debug:
            raise
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except (OSError, ValueError, PreprocessingFormatError) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    for source, reason in report.skipped:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    done = report.num_written + report.num_reused
    print(
        f"preprocessed {done} of {report.num_clips} clips into {args.output_dir} ({report.num_written} new, "
        f"{report.num_reused} already there, {len(report.skipped)} skipped); table {report.table}"
    )
    return 1 if report.num_clips and not done else 0


def add_preprocess_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="face-crop a corpus once, for training at GPU speed",
        description="Runs face detection, alignment and smoothing once over every frame of every clip and writes "
        "small face-crop H.264 clips with 16 kHz mono audio, a datasets-loadable table (table-*.jsonl: video, "
        "label, source, face_found, num_frames, fps) and preprocessing.json. Give the output folder to the "
        "training scripts as --train_file. Rerunning resumes: finished clips are kept, unfinished ones redone.",
        epilog="exit status: 0 when at least one clip was preprocessed, 1 when the input cannot be read or every "
        "clip failed, 2 for invalid options.",
    )
    parser.add_argument(
        "input",
        help="a list file (official, CSV, JSONL), a folder with one subfolder per class, or a folder saved with "
        "datasets' save_to_disk (video/audio/label columns of file paths and labels)",
    )
    parser.add_argument("--split", default="train", help="the split of a saved DatasetDict (default: train)")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="the folder to write (or resume)")
    parser.add_argument("--model", metavar="DIR_OR_HUB_ID", help="take the processor settings from this model")
    parser.add_argument("--num-workers", type=int, default=0, metavar="N", help="worker processes (0: this one)")
    parser.add_argument("--num-shards", type=int, default=1, metavar="N", help="split the corpus into N shards")
    parser.add_argument("--shard-index", type=int, default=0, metavar="I", help="the shard this run processes")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--id2label", help="class names of the labels in INPUT (JSON or comma-separated)")
    labels.add_argument("--dataset", help="an official dataset whose class names INPUT uses (e.g. MAFW)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(run=run_preprocess)


COMMANDS = (
    add_convert_command,
    add_demo_command,
    add_predict_command,
    add_extract_features_command,
    add_preprocess_command,
)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current `sys.stderr` (not the one at creation time)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _show_progress() -> None:
    package_logger = logging.getLogger(__package__)
    if not any(isinstance(handler, _StderrHandler) for handler in package_logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package_logger.addHandler(handler)
        package_logger.propagate = False
    package_logger.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avfmae", description="AVF-MAE++ for Hugging Face transformers.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `avfmae` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    _show_progress()
    return args.run(args)


__all__ = [
    "COMMANDS",
    "add_convert_arguments",
    "add_convert_command",
    "add_demo_command",
    "add_extract_features_command",
    "add_predict_command",
    "add_preprocess_command",
    "build_parser",
    "main",
    "run_convert",
]
