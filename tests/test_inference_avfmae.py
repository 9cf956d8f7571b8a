import shutil
import wave

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import ViTConfig

from avfmae_hf import (
    AVFMAEForPreTraining,
    AVFMAEForVideoClassification,
    AVFMAEModel,
    AVFMAEProcessor,
    MissingAudioError,
    export_checkpoint,
    inference_avfmae,
)
from avfmae_hf.inference_avfmae import (
    UNTRAINED_EXPLANATION,
    ModelFolderError,
    VideoFailure,
    companion_audio,
    extract_features,
    iter_features,
    iter_predictions,
    load_backbone,
    load_classifier,
    plot_emotions_over_time,
    predict_videos,
    run_demo,
    sample_video_path,
)
from tests.media import synthetic
from tests.tiny_configs import tiny_config


LABELS = {0: "anger", 1: "happiness", 2: "neutral"}


def export_tiny(folder, model_class=AVFMAEForVideoClassification, **overrides):
    torch.manual_seed(0)
    model = model_class(tiny_config(**overrides)).eval()
    export_checkpoint(model, folder, processor=AVFMAEProcessor.for_model_config(model.config))
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("models") / "tiny-classifier", id2label=LABELS)


@pytest.fixture(scope="module")
def pretraining_folder(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("models") / "tiny-pretraining", AVFMAEForPreTraining)


def write_wav(path, duration: float, sampling_rate: int = 16000):
    samples = (synthetic.speech_like_audio(duration, sampling_rate) * 20000).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes(samples.tobytes())
    return path


def test_the_sample_clip_ships_with_the_package():
    assert sample_video_path().is_file() and sample_video_path().stat().st_size < 300_000


def test_video_scores_are_the_mean_of_every_window_probabilities(tiny_folder, processor_index_clips):
    model, processor, pretrained = load_classifier(tiny_folder)
    assert pretrained
    video = processor_index_clips["25fps"]  # 100 frames at 25 fps: 4 s
    (prediction,) = predict_videos([video], model, processor, window_hop=16)
    expected = processor(videos=[video], sampling_mode="sliding", window_hop=16, return_tensors="pt")
    assert len(prediction.windows) == len(expected["window_start"]) > 1
    assert [w.start for w in prediction.windows] == pytest.approx(expected["window_start"].tolist())
    assert [w.end for w in prediction.windows] == pytest.approx(expected["window_end"].tolist())
    with torch.no_grad():
        logits = model(pixel_values=expected["pixel_values"], audio_values=expected["audio_values"]).logits
    window_probabilities = logits.softmax(-1)
    for window, row in zip(prediction.windows, window_probabilities.tolist(), strict=True):
        assert list(window.scores) == list(LABELS.values())
        assert list(window.scores.values()) == pytest.approx(row, abs=1e-5)
    assert list(prediction.scores.values()) == pytest.approx(window_probabilities.mean(0).tolist(), abs=1e-5)
    assert prediction.window_features.shape == (len(prediction.windows), 64)
    assert prediction.features == pytest.approx(prediction.window_features.mean(0), abs=1e-6)
    assert prediction.face_found is False  # flat grey frames: the centre crop


@pytest.mark.slow
def test_windows_batched_across_videos_and_workers_give_the_same_scores(tiny_folder, processor_index_clips):
    model, processor, _ = load_classifier(tiny_folder)
    videos = [processor_index_clips[key] for key in ("25fps", "short", "30fps")]
    one_by_one = [predict_videos([video], model, processor, batch_size=1)[0] for video in videos]
    together = predict_videos(videos, model, processor, batch_size=3, num_workers=2)
    assert [p.video for p in together] == [str(v) for v in videos]
    for alone, batched in zip(one_by_one, together, strict=True):
        assert len(alone.windows) == len(batched.windows)
        for a, b in zip(alone.windows, batched.windows, strict=True):
            assert list(a.scores.values()) == pytest.approx(list(b.scores.values()), abs=1e-5)


def test_bfloat16_runs_end_to_end_close_to_float32(tiny_folder):
    video = str(sample_video_path())
    model, processor, _ = load_classifier(tiny_folder)
    reference = predict_videos([video], model, processor)[0]
    model, processor, _ = load_classifier(tiny_folder, dtype=torch.bfloat16, device="cpu")
    assert model.dtype == torch.bfloat16
    prediction = predict_videos([video], model, processor)[0]
    assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert list(prediction.scores.values()) == pytest.approx(list(reference.scores.values()), abs=0.03)


@pytest.mark.parametrize(("native", "warned"), [(False, True), (True, False), (None, False)])
def test_bfloat16_on_a_cpu_without_bf16_units_is_warned_about(tiny_folder, monkeypatch, caplog, native, warned):
    monkeypatch.setattr(inference_avfmae, "cpu_has_native_bf16", lambda: native)
    with caplog.at_level("WARNING"):
        load_classifier(tiny_folder, dtype=torch.bfloat16)
        load_classifier(tiny_folder)  # float32 is never warned about
    assert caplog.text.count("no bf16 units") == int(warned)


def test_one_bad_video_does_not_lose_the_others(tiny_folder, tmp_path):
    model, processor, _ = load_classifier(tiny_folder)
    good = str(sample_video_path())
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01not a video" * 100)
    videos = [good, str(tmp_path / "missing.mp4"), str(corrupt), good]
    results = list(iter_predictions(videos, model, processor, batch_size=2))
    assert [type(result).__name__ for result in results] == [
        "VideoPrediction", "VideoFailure", "VideoFailure", "VideoPrediction"
    ]  # fmt: skip
    missing, broken = results[1], results[2]
    assert missing.index == 1 and str(missing).startswith(f"item 1 ('{tmp_path / 'missing.mp4'}')")
    assert broken.index == 2 and str(broken).startswith(f"item 2 ('{corrupt}')")
    assert results[0].scores == pytest.approx(results[3].scores, abs=1e-6)
    # the list form raises the typed error, naming the position in the caller's list
    with pytest.raises(ValueError, match=r"item 1 \(.*missing\.mp4'\)"):
        predict_videos(videos, model, processor)


def test_warnings_name_the_position_in_the_callers_list(tiny_folder, processor_no_audio_clip, caplog):
    model, processor, _ = load_classifier(tiny_folder)
    good = str(sample_video_path())
    with caplog.at_level("WARNING"):
        predict_videos([good, good, processor_no_audio_clip], model, processor, missing_audio="silence")
    (warning,) = [record.getMessage() for record in caplog.records if "no audio stream" in record.getMessage()]
    assert warning.startswith(f"item 2 ('{processor_no_audio_clip}'): the video has no audio stream"), warning


def test_frame_folders_take_the_wav_beside_them(tiny_folder, processor_frame_folder, tmp_path):
    model, processor, _ = load_classifier(tiny_folder)
    folder = tmp_path / "0001"
    shutil.copytree(processor_frame_folder, folder)
    (failure,) = iter_predictions([str(folder)], model, processor)
    assert isinstance(failure, VideoFailure) and isinstance(failure.error, MissingAudioError)
    (silent,) = predict_videos([str(folder)], model, processor, missing_audio="silence")
    wav = write_wav(tmp_path / "0001.wav", 1.6)
    assert companion_audio(folder) == wav and companion_audio(str(folder) + "/") == wav
    (with_wav,) = predict_videos([str(folder)], model, processor)
    given = write_wav(tmp_path / "other.wav", 1.6)
    (explicit,) = predict_videos([str(folder)], model, processor, audios=[str(given)])
    assert with_wav.scores == pytest.approx(explicit.scores, abs=1e-6)
    assert with_wav.scores != pytest.approx(silent.scores, abs=1e-6)  # the audio reached the model
    # 40 frames: shorter than one window (64 source frames), padded and said so
    assert with_wav.padded and len(with_wav.windows) == 1
    assert with_wav.to_record()["padded"] is True


def test_features_per_window_are_the_backbone_pooler_output(tiny_folder, processor_index_clips):
    backbone, processor = load_backbone(tiny_folder)
    video = processor_index_clips["25fps"]
    (result,) = iter_features([video], backbone, processor, batch_size=3)
    inputs = processor(videos=[video], sampling_mode="sliding", return_tensors="pt")
    with torch.no_grad():
        expected = AVFMAEModel.from_pretrained(tiny_folder).eval()(inputs["pixel_values"], inputs["audio_values"])
    torch.testing.assert_close(result.window_features, expected.pooler_output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.features, expected.pooler_output.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.window_start, inputs["window_start"].float())
    pooled = extract_features([video, video], backbone, processor)
    assert pooled.shape == (2, 64)


def test_a_pretraining_folder_gives_features_with_equal_layer_weights(pretraining_folder):
    """A pretraining folder has no learned layer weights: the backbone averages the encoder layers equally (the
    weights fine-tuning starts from), every time it is loaded, rather than from a random draw."""
    first, _ = load_backbone(pretraining_folder)
    second, _ = load_backbone(pretraining_folder)
    for weights in (first.video_layer_weights, first.audio_layer_weights):
        assert torch.equal(weights, torch.full_like(weights, 1.0 / weights.numel()))
    config = first.config
    inputs = {
        "pixel_values": torch.randn(
            1, config.video_config.num_frames, 3, config.video_config.image_size, config.video_config.image_size
        ),
        "audio_values": torch.randn(1, 1, config.audio_config.max_length, config.audio_config.num_mel_bins),
    }
    with torch.no_grad():
        torch.testing.assert_close(first(**inputs).pooler_output, second(**inputs).pooler_output, rtol=0, atol=0)


def test_the_backbone_loads_from_any_checkpoint_without_a_loading_report(
    pretraining_folder, tiny_folder, tmp_path, caplog
):
    """What the backbone leaves out of a pretraining or classification checkpoint (decoders, head, the layer weights
    a pretraining run has none of) is expected and not reported; what is not expected is, in one line."""
    with caplog.at_level("WARNING"):
        for folder in (pretraining_folder, tiny_folder):
            load_backbone(folder)
    assert caplog.text == ""
    broken = tmp_path / "broken"
    shutil.copytree(pretraining_folder, broken)
    weights = load_file(broken / "model.safetensors")
    del weights[next(key for key in weights if key.startswith("avfmae.fusion."))]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level("WARNING"):
        load_backbone(broken)
    assert "weights not in the checkpoint (newly initialised)" in caplog.text and "LOAD REPORT" not in caplog.text


def test_model_folders_that_cannot_predict_are_refused_clearly(pretraining_folder, tmp_path):
    with pytest.raises(ModelFolderError, match="AVFMAEForPreTraining without a trained classification head"):
        load_classifier(pretraining_folder)
    load_backbone(pretraining_folder)  # features work from it
    ViTConfig().save_pretrained(tmp_path / "vit")
    with pytest.raises(ModelFolderError, match=r"holds a 'vit' model, not AVF-MAE\+\+"):
        load_classifier(tmp_path / "vit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="is not a model folder: it has no config.json"):
        load_classifier(tmp_path / "empty")
    for mistyped in [tmp_path / "tiny-clasifier", "./tiny-clasifier", "models/tiny-clasifier/"]:
        with pytest.raises(ModelFolderError, match=r"^no such folder: "):
            load_classifier(mistyped)
    # a name that could be a Hub id: offline, the message still starts with what the user most likely meant
    with pytest.raises(ModelFolderError, match=r"^no such folder: someone/tiny-clasifier \(nor a Hub model"):
        load_classifier("someone/tiny-clasifier")
    with pytest.raises(ModelFolderError, match="is a file"):
        load_classifier(pretraining_folder / "config.json")


def test_emotion_over_time_plot_has_labelled_axes_and_one_line_per_label(tiny_folder, processor_index_clips, tmp_path):
    model, processor, _ = load_classifier(tiny_folder)
    (prediction,) = predict_videos([processor_index_clips["25fps"]], model, processor, window_hop=16)
    figure = plot_emotions_over_time(prediction)
    (ax,) = figure.axes
    assert ax.get_xlabel().startswith("time (s)") and ax.get_ylabel() == "probability"
    assert [line.get_label() for line in ax.get_lines()] == list(LABELS.values())
    centres = [(w.start + w.end) / 2 for w in prediction.windows]
    assert ax.get_lines()[0].get_xdata().tolist() == pytest.approx(centres)
    plot_emotions_over_time(prediction, tmp_path / "plot.png")
    assert Image.open(tmp_path / "plot.png").size == (800, 350)


@pytest.mark.slow
def test_demo_writes_labelled_figures_and_explains_an_untrained_model(tiny_folder, tmp_path):
    result = run_demo(model_name_or_path=tiny_folder, output_dir=tmp_path)
    assert result.pretrained and result.prediction.face_found and result.explanation == ""
    assert [path.name for path in result.files] == ["face_crops.png", "spectrogram.png", "emotions_over_time.png"]
    for path in result.files:
        assert Image.open(path).size[0] > 300
    untrained = run_demo(size="base", output_dir=tmp_path / "untrained")
    assert not untrained.pretrained and untrained.explanation == UNTRAINED_EXPLANATION
    assert "say nothing about the video" in untrained.explanation and "avfmae convert" in untrained.explanation


def test_processor_output_goes_straight_into_the_model(tiny_folder):
    model, processor, _ = load_classifier(tiny_folder)
    inputs = processor(videos=str(sample_video_path()), return_tensors="pt")
    assert inputs["face_found"].tolist() == [True]
    with torch.no_grad():
        logits = model(**{name: inputs[name] for name in ("pixel_values", "audio_values")}).logits
    assert logits.shape == (1, 3) and np.isfinite(logits.numpy()).all()
