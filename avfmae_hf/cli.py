# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The `avfmae` command line. Each subcommand is one `add_<name>_command(subparsers)` function listed in `COMMANDS`;
it declares its options and a `run` function that calls the library and returns the exit status."""

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .checkpoint_avfmae import VerificationError, convert_checkpoint, read_original_config
from .configuration_avfmae import MODEL_SIZES
from .hub_avfmae import DEFAULT_MAX_SHARD_SIZE
from .inference_avfmae import (
    DEFAULT_BATCH_SIZE,
    VideoFailure,
    import_pyplot,
    iter_features,
    iter_predictions,
    load_backbone,
    load_classifier,
    plot_emotions_over_time,
    plot_file_name,
    resolve_device,
    run_demo,
    write_predictions_csv,
)
from .labels_avfmae import OFFICIAL_DATASET_NUM_LABELS, OFFICIAL_LABEL_ORDERS, parse_id2label
from .processing_avfmae import MISSING_AUDIO_POLICIES
from .video_decoding_avfmae import VIDEO_BACKENDS
from .video_processing_avfmae import SAMPLING_MODES


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
    add_debug_option(parser)
    parser.set_defaults(run=run_convert)


# the random "train" mode has no place in inference
INFERENCE_SAMPLING_MODES = tuple(mode for mode in SAMPLING_MODES if mode != "train")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _dtype(text: str) -> torch.dtype:
    name = DTYPE_ALIASES.get(text, text)
    if name not in DTYPES:
        raise argparse.ArgumentTypeError(f"choose one of {', '.join([*DTYPES, *DTYPE_ALIASES])}, got {text!r}")
    return DTYPES[name]


def _device(text: str) -> torch.device:
    try:
        device = resolve_device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} was asked for, but this torch sees no CUDA device")
    return device


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")


def add_runtime_arguments(parser: argparse.ArgumentParser, *, model_help: str, required: bool = True) -> None:
    """The options predict, extract-features and demo share: model, device and dtype."""
    group = parser.add_argument_group("model and device")
    group.add_argument("--model", required=required, metavar="DIR_OR_HUB_ID", help=model_help)
    group.add_argument(
        "--device",
        type=_device,
        default="auto",
        metavar="DEVICE",
        help="where the model runs: auto (default: the GPU when there is one, else the CPU), cpu, cuda, cuda:1, ...",
    )
    group.add_argument(
        "--dtype",
        type=_dtype,
        default=torch.float32,
        metavar="DTYPE",
        help="weights' precision: float32 (default), bfloat16 (bf16; about 2-3x faster on CPUs with AVX512-BF16 or "
        "AMX, slower on others), float16 (fp16)",
    )


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The options predict and extract-features share: inputs, windows, batching and decoding."""
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or folders of face frames")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument(
        "--audio",
        action="append",
        metavar="FILE",
        help="audio of the videos, one per VIDEO in order (repeat the option), for frame folders; without it a "
        "folder's audio is the .wav beside it (clips/0001/ -> clips/0001.wav), a video file's its own audio stream",
    )
    inputs.add_argument(
        "--missing-audio",
        choices=MISSING_AUDIO_POLICIES,
        default="error",
        help="a video without audio: error (default), or silence (a silent track, with a warning)",
    )
    inputs.add_argument(
        "--video-backend",
        choices=VIDEO_BACKENDS,
        metavar="BACKEND",
        help=f"decoder of video files ({', '.join(VIDEO_BACKENDS)}; default: the processor's choice)",
    )
    windows = parser.add_argument_group("windows and batching")
    windows.add_argument(
        "--sampling-mode",
        choices=INFERENCE_SAMPLING_MODES,
        default="sliding",
        help="sliding (default): every window of the official geometry (16 frames, stride 4) over the whole video; "
        "center: the centred window only; test: the official first test segment; uniform: 16 frames spread over a "
        "clip of at most one window",
    )
    windows.add_argument(
        "--window-hop",
        type=_positive_int,
        metavar="FRAMES",
        help="source frames from one window's start to the next (default: half a window, 32)",
    )
    windows.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"windows per forward pass, across videos (default {DEFAULT_BATCH_SIZE})",
    )
    windows.add_argument(
        "--num-workers",
        type=_non_negative_int,
        default=min(4, os.cpu_count() or 1) - 1,
        metavar="N",
        help="worker processes decoding videos while the model runs (default: up to 3; 0 decodes in this process)",
    )
    windows.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check_audio_count(args: argparse.Namespace) -> None:
    if args.audio is not None and len(args.audio) != len(args.videos):
        raise ValueError(
            f"--audio was given {len(args.audio)} time{'s' if len(args.audio) != 1 else ''} for {len(args.videos)} "
            "videos; give it once per video."
        )


def _processor_options(args: argparse.Namespace, processor) -> dict:
    if args.video_backend is not None:
        processor.video_processor.video_backend = args.video_backend
    return {
        "audios": args.audio,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "sampling_mode": args.sampling_mode,
        "window_hop": args.window_hop,
        "missing_audio": args.missing_audio,
        "progress": False if args.no_progress else None,
    }


def _writable_file(path: str | None, option: str) -> Path | None:
    """An output file's path, checked before any work: its folder exists and it is not a folder itself."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name.")
    if not path.parent.is_dir():
        raise ValueError(f"{option} {path}: the folder {path.parent} does not exist.")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"{option} {path}: the folder {path.parent} is not writable.")
    return path


def _writable_folder(path: str | None, option: str) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; give a folder.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _print_input_error(command: str, error: Exception) -> int:
    print(f"avfmae {command}: error: {error}", file=sys.stderr)
    return 1


def _report_failures(command: str, failures: int, total: int) -> int:
    if failures:
        print(f"avfmae {command}: {failures} of {total} videos failed (see above).", file=sys.stderr)
        return 1
    return 0


def _window_summary(prediction) -> str:
    windows = prediction.windows
    count = f"{len(windows)} window{'s' if len(windows) != 1 else ''}"
    if windows and windows[0].start is not None:
        count += f", {windows[0].start:.2f}-{windows[-1].end:.2f} s"
    return count


def _notes(prediction) -> str:
    notes = []
    if prediction.padded:
        notes.append("shorter than one window: padded as the official code pads")
    if prediction.face_found is False:
        notes.append("no face found in some windows: centre crop")
    return f"  ({'; '.join(notes)})" if notes else ""


def run_demo_command(args: argparse.Namespace) -> int:
    try:
        result = run_demo(args.video, args.model, args.size, args.output_dir, device=args.device, dtype=args.dtype)
    except (ValueError, OSError) as error:
        return _print_input_error("demo", error)
    prediction = result.prediction
    print(f"video:       {prediction.video}")
    if result.pretrained:
        print(f"model:       {args.model}")
    else:
        print(f"model:       AVF-MAE++ {result.size}, randomly initialised: nothing is downloaded.")
    face = {True: "yes", False: "no (centre crop used)", None: "not searched"}[prediction.face_found]
    print(f"face found:  {face}")
    print(
        f"windows:     {_window_summary(prediction)}; each is 16 frames, every 4th of 64 source frames, with the "
        "audio of the same span"
    )
    print(
        f"time:        {prediction.timings['processing_s']:.2f} s processing (decode, face crop, fbank), "
        f"{prediction.timings['model_s']:.2f} s model"
    )
    print(
        f"features:    {prediction.features.shape[0]} numbers per window (the means of the fused video and audio "
        "tokens; `avfmae extract-features` writes them)"
    )
    scores = ", ".join(f"{label} {score:.2f}" for label, score in prediction.top(3))
    if result.pretrained:
        print(f"prediction:  {scores} (mean of the windows' probabilities){_notes(prediction)}")
    else:
        print(f"scores:      {scores} - chance, not a prediction.")
        print(textwrap.fill(result.explanation, width=110, initial_indent="note:        ", subsequent_indent=" " * 13))
    print("wrote:       " + ", ".join(str(path) for path in result.files))
    return 0


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run one talking-face video through the processor and the model, offline",
        description="Face crop, sliding windows of 16 frames and the Kaldi fbank of the same spans on a video "
        "(default: a short public-domain sample shipped with the package), then AVF-MAE++; prints what happened and "
        "writes labelled figures: the face crops with their times, the spectrogram with time and mel axes and the "
        "span of each sampled frame, and the emotions over time. Nothing is downloaded: without --model the model "
        "is randomly initialised and its scores are chance.",
    )
    parser.add_argument("--video", metavar="PATH", help="a talking-face video (default: the bundled sample)")
    add_runtime_arguments(
        parser, model_help="a converted or fine-tuned classification model (default: untrained)", required=False
    )
    parser.add_argument("--size", default="base", choices=tuple(MODEL_SIZES), help="size of the untrained model")
    parser.add_argument("--output-dir", default="avfmae-demo", metavar="DIR", help="where to write the figures")
    add_debug_option(parser)
    parser.set_defaults(run=run_demo_command)


def run_predict(args: argparse.Namespace) -> int:
    try:
        _check_audio_count(args)
        json_path = _writable_file(args.json, "--json")
        csv_path = _writable_file(args.csv, "--csv")
        plot_dir = _writable_folder(args.plot, "--plot")
        if plot_dir is not None:
            import_pyplot()
        model, processor, _ = load_classifier(args.model, device=args.device, dtype=args.dtype)
        if not 1 <= args.top_k <= model.config.num_labels:
            raise ValueError(
                f"--top-k must be between 1 and the model's {model.config.num_labels} labels, got {args.top_k}."
            )
        options = _processor_options(args, processor)
    except (ValueError, OSError, ImportError) as error:
        return _print_input_error("predict", error)
    predictions, failures = [], 0
    for result in iter_predictions(args.videos, model, processor, **options):
        if isinstance(result, VideoFailure):
            failures += 1
            _write_failure("predict", result, args.debug)
            continue
        predictions.append(result)
        top = ", ".join(f"{label} {score:.3f}" for label, score in result.top(args.top_k))
        tqdm.write(f"{result.video}: {top}  [{_window_summary(result)}]{_notes(result)}", file=sys.stdout)
        if plot_dir is not None:
            plot_emotions_over_time(result, plot_dir / plot_file_name(result))
    if json_path is not None:
        json_path.write_text(json.dumps([prediction.to_record() for prediction in predictions], indent=1))
    if csv_path is not None:
        labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
        write_predictions_csv(predictions, csv_path, labels)
    return _report_failures("predict", failures, len(args.videos))


def add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="emotions over time in talking-face videos, with a converted classification model",
        description="Runs the processor saved with the model (face crop, sliding windows of 16 frames with the "
        "audio of the same span) and the classifier on every window of every video; prints each video's top "
        "labels (the mean of its windows' probabilities) as soon as it is done. A video that fails is reported "
        "with its position and name, and the others go on.",
        epilog="exit status: 0 when every video was predicted, 1 when any failed or the model cannot be used, "
        "2 for invalid options.",
    )
    add_video_arguments(parser)
    add_runtime_arguments(parser, model_help="a converted or fine-tuned classification model folder (or Hub id)")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--top-k", type=_positive_int, default=3, metavar="K", help="labels to print per video (default 3)"
    )
    output.add_argument(
        "--json",
        metavar="FILE",
        help='write every score: a list of {"video", "scores", "windows": [{"start", "end", "scores"}], "face_found"}',
    )
    output.add_argument(
        "--csv", metavar="FILE", help="write every score: a row per video (window 'all') and a row per window"
    )
    output.add_argument(
        "--plot", metavar="DIR", help="write an emotion-over-time PNG per video (needs matplotlib: the plot extra)"
    )
    add_debug_option(parser)
    parser.set_defaults(run=run_predict)


def run_extract_features(args: argparse.Namespace) -> int:
    try:
        _check_audio_count(args)
        output = _writable_file(args.output, "--output")
        model, processor = load_backbone(args.model, device=args.device, dtype=args.dtype)
        options = _processor_options(args, processor)
    except (ValueError, OSError) as error:
        return _print_input_error("extract-features", error)
    rows, failures = [], 0
    for result in iter_features(args.videos, model, processor, **options):
        if isinstance(result, VideoFailure):
            failures += 1
            _write_failure("extract-features", result, args.debug)
            continue
        rows.append(result)
        count = len(result.window_features)
        tqdm.write(f"{result.video}: {count} window{'s' if count != 1 else ''}", file=sys.stdout)
    if rows:
        tensors = {
            "features": torch.stack([row.features for row in rows]),
            "window_features": torch.cat([row.window_features for row in rows]),
            "window_video": torch.cat(
                [torch.full((len(row.window_features),), number, dtype=torch.long) for number, row in enumerate(rows)]
            ),
            "window_start": torch.cat([row.window_start for row in rows]),
            "window_end": torch.cat([row.window_end for row in rows]),
        }
        save_file(
            {name: value.contiguous() for name, value in tensors.items()},
            output,
            metadata={"videos": json.dumps([row.video for row in rows])},
        )
        print(
            f"wrote {output}: features {tuple(tensors['features'].shape)} (one row per video, the mean of its windows), "
            f"window_features {tuple(tensors['window_features'].shape)} (window_video gives each row's video)"
        )
    return _report_failures("extract-features", failures, len(args.videos))


def add_extract_features_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract-features",
        help="pooled audio-visual features of videos, per video and per window, from any converted model",
        description="Writes a safetensors file: 'features' holds one row per video (the mean over its windows), "
        "'window_features' one row per window, with 'window_video' (the row of its video in 'features'), "
        "'window_start' and 'window_end' (seconds); metadata 'videos' lists the videos in row order. A feature is "
        "the concatenated means of the fused video and audio tokens (AVFMAEModel's pooler_output). Works with "
        "pretraining and classification folders alike; a pretraining folder has no learned layer weights, so the "
        "fusion starts from the encoder layers averaged with equal weights (where fine-tuning starts).",
        epilog="exit status: 0 when every video was processed, 1 when any failed (the others are still written), "
        "2 for invalid options.",
    )
    add_video_arguments(parser)
    add_runtime_arguments(parser, model_help="a converted or saved model folder (or Hub id)")
    parser.add_argument("--output", required=True, metavar="FILE", help="the .safetensors file to write")
    add_debug_option(parser)
    parser.set_defaults(run=run_extract_features)


# The library's messages name its Python arguments; the commands' flags are spelt differently.
FLAG_SPELLINGS = {"missing_audio='silence'": "--missing-audio silence"}


def _write_failure(command: str, failure: VideoFailure, debug: bool) -> None:
    """One line for a video that failed (its traceback too with `--debug`), in the command's own flag spellings."""
    message = str(failure.error)
    for python_spelling, flag in FLAG_SPELLINGS.items():
        message = message.replace(python_spelling, flag)
    tqdm.write(f"avfmae {command}: error: {message}", file=sys.stderr)
    if debug and failure.traceback:
        tqdm.write(failure.traceback, file=sys.stderr)


def run_preprocess(args: argparse.Namespace) -> int:
    from .data_avfmae import DatasetArguments, is_saved_dataset
    from .errors_avfmae import ListFileError
    from .labels_avfmae import dataset_id2label
    from .preprocessing_avfmae import PreprocessingFormatError, preprocess_corpus
    from .processing_avfmae import AVFMAEProcessor
    from .training_avfmae import read_list_file

    if args.shard_index >= args.num_shards:
        print(
            f"error: --shard-index {args.shard_index} must be below --num-shards {args.num_shards}.", file=sys.stderr
        )
        return 2
    try:
        id2label = parse_id2label(args.id2label) if args.id2label else None
        if args.dataset:
            id2label = dataset_id2label(args.dataset)
        label2id = {name: index for index, name in (id2label or {}).items()} or None
        if is_saved_dataset(args.input):
            # relative media paths are taken relative to the dataset's folder, as the training scripts take them
            entries = DatasetArguments(dataset_name=args.input).read_entries(
                args.split, label2id=label2id, check_paths=False
            )
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
    parser.add_argument(
        "--num-workers", type=_non_negative_int, default=0, metavar="N", help="worker processes (0: this one)"
    )
    parser.add_argument(
        "--num-shards", type=_positive_int, default=1, metavar="N", help="split the corpus into N shards"
    )
    parser.add_argument(
        "--shard-index", type=_non_negative_int, default=0, metavar="I", help="the shard this run processes (0..N-1)"
    )
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
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"avfmae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(
            f"avfmae {args.command}: unexpected error: {type(error).__name__}: {error} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


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
