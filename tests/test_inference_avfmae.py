import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from avfmae_hf import AVFMAEForVideoClassification, AVFMAEModel, AVFMAEProcessor, cli, export_checkpoint
from avfmae_hf.inference_avfmae import (
    extract_features,
    load_classifier,
    predict_videos,
    run_demo,
    sample_video_path,
)
from tests.tiny_configs import tiny_config


LABELS = {0: "anger", 1: "happiness", 2: "neutral"}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tiny_config(id2label=LABELS)).eval()
    folder = tmp_path_factory.mktemp("models") / "tiny-classifier"
    export_checkpoint(model, folder, processor=AVFMAEProcessor.for_model_config(model.config))
    return folder


def test_the_sample_clip_ships_with_the_package():
    assert sample_video_path().is_file() and sample_video_path().stat().st_size < 300_000


def test_processor_output_goes_straight_into_the_model(tiny_folder):
    model, processor, pretrained = load_classifier(tiny_folder)
    assert pretrained
    inputs = processor(videos=str(sample_video_path()), return_tensors="pt")
    assert inputs["face_found"].tolist() == [True]
    with torch.no_grad():
        logits = model(**inputs).logits  # the face flag rides along without being a model input
    assert logits.shape == (1, 3)


def test_predictions_are_probabilities_per_label(tiny_folder):
    model, processor, _ = load_classifier(tiny_folder)
    predictions = predict_videos([str(sample_video_path())] * 3, model, processor, batch_size=2)
    assert len(predictions) == 3
    for prediction in predictions:
        assert list(prediction.scores) == list(LABELS.values())
        assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction.features.shape == (64,)
        assert prediction.face_found is True
        assert prediction.top(1)[0][1] == max(prediction.scores.values())
    # the same clip gives the same answer whatever batch it is in
    assert predictions[0].scores == pytest.approx(predictions[2].scores, abs=1e-5)


def test_features_are_the_backbone_pooler_output(tiny_folder):
    backbone = AVFMAEModel.from_pretrained(tiny_folder).eval()
    processor = AVFMAEProcessor.from_pretrained(tiny_folder)
    features = extract_features([str(sample_video_path())], backbone, processor)
    inputs = processor(videos=str(sample_video_path()), return_tensors="pt")
    with torch.no_grad():
        expected = backbone(inputs["pixel_values"], inputs["audio_values"]).pooler_output
    torch.testing.assert_close(features, expected)


def test_demo_with_a_checkpoint_writes_previews(tiny_folder, tmp_path):
    result = run_demo(model_name_or_path=tiny_folder, output_dir=tmp_path)
    assert result.pretrained and result.prediction.face_found
    crops, spectrogram = (Image.open(path) for path in result.files)
    assert crops.size == (4 * 16, 4 * 16)  # 16 frames of the tiny model's 16x16 in a 4x4 grid
    assert spectrogram.size == (2 * 32, 2 * 16)  # time x mel, doubled


def test_demo_command_runs_offline_with_an_untrained_base_model(tmp_path, capsys):
    assert cli.main(["demo", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "randomly initialised: nothing is downloaded" in out
    assert "face found: yes" in out and "feature:    1024 values" in out
    crops = Image.open(tmp_path / "face_crops.png")
    assert crops.size == (640, 640)


def test_predict_command_prints_top_labels_and_writes_json(tiny_folder, tmp_path, capsys):
    output = tmp_path / "scores.json"
    status = cli.main(
        ["predict", str(sample_video_path()), "--model", str(tiny_folder), "--top-k", "2", "--json", str(output)]
    )
    assert status == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(sample_video_path())) and line.count(" 0.") == 2
    records = json.loads(output.read_text())
    assert records[0]["face_found"] is True and set(records[0]["scores"]) == set(LABELS.values())


def test_extract_features_command_writes_one_row_per_video(tiny_folder, tmp_path, capsys):
    output = tmp_path / "features.safetensors"
    video = str(sample_video_path())
    assert cli.main(["extract-features", video, video, "--model", str(tiny_folder), "--output", str(output)]) == 0
    with safe_open(output, "pt") as file:
        assert file.get_tensor("features").shape == (2, 64)
        assert json.loads(file.metadata()["videos"]) == [video, video]


def test_commands_report_bad_videos_without_a_traceback(tiny_folder, tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    assert cli.main(["predict", str(missing), "--model", str(tiny_folder)]) == 1
    error = capsys.readouterr().err
    assert "avfmae predict: error: item 0" in error and "missing.mp4" in error and "Traceback" not in error
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01not a video" * 100)
    assert cli.main(["demo", "--video", str(corrupt), "--model", str(tiny_folder)]) == 1
    assert "corrupt.mp4" in capsys.readouterr().err
