"""The audio-video-classification pipeline: registered on import, declared in exported classifiers, usable as remote
code where the package cannot be imported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from avfmae_hf import (
    AVFMAEAudioVideoClassificationPipeline,
    AVFMAEForVideoClassification,
    AVFMAEProcessor,
    export_checkpoint,
)
from avfmae_hf.hub_avfmae import remote_code_custom_pipelines
from avfmae_hf.inference_avfmae import load_classifier, predict_videos, sample_video_path
from avfmae_hf.pipeline_avfmae import PIPELINE_TASK, REMOTE_PIPELINE_TASK
from tests.media import synthetic
from tests.tiny_configs import tiny_config


LABELS = {0: "anger", 1: "happiness", 2: "neutral", 3: "sadness"}


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tiny_config(id2label=LABELS)).eval()
    folder = tmp_path_factory.mktemp("pipeline_models") / "tiny-classifier"
    export_checkpoint(model, folder, processor=AVFMAEProcessor.for_model_config(model.config))
    return folder


@pytest.fixture(scope="module")
def classifier(classifier_folder):
    return pipeline(PIPELINE_TASK, model=str(classifier_folder))


def test_importing_the_package_registers_the_task():
    assert PIPELINE_TASK in PIPELINE_REGISTRY.get_supported_tasks()
    assert PIPELINE_REGISTRY.supported_tasks[PIPELINE_TASK]["impl"] is AVFMAEAudioVideoClassificationPipeline


def test_a_path_gives_labels_sorted_by_the_mean_of_the_windows_probabilities(classifier, classifier_folder):
    assert isinstance(classifier, AVFMAEAudioVideoClassificationPipeline)
    video = str(sample_video_path())
    result = classifier(video)
    assert sorted(item["label"] for item in result) == sorted(LABELS.values())
    scores = [item["score"] for item in result]
    assert scores == sorted(scores, reverse=True)
    model, processor, _ = load_classifier(classifier_folder)
    (expected,) = predict_videos([video], model, processor)
    assert {item["label"]: item["score"] for item in result} == pytest.approx(expected.scores, abs=1e-5)
    assert len(expected.windows) == 2  # the 3 s sample has two windows, both reflected in the mean
    top = classifier(video, top_k=2)
    assert top == result[:2]


def assert_same_result(result, expected):
    assert [item["label"] for item in result] == [item["label"] for item in expected]
    np.testing.assert_allclose([i["score"] for i in result], [i["score"] for i in expected], atol=1e-5)


def test_bytes_and_frames_with_audio(classifier):
    video = sample_video_path()
    from_bytes = classifier(video.read_bytes())
    from_path = classifier(str(video))
    assert_same_result(from_bytes, from_path)
    frames = synthetic.index_frames(80)
    audio = synthetic.speech_like_audio(80 / 25, 16000)
    result = classifier(frames, audio=audio, sampling_rate=16000, top_k=3)
    assert len(result) == 3 and all(0 <= item["score"] <= 1 for item in result)
    as_dict = classifier({"video": frames, "audio": audio, "sampling_rate": 16000}, top_k=3)
    assert_same_result(as_dict, result)
    # a list is a list of videos
    assert classifier([str(video), str(video)], top_k=1) == [from_path[:1], from_path[:1]]


def test_bad_top_k_and_bad_videos_are_clear_errors(classifier, tmp_path):
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        classifier(str(sample_video_path()), top_k=0)
    # a misspelt or unsupported option is refused, not ignored
    with pytest.raises(TypeError, match=r"unexpected arguments 'sampling_mode', 'windw_hop'.*window_hop"):
        classifier(str(sample_video_path()), windw_hop=8, sampling_mode="center")
    with pytest.raises(ValueError, match=r"missing\.mp4.*no such file"):
        classifier(str(tmp_path / "missing.mp4"))


def test_exported_classifiers_declare_the_pipeline_and_carry_its_code(classifier_folder):
    config = json.loads((classifier_folder / "config.json").read_text())
    assert config["custom_pipelines"] == remote_code_custom_pipelines()
    assert config["custom_pipelines"][REMOTE_PIPELINE_TASK]["impl"] == (
        "pipeline_avfmae.AVFMAEAudioVideoClassificationPipeline"
    )
    assert (classifier_folder / "pipeline_avfmae.py").is_file()
    # the declaration is scoped to the export: the model's own config is unchanged afterwards
    model = AVFMAEForVideoClassification(tiny_config(id2label=LABELS))
    assert "custom_pipelines" not in model.config.to_dict()


REMOTE_PIPELINE = r"""
import importlib.abc
import json
import sys

import_path, folder, clip_path, result_path = json.loads(sys.argv[1])


class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "avfmae_hf":
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, BlockPackage())
sys.path.extend(import_path)
import numpy as np
from transformers import pipeline

try:
    pipeline(model=folder)
except ValueError as error:
    refused = "trust_remote_code=True" in str(error)
else:
    refused = False
classifier = pipeline(model=folder, trust_remote_code=True)
clip = np.load(clip_path)
result = {
    "refused_without_trust": refused,
    "class": [type(classifier).__name__, type(classifier).__module__],
    "task": classifier.task,
    "scores": classifier(clip["frames"], audio=clip["audio"], sampling_rate=16000, top_k=4),
    "package_in_modules": sorted(name for name in sys.modules if name.split(".")[0] == "avfmae_hf"),
}
with open(result_path, "w") as handle:
    json.dump(result, handle)
"""


@pytest.mark.slow
def test_exported_folder_runs_the_pipeline_where_the_package_is_not_importable(
    classifier, classifier_folder, tmp_path
):
    (tmp_path / "remote_pipeline.py").write_text(REMOTE_PIPELINE)
    site_packages = [path for path in sys.path if path and not (Path(path) / "avfmae_hf").exists()]
    frames, audio = synthetic.index_frames(100), synthetic.speech_like_audio(4.0, 16000)
    np.savez(tmp_path / "clip.npz", frames=frames, audio=audio)
    arguments = [site_packages, str(classifier_folder), str(tmp_path / "clip.npz"), str(tmp_path / "result.json")]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "HF_HUB_OFFLINE": "1",
    }
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(tmp_path / "remote_pipeline.py"), json.dumps(arguments)],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["package_in_modules"] == [] and result["refused_without_trust"] is True
    assert result["class"][0] == "AVFMAEAudioVideoClassificationPipeline"
    assert result["class"][1].startswith("transformers_modules.")
    assert result["task"] == REMOTE_PIPELINE_TASK
    assert_same_result(result["scores"], classifier(frames, audio=audio, sampling_rate=16000, top_k=4))


def test_video_only_models_run_through_the_same_pipeline(tmp_path):
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tiny_config(use_audio=False, id2label={0: "calm", 1: "tense"})).eval()
    export_checkpoint(model, tmp_path / "video-only", processor=AVFMAEProcessor.for_model_config(model.config))
    classifier = pipeline(PIPELINE_TASK, model=str(tmp_path / "video-only"))
    result = classifier(str(sample_video_path()))
    inputs = classifier.processor(videos=[str(sample_video_path())], sampling_mode="sliding", return_tensors="pt")
    with torch.no_grad():
        expected = model(pixel_values=inputs["pixel_values"]).logits.softmax(-1).mean(0)
    assert {item["label"]: item["score"] for item in result} == pytest.approx(
        {"calm": float(expected[0]), "tense": float(expected[1])}, abs=1e-5
    )
