# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The `avfmae` command line. Each subcommand is one `add_<name>_command(subparsers)` function listed in `COMMANDS`;
it declares its options and a `run` function that calls the library and returns the exit status."""

import argparse
import logging
import sys
from collections.abc import Sequence

from huggingface_hub.errors import HfHubHTTPError

from .checkpoint_avfmae import VerificationError, convert_checkpoint, parse_id2label, read_original_config
from .configuration_avfmae import PRESETS
from .convert_avfmae import OFFICIAL_DATASET_NUM_LABELS, OFFICIAL_LABEL_ORDERS
from .hub_avfmae import DEFAULT_MAX_SHARD_SIZE


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
        choices=("auto", *PRESETS),
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


COMMANDS = (add_convert_command,)


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


__all__ = ["COMMANDS", "add_convert_arguments", "add_convert_command", "build_parser", "main", "run_convert"]
