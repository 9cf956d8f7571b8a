# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Exporting AVF-MAE++ models as self-contained folders and Hub repositories: safetensors weights, a config whose
`auto_map` covers every Auto class, the code files for `trust_remote_code=True`, an optional processor and a model
card; published in one commit."""

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.utils import logging

from .configuration_avfmae import AVFMAEConfig
from .modeling_avfmae import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEModel, AVFMAEPreTrainedModel
from .pipeline_avfmae import REMOTE_PIPELINE_TASK, AVFMAEAudioVideoClassificationPipeline
from .processing_avfmae import AVFMAEProcessor


logger = logging.get_logger(__name__)

# Every Auto class a saved folder answers to; the classes' files travel with the weights.
AUTO_CLASSES = {
    "AutoConfig": AVFMAEConfig,
    "AutoModel": AVFMAEModel,
    "AutoModelForPreTraining": AVFMAEForPreTraining,
    "AutoModelForVideoClassification": AVFMAEForVideoClassification,
}
# The parts of a processor and the Auto class each answers to in remote code.
PROCESSOR_PARTS = {"video_processor": "AutoVideoProcessor", "feature_extractor": "AutoFeatureExtractor"}
DEFAULT_MAX_SHARD_SIZE = "2GB"
LICENSE = "apache-2.0"
TAGS = (
    "avfmae",
    "audio-visual",
    "masked-autoencoder",
    "affective-computing",
    "emotion-recognition",
    "facial-expression-recognition",
    "custom_code",
)
PAPER_TITLE = (
    "AVF-MAE++: Scaling Affective Video Facial Masked Autoencoders via Efficient Audio-Visual Self-Supervised Learning"
)
CITATION = """@InProceedings{Wu_2025_CVPR,
    author    = {Wu, Xuecheng and Sun, Heli and Wang, Yifan and Nie, Jiayu and Zhang, Jie and Wang, Yabing and Xue, Junxiao and He, Liang},
    title     = {AVF-MAE++: Scaling Affective Video Facial Masked Autoencoders via Efficient Audio-Visual Self-Supervised Learning},
    booktitle = {Proceedings of the Computer Vision and Pattern Recognition Conference (CVPR)},
    month     = {June},
    year      = {2025},
    pages     = {9142--9153}
}"""

_PAPER_URL = (
    "https://openaccess.thecvf.com/content/CVPR2025/html/Wu_AVF-MAE_Scaling_Affective_Video_Facial_Masked_Autoencoders"
    "_via_Efficient_Audio-Visual_CVPR_2025_paper.html"
)
_UNSET = object()


def remote_code_auto_map() -> dict[str, str]:
    """The complete `auto_map` of a saved folder: `{"AutoConfig": "configuration_avfmae.AVFMAEConfig", ...}`.

    transformers only records the Auto class of the object being saved (plus `AutoConfig`); a classifier saved that
    way could not be opened with `AutoModel`, so the export sets every entry itself."""
    return {auto: f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}" for auto, cls in AUTO_CLASSES.items()}


def remote_code_custom_pipelines() -> dict[str, dict]:
    """The `custom_pipelines` entry of an exported classifier's config: its pipeline class, in the exported
    `pipeline_avfmae.py`, for `pipeline(model=folder, trust_remote_code=True)`."""
    cls = AVFMAEAudioVideoClassificationPipeline
    return {
        REMOTE_PIPELINE_TASK: {
            "impl": f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}",
            "pt": ["AutoModelForVideoClassification"],
            "type": "multimodal",
        }
    }


def remote_code_files(with_processor: bool = False, with_pipeline: bool = False) -> list[str]:
    """Names of the Python files an export carries: the modules of the Auto classes and their relative imports (and
    those of [`AVFMAEProcessor`] and of the pipeline when the export includes them)."""
    classes = [*AUTO_CLASSES.values(), *([AVFMAEProcessor] if with_processor else [])]
    classes += [AVFMAEAudioVideoClassificationPipeline] if with_pipeline else []
    files = set()
    for cls in classes:
        module_file = sys.modules[cls.__module__].__file__
        files |= {Path(path).name for path in [module_file, *get_relative_import_files(module_file)]}
    return sorted(files)


def _auto_class_of(model: AVFMAEPreTrainedModel) -> str:
    for auto, cls in AUTO_CLASSES.items():
        if type(model) is cls:
            return auto
    raise TypeError(
        f"Cannot export a {type(model).__name__}; expected one of {[c.__name__ for c in AUTO_CLASSES.values()]}."
    )


def _carries_pipeline(model: AVFMAEPreTrainedModel, processor: Any) -> bool:
    # the pipeline needs a classification head and the processor that feeds it
    return isinstance(model, AVFMAEForVideoClassification) and isinstance(processor, AVFMAEProcessor)


def write_pipeline_code(model: AVFMAEPreTrainedModel, processor: Any, folder: str | os.PathLike) -> None:
    """Copies the pipeline's code file into a folder saved within [`carrying_remote_code`] when its config declares
    the pipeline (a classifier saved with its processor), so that `custom_pipelines` names a file the folder has."""
    if _carries_pipeline(model, processor):
        shutil.copy(sys.modules[AVFMAEAudioVideoClassificationPipeline.__module__].__file__, folder)


@contextmanager
def carrying_remote_code(model: AVFMAEPreTrainedModel, processor: Any = None) -> Iterator[None]:
    """Within the block, `model.save_pretrained` also writes the code files and the complete `auto_map`, and so does
    `processor.save_pretrained` for an [`AVFMAEProcessor`] (its `processor_config.json` gets its own `auto_map`).

    `register_for_auto_class` marks a class for the rest of the process; this scope restores the classes and the
    config afterwards, so later ordinary saves stay code-free."""
    classes = {type(model.config): "AutoConfig", type(model): _auto_class_of(model)}
    if isinstance(processor, AVFMAEProcessor):
        classes[type(processor)] = "AutoProcessor"
        for attribute, auto_class in PROCESSOR_PARTS.items():
            if getattr(processor, attribute, None) is not None:
                classes[type(getattr(processor, attribute))] = auto_class
    previous = {cls: cls.__dict__.get("_auto_class", _UNSET) for cls in classes}
    previous_map = model.config.__dict__.get("auto_map", _UNSET)
    previous_pipelines = model.config.__dict__.get("custom_pipelines", _UNSET)
    try:
        for cls, auto_class in classes.items():
            cls.register_for_auto_class(auto_class)
        model.config.auto_map = remote_code_auto_map()
        if _carries_pipeline(model, processor):
            model.config.custom_pipelines = remote_code_custom_pipelines()
        yield
    finally:
        if previous_pipelines is _UNSET:
            model.config.__dict__.pop("custom_pipelines", None)
        else:
            model.config.custom_pipelines = previous_pipelines
        for cls, value in previous.items():
            if value is _UNSET:
                del cls._auto_class
            else:
                cls._auto_class = value
        if previous_map is _UNSET:
            del model.config.auto_map
        else:
            model.config.auto_map = previous_map


# --------------------------------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------------------------------


def model_card_data(
    model: AVFMAEPreTrainedModel,
    *,
    model_name: str | None = None,
    base_model: str | None = None,
    datasets: Iterable[str] | None = None,
    eval_results: Iterable[EvalResult] | None = None,
) -> ModelCardData:
    """The card's metadata: library, pipeline tag (`video-classification` for classifiers, `feature-extraction`
    otherwise), license, tags, and base model / datasets / evaluation results when known."""
    eval_results = list(eval_results or [])
    classifier = isinstance(model, AVFMAEForVideoClassification)
    tags = [*TAGS, "video-classification" if classifier else "pretraining"]
    if model.config.size_name:
        tags.append(f"avfmae-{model.config.size_name}")
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification" if classifier else "feature-extraction",
        license=LICENSE,
        tags=tags,
        base_model=base_model,
        datasets=list(datasets) if datasets else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
        model_name=model_name if eval_results else None,
    )


def _describe_sizes(config: AVFMAEConfig) -> str:
    video, audio = config.video_config, config.audio_config
    name = config.size_name
    sizes = f"hidden size {video.hidden_size}, {video.num_hidden_layers} video layers"
    if config.use_audio:
        sizes += f", {audio.num_hidden_layers} audio layers, {config.fusion_num_hidden_layers} IAV-CLM fusion layers"
    return f"{name} ({sizes})" if name else sizes


def build_model_card(
    model: AVFMAEPreTrainedModel,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
    datasets: Iterable[str] | None = None,
    eval_results: Iterable[EvalResult] | None = None,
    source: str | None = None,
    model_name: str | None = None,
    notes: Iterable[str] = (),
    with_processor: bool = False,
) -> ModelCard:
    """A model card for an exported AVF-MAE++ model: metadata (see [`model_card_data`]), what the checkpoint is, its
    inputs and labels, both ways of loading it (package installed, or `trust_remote_code=True` with a pinned
    `revision`), intended use, limitations, results when given, and the paper's citation.

    Args:
        model: the exported model.
        repo_id: the Hub repository, used in the loading examples.
        base_model: the repository this model was fine-tuned from, when known.
        datasets: Hub dataset ids the model was trained on, when known.
        eval_results: `huggingface_hub.EvalResult`s, when known (they become the card's `model-index`).
        source: where the weights come from (e.g. "the official checkpoint `AVF-MAE++_huge.pth`").
        model_name: the name results are listed under (default: the repository name).
        notes: sentences added to the description (e.g. that a classification head is untrained).
        with_processor: the repository also holds an [`AVFMAEProcessor`]; the loading examples then show it.
    """
    config = model.config
    eval_results = list(eval_results or [])
    name = repo_id or "path/to/this/folder"
    data = model_card_data(
        model,
        model_name=model_name or (repo_id or "avfmae").split("/")[-1],
        base_model=base_model,
        datasets=datasets,
        eval_results=eval_results,
    )
    auto_class = _auto_class_of(model)
    classifier = isinstance(model, AVFMAEForVideoClassification)
    if classifier:
        what = f"a video classifier with {config.num_labels} classes (encoders, IAV-CLM fusion and a linear head)"
    elif isinstance(model, AVFMAEForPreTraining):
        what = (
            "the self-supervised pretraining model (encoders, IAV-CLM fusion and both reconstruction decoders); load "
            "it with `AutoModel` for audio-visual features or as the starting point of fine-tuning"
        )
    else:
        what = "the backbone (encoders and IAV-CLM fusion), which returns fused audio-visual features"
    video, audio = config.video_config, config.audio_config
    inputs = (
        f"`pixel_values` `(batch, {video.num_frames}, {video.num_channels}, {video.image_size}, {video.image_size})`: "
        "face frames, ImageNet-normalised"
    )
    if config.use_audio:
        inputs += (
            f"; `audio_values` `(batch, 1, {audio.max_length}, {audio.num_mel_bins})`: normalised Kaldi log-mel "
            "filterbank of 16 kHz speech"
        )
    rows = [
        ("size", _describe_sizes(config)),
        ("parameters", f"{model.num_parameters():,}"),
        ("inputs", inputs),
    ]
    if classifier:
        rows.append(("labels", ", ".join(f"{index} {label}" for index, label in sorted(config.id2label.items()))))
    if source:
        rows.append(("source", source))
    if base_model:
        rows.append(("fine-tuned from", f"[{base_model}](https://huggingface.co/{base_model})"))
    table = "\n".join(["| | |", "| --- | --- |", *(f"| {key} | {value} |" for key, value in rows)])
    code_files = ", ".join(f"`{name}`" for name in remote_code_files(with_processor, classifier and with_processor))
    auto_imports = f"{auto_class}, AutoProcessor" if with_processor else auto_class
    processor_line = processor_remote_line = ""
    if with_processor:
        processor_line = f'\nprocessor = AutoProcessor.from_pretrained("{name}")'
        processor_remote_line = (
            f'\nprocessor = AutoProcessor.from_pretrained("{name}", trust_remote_code=True, revision="<commit sha>")'
        )
        processor_line += '\ninputs = processor(videos="talking_face.mp4", return_tensors="pt")  # face crop + fbank'
        processor_line += "\noutputs = model(**inputs)"
    results = ""
    if eval_results:
        lines = [
            f"| {result.dataset_name} | {result.metric_name or result.metric_type} | {result.metric_value} |"
            for result in eval_results
        ]
        results = "\n## Evaluation\n\n| dataset | metric | value |\n| --- | --- | --- |\n" + "\n".join(lines) + "\n"

    title = " ".join(filter(None, ["AVF-MAE++", config.size_name]))
    body = f"""
# {title}

[AVF-MAE++]({_PAPER_URL}) (Wu et al., CVPR 2025) is an audio-visual masked autoencoder for affective analysis of face
videos: a local-global video encoder and an audio encoder, pretrained with dual masking, whose features are fused by
the iterative audio-visual correlation learning module (IAV-CLM). This repository holds {what}, in the format of the
`avfmae-hf` package for 🤗 Transformers.{"".join(f" {note}" for note in notes)}

{table}

## How to load

With the `avfmae-hf` package installed, importing it registers the AVF-MAE++ classes with the Auto classes:

```python
import avfmae_hf  # noqa: F401
from transformers import {auto_imports}

model = {auto_class}.from_pretrained("{name}"){processor_line}
```

With transformers alone, the Python files of this repository ({code_files}) define the model{" and the processor" if with_processor else ""}.
`trust_remote_code=True` runs them, so pin `revision` to a commit you have reviewed:

```python
from transformers import {auto_imports}

model = {auto_class}.from_pretrained("{name}", trust_remote_code=True, revision="<commit sha>"){processor_remote_line}
```

`AutoConfig`, `AutoModel`, `AutoModelForPreTraining` and `AutoModelForVideoClassification` all work on this
repository; a pretraining checkpoint loaded with `AutoModelForVideoClassification.from_pretrained(..., num_labels=n)`
keeps its encoders and fusion module and initialises a new head.

## Intended use

Research on affective computing: facial expression and emotion recognition from short face videos with speech,
audio-visual representation learning, and fine-tuning on labelled emotion datasets.

## Limitations and risks

- Emotion labels describe how expressions were annotated in the training datasets, not what a person feels. Do not
  use the model to make decisions about individuals (hiring, education, policing, insurance, medical diagnosis).
  Emotion recognition in workplaces and schools is restricted by law in some jurisdictions (e.g. the EU AI Act).
- Face and emotion datasets under-represent many groups, and labels carry their annotators' cultural biases;
  accuracy differs between groups, recording conditions and languages. Evaluate on data of your own population.
- The model expects aligned face crops (16 frames, 160×160) and 16 kHz speech; other inputs give unreliable outputs.
{results}
## Citation

```bibtex
{CITATION}
```

## License

The weights and code are released under the Apache License 2.0.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


# --------------------------------------------------------------------------------------------------------------------
# Export and publishing
# --------------------------------------------------------------------------------------------------------------------


@contextmanager
def staged_directory(output_dir: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yields an empty temporary folder next to `output_dir`; on success it replaces `output_dir`, on error it is
    removed (with any parent folders this call created), so no partial output is ever left behind.

    Raises `FileExistsError` up front when `output_dir` exists and is not empty, unless `overwrite`."""
    target = Path(output_dir).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise FileExistsError(f"{target} already exists and is not empty; choose another folder or overwrite it.")
    created = [parent for parent in reversed(target.parents) if not parent.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(target, "partial")
    try:
        yield staging
        if target.exists():
            backup = _sibling(target, "old")
            target.rename(backup / target.name)
            staging.rename(target)
            shutil.rmtree(backup)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in reversed(created):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        raise


def _sibling(target: Path, kind: str) -> Path:
    """A new hidden folder next to `target` (same file system, so moving it into place is a rename)."""
    while True:
        folder = target.parent / f".{target.name}.{secrets.token_hex(4)}.{kind}"
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            return folder


def write_checkpoint_files(
    model: AVFMAEPreTrainedModel,
    folder: str | os.PathLike,
    *,
    processor: Any = None,
    model_card: ModelCard | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> list[str]:
    """Writes the export into an existing folder (see [`export_checkpoint`]) and returns the file names."""
    folder = Path(folder)
    with carrying_remote_code(model, processor):
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        if processor is not None:
            processor.save_pretrained(folder)
        write_pipeline_code(model, processor, folder)
    (model_card or build_model_card(model, with_processor=processor is not None)).save(folder / "README.md")
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def export_checkpoint(
    model: AVFMAEPreTrainedModel,
    output_dir: str | os.PathLike,
    *,
    processor: Any = None,
    model_card: ModelCard | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
) -> list[str]:
    """Saves `model` as a folder that loads with the package installed and, through `trust_remote_code=True`, with
    transformers alone.

    The folder holds safetensors weights (sharded above `max_shard_size`), `config.json` with the complete
    `auto_map` ([`remote_code_auto_map`]), the package's model code files, the processor's files when `processor` is
    given (anything with `save_pretrained`), and a model card `README.md` ([`build_model_card`] unless `model_card`
    is given). It is written to a temporary folder and moved into place, so a failure leaves nothing behind.

    Returns:
        `list[str]`: the file names written.
    """
    with staged_directory(output_dir, overwrite=overwrite) as staging:
        return write_checkpoint_files(
            model, staging, processor=processor, model_card=model_card, max_shard_size=max_shard_size
        )


def upload_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | bool | None = None,
):
    """Creates `repo_id` if needed and uploads every file of an exported `folder` in one commit.

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    folder = Path(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    if not files:
        raise ValueError(f"{folder} holds no files to upload.")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in files
    ]
    logger.info(f"Uploading {len(operations)} files to {repo.repo_id} in one commit.")
    return api.create_commit(
        repo_id=repo.repo_id,
        operations=operations,
        commit_message=commit_message or "Upload AVF-MAE++ model",
        revision=revision,
        create_pr=create_pr,
        repo_type="model",
    )


def push_to_hub(
    model: AVFMAEPreTrainedModel,
    repo_id: str,
    *,
    processor: Any = None,
    model_card: ModelCard | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | bool | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
):
    """Publishes `model` (and `processor`) to the Hub in **one** commit: the folder of [`export_checkpoint`] —
    weights, config with the complete `auto_map`, code files, processor files and model card.

    Unlike `model.push_to_hub` (which uploads only the model) this keeps model, processor and card consistent at
    every revision. The card defaults to [`build_model_card`] with `repo_id` in its loading examples.

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    with tempfile.TemporaryDirectory() as folder:
        write_checkpoint_files(
            model,
            folder,
            processor=processor,
            model_card=model_card or build_model_card(model, repo_id=repo_id),
            max_shard_size=max_shard_size,
        )
        return upload_folder_to_hub(
            folder,
            repo_id,
            commit_message=commit_message or f"Upload {type(model).__name__}",
            private=private,
            revision=revision,
            create_pr=create_pr,
            token=token,
        )


__all__ = [
    "AUTO_CLASSES",
    "CITATION",
    "build_model_card",
    "carrying_remote_code",
    "export_checkpoint",
    "model_card_data",
    "push_to_hub",
    "remote_code_auto_map",
    "remote_code_custom_pipelines",
    "write_pipeline_code",
    "remote_code_files",
    "staged_directory",
    "upload_folder_to_hub",
    "write_checkpoint_files",
]
