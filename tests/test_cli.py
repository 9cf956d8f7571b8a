import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForPreTraining, AutoModelForVideoClassification, AutoProcessor

from avfmae_hf import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEProcessor, cli, export_checkpoint
from avfmae_hf.checkpoint_avfmae import build_config, convert_checkpoint
from avfmae_hf.inference_avfmae import sample_video_path
from avfmae_hf.original_config_avfmae import describe_original_state_dict
from tests.official_checkpoints import (
    OFFICIAL,
    fixture_config_path,
    fixture_state_dict,
    real_variant_meta_state_dict,
    save_official_checkpoint,
    training_args,
)
from tests.tiny_configs import tiny_config


ROOT = Path(__file__).resolve().parents[1]
MAFW = "anger,disgust,fear,happiness,neutral,sadness,surprise,contempt,anxiety,helplessness,disappointment"


def convert(*options: str) -> int:
    return cli.main(["convert", *map(str, options)])


def fixture_options(name: str) -> list:
    return ["--checkpoint", OFFICIAL / name / "state_dict.safetensors", "--original-config", fixture_config_path(name)]


def assert_nothing_left(parent: Path, expected: set[str] = frozenset()):
    """Only `expected` entries in `parent`: no output folder, no staging folder."""
    assert {path.name for path in parent.iterdir()} == set(expected)


# ------------------------------------------------------------------------------------------------ reproducing the fixtures


@pytest.mark.parametrize(
    "fixture, model_class, auto_class, tensors",
    [
        ("tiny_pretrain", AVFMAEForPreTraining, AutoModelForPreTraining, 20),
        ("tiny_finetune", AVFMAEForVideoClassification, AutoModelForVideoClassification, 7),
    ],
)
def test_cli_conversion_of_the_fixtures_reproduces_the_official_outputs(
    fixture, model_class, auto_class, tensors, tmp_path, capsys
):
    status = convert(
        *fixture_options(fixture), "--reference-dir", OFFICIAL / fixture, "--output-dir", tmp_path / "out"
    )
    out = capsys.readouterr().out
    assert status == 0, out
    mapped = len(fixture_state_dict(fixture))
    assert f"{mapped} official keys mapped" in out and "parameters in the" in out
    assert out.count("ok   reference ") == tensors and "FAIL" not in out
    assert "ok   saved weights" in out and "not compared: block_out" in out

    folder = tmp_path / "out"
    assert {"config.json", "model.safetensors", "README.md", "modeling_avfmae.py"} <= {
        p.name for p in folder.iterdir()
    }
    model = auto_class.from_pretrained(folder)
    assert type(model) is model_class
    assert f"{model.num_parameters():,} parameters" in out
    # the matching processor is saved beside the model, sized for it
    processor = AutoProcessor.from_pretrained(folder)
    assert type(processor) is AVFMAEProcessor
    assert processor.video_processor.num_frames == model.config.video_config.num_frames
    assert processor.video_processor.size == {"height": 16, "width": 16}
    assert processor.feature_extractor.max_length == model.config.audio_config.max_length == 32
    assert processor.feature_extractor.num_mel_bins == model.config.audio_config.num_mel_bins == 16


def test_deliberate_mismatch_exits_non_zero_and_writes_nothing(tmp_path, capsys, fake_hub):
    reference = tmp_path / "reference"
    shutil.copytree(OFFICIAL / "tiny_finetune", reference)
    outputs = load_file(reference / "outputs.safetensors")
    outputs["logits"] = outputs["logits"] + 1e-3
    save_file(outputs, reference / "outputs.safetensors")

    status = convert(*fixture_options("tiny_finetune"), "--reference-dir", reference, "--output-dir", tmp_path / "out",
                     "--push-to-hub", "someone/tiny")  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1
    assert "FAIL reference logits: max abs difference 1.00e-03" in captured.out
    assert "ok   reference feature" in captured.out  # the other tensors still match
    assert "Verification failed: reference logits" in captured.err and "Nothing was written" in captured.err
    assert_nothing_left(tmp_path, {"reference"})
    assert fake_hub.repos == [] and fake_hub.commits == []


def test_verify_without_reference_checks_reload_and_a_forward_pass(tmp_path, capsys):
    assert convert(*fixture_options("tiny_finetune"), "--verify", "--output-dir", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "ok   saved weights: 431 tensors bit-identical after reloading" in out
    assert "ok   forward: random inputs give finite outputs" in out


# ------------------------------------------------------------------------------------------------ official .pth files


def test_official_pth_with_optimizer_and_args_converts_safely(tmp_path, capsys):
    checkpoint = save_official_checkpoint(
        tmp_path / "checkpoint-best.pth", fixture_state_dict("tiny_finetune"), training_args("classification")
    )
    # the training arguments say DFEW, whose label names the release does not state
    status = convert("--checkpoint", checkpoint, "--original-config", fixture_config_path("tiny_finetune"),
                     "--output-dir", tmp_path / "out")  # fmt: skip
    assert status == 1 and "name the dataset DFEW" in capsys.readouterr().err
    assert_nothing_left(tmp_path, {"checkpoint-best.pth"})

    labels = "happy,sad,neutral,angry,surprise,disgust,fear"
    status = convert("--checkpoint", checkpoint, "--original-config", fixture_config_path("tiny_finetune"),
                     "--id2label", labels, "--output-dir", tmp_path / "out")  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0 and "Checkpoint entries not converted: optimizer, scaler." in out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert list(config["id2label"].values()) == labels.split(",")
    assert config["drop_path_rate"] == 0.1  # from the training arguments
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "`checkpoint-best.pth` (epoch 99)" in card.text


def test_refused_pickle_suggests_unsafe_pickle_which_then_works(tmp_path, capsys):
    checkpoint = save_official_checkpoint(
        tmp_path / "c.pth", fixture_state_dict("tiny_pretrain"), training_args("pretraining"), extra=SimpleNamespace()
    )
    options = [*fixture_options("tiny_pretrain")[2:], "--checkpoint", checkpoint, "--output-dir", tmp_path / "out"]
    assert convert(*options) == 1
    err = capsys.readouterr().err
    assert "types.SimpleNamespace" in err and "--unsafe-pickle" in err
    assert_nothing_left(tmp_path, {"c.pth"})

    assert convert(*options, "--unsafe-pickle") == 0
    captured = capsys.readouterr()
    assert "unrestricted unpickling" in captured.err and "extra" in captured.out


def test_pretraining_checkpoint_becomes_a_classifier_with_the_official_label_order(tmp_path, capsys):
    status = convert(*fixture_options("tiny_pretrain"), "--task", "classification", "--dataset", "mafw", "--verify",
                     "--output-dir", tmp_path / "out")  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert "pretraining checkpoint -> classification model" in out
    assert "130 official keys not used by the target: decoder" in out
    assert "6 parameters newly initialised" in out and "classifier.weight" in out
    model = AutoModelForVideoClassification.from_pretrained(tmp_path / "out")
    assert ",".join(model.config.id2label[i] for i in range(11)) == MAFW
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "newly initialised, not trained: fine-tune the model before using its predictions" in card.text
    assert torch.equal(
        model.avfmae.video_encoder.region_tokens, fixture_state_dict("tiny_pretrain")["encoder.lg_region_tokens"]
    )


def test_auto_and_named_sizes_of_the_released_variants():
    # released sizes have hundreds of millions of parameters: their conversion is checked on the meta device
    for task, size in [("pretrain", "huge"), ("finetune", "base")]:
        architecture = describe_original_state_dict(real_variant_meta_state_dict(task, size))
        assert build_config(architecture).video_config.hidden_size == {"huge": 768, "base": 512}[size]


# ------------------------------------------------------------------------------------------------ robustness


def truncated_checkpoint(tmp_path: Path) -> list:
    path = save_official_checkpoint(tmp_path / "c.pth", fixture_state_dict("tiny_pretrain"), None)
    path.write_bytes(path.read_bytes()[:100_000])
    return ["--checkpoint", path, "--original-config", fixture_config_path("tiny_pretrain")]


def corrupt_checkpoint(tmp_path: Path) -> list:
    (tmp_path / "c.safetensors").write_bytes(os.urandom(4096))
    return ["--checkpoint", tmp_path / "c.safetensors", "--original-config", fixture_config_path("tiny_pretrain")]


def vit_checkpoint(tmp_path: Path) -> list:
    state_dict = {
        "cls_token": torch.zeros(1, 1, 64),
        "patch_embed.proj.weight": torch.zeros(64, 3, 16, 16),
        "blocks.0.attn.qkv.weight": torch.zeros(192, 64),
        "head.weight": torch.zeros(10, 64),
    }
    torch.save({"model": state_dict}, tmp_path / "vit.pth")
    return ["--checkpoint", tmp_path / "vit.pth"]


def videomae_checkpoint(tmp_path: Path) -> list:
    state_dict = {
        "encoder.patch_embed.proj.weight": torch.zeros(64, 3, 2, 16, 16),
        "encoder.blocks.0.attn.qkv.weight": torch.zeros(192, 64),
        "decoder.blocks.0.attn.qkv.weight": torch.zeros(96, 32),
        "mask_token": torch.zeros(1, 1, 32),
    }
    save_file(state_dict, tmp_path / "videomae.safetensors")
    return ["--checkpoint", tmp_path / "videomae.safetensors"]


def edited_checkpoint(tmp_path: Path, edit) -> list:
    state_dict = fixture_state_dict("tiny_pretrain")
    edit(state_dict)
    save_file(state_dict, tmp_path / "edited.safetensors")
    return ["--checkpoint", tmp_path / "edited.safetensors", "--original-config", fixture_config_path("tiny_pretrain")]


@pytest.mark.parametrize(
    "make_options, message",
    [
        (truncated_checkpoint, r"c\.pth is not a readable PyTorch checkpoint \(truncated or corrupt\?\)"),
        (corrupt_checkpoint, r"c\.safetensors is not a readable safetensors file \(truncated or corrupt\?\)"),
        (vit_checkpoint, r"not an official AVF-MAE\+\+ state dict: it has no 'encoder\.patch_embed\.proj\.weight'"),
        (
            videomae_checkpoint,
            r"no an audio encoder .* video-only ViT / VideoMAE-style checkpoint cannot be converted",
        ),
        (
            lambda tmp_path: edited_checkpoint(
                tmp_path, lambda sd: sd.update({"encoder.blocks.0.extra.weight": torch.ones(64)})
            ),
            r"1 official keys have no mapping .*encoder\.blocks\.0\.extra\.weight",
        ),
        (
            lambda tmp_path: edited_checkpoint(tmp_path, lambda sd: sd.pop("encoder_fusion.norm_audio.bias")),
            r"1 parameters of the pretraining model have no official source: .*audio_aggregation\.attention_norm\.bias",
        ),
        (
            lambda tmp_path: ["--checkpoint", OFFICIAL / "tiny_finetune" / "state_dict.safetensors", "--size", "base"],
            r"Size 'base' has hidden size 512 and 10 video / 10 audio layers, but the checkpoint has hidden size 64",
        ),
        (
            lambda tmp_path: ["--checkpoint", OFFICIAL / "tiny_finetune" / "state_dict.safetensors"],
            r"Hidden size 64 is not one of the released sizes .* --original-config",
        ),
        (
            lambda tmp_path: [*fixture_options("tiny_finetune"), "--task", "pretraining"],
            r"fine-tuned \(classification\) checkpoint has no decoders",
        ),
        (
            lambda tmp_path: [*fixture_options("tiny_finetune"), "--num-labels", "11"],
            r"number of classes does not agree: num_labels 11, the existing classification head 7",
        ),
        (
            lambda tmp_path: ["--checkpoint", tmp_path / "absent.pth"],
            r"No checkpoint file at .*absent\.pth",
        ),
    ],
    ids=[
        "truncated",
        "corrupt",
        "vit",
        "videomae",
        "extra-key",
        "missing-key",
        "wrong-size",
        "custom-size",
        "wrong-task",
        "wrong-num-labels",
        "absent",
    ],  # fmt: skip
)
def test_bad_inputs_exit_non_zero_with_a_clear_error_and_leave_nothing(make_options, message, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    options = make_options(inputs)
    before = {path.name for path in inputs.iterdir()}
    status = convert(*options, "--output-dir", tmp_path / "converted" / "model")
    err = capsys.readouterr().err
    assert status == 1
    assert "avfmae convert: error: " in err
    assert re.search(message, err), err
    assert_nothing_left(tmp_path, {"inputs"})
    assert_nothing_left(inputs, before)


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    assert convert(*fixture_options("tiny_finetune"), "--output-dir", output) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [path.name for path in output.iterdir()] == ["notes.txt"]
    assert convert(*fixture_options("tiny_finetune"), "--output-dir", output, "--overwrite") == 0
    assert "notes.txt" not in {path.name for path in output.iterdir()}
    assert_nothing_left(tmp_path, {"out"})


def test_invalid_option_values_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert("--checkpoint", "x.pth", "--size", "giant")
    assert exit_info.value.code == 2 and "invalid choice: 'giant'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert("--checkpoint", "x.pth", "--eval-result", "uar")
    assert "expected METRIC=VALUE" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ publishing


@pytest.fixture
def fake_hub(monkeypatch):
    hub = SimpleNamespace(repos=[], commits=[])

    def create_repo(self, repo_id, **kwargs):
        hub.repos.append(repo_id)
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {operation.path_in_repo: Path(operation.path_or_fileobj).read_bytes() for operation in operations}
        hub.commits.append(SimpleNamespace(repo_id=repo_id, files=files, message=commit_message))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return hub


@pytest.mark.parametrize("with_output_dir", [True, False])
def test_push_to_hub_makes_one_commit_of_the_whole_folder(with_output_dir, fake_hub, tmp_path, capsys):
    output = ["--output-dir", tmp_path / "out"] if with_output_dir else []
    status = convert(*fixture_options("tiny_finetune"), "--id2label", "a,b,c,d,e,f,g", "--dataset", "DFEW",
                     "--eval-result", "uar=61.5", "--eval-result", "war=74.2", "--base-model", "someone/avf-mae-pp-base",
                     "--push-to-hub", "someone/avf-mae-pp-tiny-dfew", *output)  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0 and "Published: https://huggingface.co/someone/avf-mae-pp-tiny-dfew/commit/0123abc" in out
    assert fake_hub.repos == ["someone/avf-mae-pp-tiny-dfew"] and len(fake_hub.commits) == 1
    files = fake_hub.commits[0].files
    assert {"config.json", "model.safetensors", "README.md", "configuration_avfmae.py", "modeling_avfmae.py"} <= set(
        files
    )
    card = files["README.md"].decode()
    assert "base_model: someone/avf-mae-pp-base" in card and "value: 61.5" in card and "name: DFEW" in card
    assert 'from_pretrained("someone/avf-mae-pp-tiny-dfew", trust_remote_code=True' in card
    if with_output_dir:
        assert (tmp_path / "out" / "model.safetensors").read_bytes() == files["model.safetensors"]
    else:
        assert_nothing_left(tmp_path)


# ------------------------------------------------------------------------------------------------ entry points


@pytest.mark.slow
def test_console_script_module_and_modeling_script_reach_the_same_command(tmp_path):
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["options.entry_points"]["console_scripts"].strip() == "avfmae = avfmae_hf.cli:main"

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    help_text = subprocess.run(
        [sys.executable, "modeling/convert_avfmae_original_to_hf.py", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert "--checkpoint PATH" in help_text and "--unsafe-pickle" in help_text and "MAFW (11 classes)" in help_text

    completed = subprocess.run(
        [sys.executable, "-m", "avfmae_hf", "convert", *map(str, fixture_options("tiny_finetune")),
         "--reference-dir", str(OFFICIAL / "tiny_finetune"), "--output-dir", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "ok   reference logits" in completed.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_library_function_returns_the_same_report(tmp_path):
    result = convert_checkpoint(
        OFFICIAL / "tiny_finetune" / "state_dict.safetensors",
        tmp_path / "out",
        original_config=json.loads(fixture_config_path("tiny_finetune").read_text())["constructor_kwargs"],
        reference_dir=OFFICIAL / "tiny_finetune",
    )
    assert result.verification.ok and result.task == "classification" and result.output_dir == tmp_path / "out"
    assert result.num_parameters == 1_077_647 and len(result.report.mapped) == 398


class ProcessorOnAFullDisk:
    def save_pretrained(self, folder):
        (Path(folder) / "processor_config.json").write_text("{")
        raise OSError(28, "No space left on device")


def test_a_failure_while_writing_leaves_no_partial_folder(tmp_path):
    with pytest.raises(OSError, match="No space left on device"):
        convert_checkpoint(
            OFFICIAL / "tiny_finetune" / "state_dict.safetensors",
            tmp_path / "models" / "out",
            original_config=json.loads(fixture_config_path("tiny_finetune").read_text())["constructor_kwargs"],
            processor=ProcessorOnAFullDisk(),
        )
    assert_nothing_left(tmp_path)


# ------------------------------------------------------------------------------------------------ predict, extract-features, demo


@pytest.fixture(scope="module")
def tiny_classifier_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tiny_config(id2label={0: "anger", 1: "happiness", 2: "neutral"})).eval()
    folder = tmp_path_factory.mktemp("cli_models") / "tiny-classifier"
    export_checkpoint(model, folder, processor=AVFMAEProcessor.for_model_config(model.config))
    return folder


@pytest.fixture(scope="module")
def tiny_pretraining_folder(tmp_path_factory):
    model = AVFMAEForPreTraining(tiny_config()).eval()
    folder = tmp_path_factory.mktemp("cli_models") / "tiny-pretraining"
    export_checkpoint(model, folder, processor=AVFMAEProcessor.for_model_config(model.config))
    return folder


def predict(*options) -> int:
    return cli.main(["predict", *map(str, options)])


def test_predict_prints_each_video_and_writes_json_csv_and_plots(
    tiny_classifier_folder, processor_index_clips, tmp_path, capsys
):
    long_video, short_video = processor_index_clips["25fps"], processor_index_clips["short"]
    status = predict(long_video, short_video, "--model", tiny_classifier_folder, "--top-k", "2", "--window-hop", "16",
                     "--json", tmp_path / "s.json", "--csv", tmp_path / "s.csv", "--plot", tmp_path / "plots",
                     "--num-workers", "0")  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith(f"{long_video}: ") and lines[0].split("[")[0].count(" 0.") == 2
    assert lines[1].startswith(f"{short_video}: ") and "shorter than one window: padded" in lines[1]
    records = json.loads((tmp_path / "s.json").read_text())
    assert [record["video"] for record in records] == [str(long_video), str(short_video)]
    assert set(records[0]) == {"video", "scores", "windows", "face_found"} and records[1]["padded"] is True
    windows = records[0]["windows"]
    assert len(windows) > 1 and set(windows[0]) == {"start", "end", "scores"}
    assert windows[0]["start"] == 0.0 and windows[0]["end"] == 2.56  # to the millisecond, not float32 noise
    for label, score in records[0]["scores"].items():  # the video's score: the mean over its windows
        assert score == pytest.approx(sum(w["scores"][label] for w in windows) / len(windows), abs=1e-6)
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "video,window,start,end,anger,happiness,neutral,face_found"
    assert len(rows) == 1 + (1 + len(windows)) + (1 + 1) and rows[1].split(",")[1] == "all"
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == [
        "000_index_25fps.mp4.png", "001_index_short.mp4.png"
    ]  # fmt: skip


def test_predict_reports_each_bad_file_and_keeps_the_others(tiny_classifier_folder, tmp_path, capsys):
    video = sample_video_path()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01not a video" * 100)
    status = predict(video, tmp_path / "missing.mp4", corrupt, video, "--model", tiny_classifier_folder,
                     "--json", tmp_path / "s.json")  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1
    assert [line.split(":")[0] for line in captured.out.strip().splitlines()] == [str(video), str(video)]
    errors = [line for line in captured.err.splitlines() if line.startswith("avfmae predict:")]
    assert errors[0].startswith(f"avfmae predict: error: item 1 ('{tmp_path / 'missing.mp4'}')")
    assert errors[1].startswith(f"avfmae predict: error: item 2 ('{corrupt}')")
    assert errors[2] == "avfmae predict: 2 of 4 videos failed (see above)."
    assert "Traceback" not in captured.err
    assert len(json.loads((tmp_path / "s.json").read_text())) == 2


def test_predict_advises_its_own_flags(tiny_classifier_folder, processor_no_audio_clip, capsys):
    assert predict(processor_no_audio_clip, "--model", tiny_classifier_folder) == 1
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("avfmae predict: error:")]
    assert "no audio stream" in error and "--missing-audio silence" in error and "missing_audio=" not in error


@pytest.mark.parametrize(
    "options, message",
    [
        (["--window-hop", "0"], "argument --window-hop: must be 1 or more, got 0"),
        (["--window-hop", "-3"], "argument --window-hop: must be 1 or more, got -3"),
        (["--batch-size", "0"], "argument --batch-size: must be 1 or more, got 0"),
        (["--batch-size", "two"], "argument --batch-size: expected a whole number, got 'two'"),
        (["--top-k", "0"], "argument --top-k: must be 1 or more, got 0"),
        (["--num-workers", "-1"], "argument --num-workers: must be 0 or more, got -1"),
        (["--dtype", "int8"], "argument --dtype: choose one of float32, bfloat16, float16, fp32, bf16, fp16"),
        (["--device", "gpu0"], "argument --device: not a torch device: 'gpu0'"),
        (["--video-backend", "opencv"], "argument --video-backend: invalid choice: 'opencv'"),
        (["--sampling-mode", "train"], "argument --sampling-mode: invalid choice: 'train'"),
    ],
)
def test_invalid_predict_options_are_usage_errors(options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict(sample_video_path(), "--model", "unused", *options)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_predict_checks_the_model_and_the_outputs_before_the_work(
    tiny_classifier_folder, tiny_pretraining_folder, tmp_path, capsys, monkeypatch
):
    def no_work(*args, **kwargs):
        raise AssertionError("videos were processed")

    monkeypatch.setattr(cli, "iter_predictions", no_work)
    video = sample_video_path()
    cases = [
        (["--model", tiny_pretraining_folder], "AVFMAEForPreTraining without a trained classification head"),
        (["--model", tmp_path / "tiny-clasifier"], f"no such folder: {tmp_path / 'tiny-clasifier'}"),
        (["--model", tiny_classifier_folder, "--top-k", "4"], "--top-k must be between 1 and the model's 3 labels"),
        (["--model", tiny_classifier_folder, "--json", tmp_path / "absent" / "s.json"], "does not exist"),
        (["--model", tiny_classifier_folder, "--csv", tmp_path], "is a folder; give a file name"),
        (["--model", tiny_classifier_folder, "--audio", "a.wav", "--audio", "b.wav"], "--audio was given 2 times"),
    ]
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text('{"model_type": "vit"}')
    cases.append((["--model", tmp_path / "vit"], "holds a 'vit' model, not AVF-MAE++"))
    for options, message in cases:
        assert predict(video, *options) == 1, options
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("avfmae")]
        assert len(err) == 1 and err[0].startswith("avfmae predict: error: ") and message in err[0], err


def test_plot_without_matplotlib_says_how_to_install_it(tiny_classifier_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert predict(sample_video_path(), "--model", tiny_classifier_folder, "--plot", tmp_path / "plots") == 1
    assert 'need matplotlib: pip install "avfmae-hf[plot]"' in capsys.readouterr().err


def test_unexpected_errors_print_one_line_unless_debug(tiny_classifier_folder, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "iter_predictions", broken)
    assert predict(sample_video_path(), "--model", tiny_classifier_folder) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    err = [line for line in err if not line.startswith("Loading weights")]  # transformers' own progress bar
    assert err == ["avfmae predict: unexpected error: RuntimeError: boom (--debug shows the traceback)"]
    with pytest.raises(RuntimeError, match="boom"):
        predict(sample_video_path(), "--model", tiny_classifier_folder, "--debug")


def test_predict_in_bfloat16_with_workers_and_silence_for_frame_folders(
    tiny_classifier_folder, processor_frame_folder, capsys
):
    status = predict(processor_frame_folder, sample_video_path(), "--model", tiny_classifier_folder,
                     "--dtype", "bf16", "--device", "cpu", "--num-workers", "2", "--missing-audio", "silence",
                     "--video-backend", "decord", "--batch-size", "1")  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith(f"{processor_frame_folder}: ") and lines[1].startswith(f"{sample_video_path()}: ")


def test_extract_features_writes_pooled_and_per_window_features(
    tiny_pretraining_folder, processor_index_clips, tmp_path, capsys
):
    output = tmp_path / "features.safetensors"
    videos = [processor_index_clips["25fps"], processor_index_clips["short"]]
    status = cli.main(["extract-features", *map(str, videos), "--model", str(tiny_pretraining_folder),
                       "--output", str(output), "--window-hop", "32"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    tensors = load_file(output)
    assert tensors["features"].shape == (2, 64)
    window_video = tensors["window_video"].tolist()
    assert window_video[-1] == 1 and window_video.count(1) == 1 and window_video.count(0) > 1
    assert tensors["window_features"].shape == (len(window_video), 64)
    torch.testing.assert_close(tensors["features"][0], tensors["window_features"][: window_video.count(0)].mean(0))
    assert tensors["window_start"][0] == 0 and tensors["window_end"][0] == pytest.approx(64 / 25)
    with safe_open(output, "pt") as file:
        assert json.loads(file.metadata()["videos"]) == [str(video) for video in videos]


@pytest.mark.slow
def test_demo_runs_offline_and_explains_an_untrained_model(tmp_path, capsys):
    assert cli.main(["demo", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "randomly initialised: nothing is downloaded" in out
    assert "chance, not a prediction" in out and "avfmae convert" in out
    assert "face found:  yes" in out and "features:    1024 numbers per window" in out
    assert "L2 norm" not in out
    assert {path.name for path in tmp_path.iterdir()} == {
        "face_crops.png", "spectrogram.png", "emotions_over_time.png"
    }  # fmt: skip


def test_demo_reports_a_bad_video_in_one_line(tiny_classifier_folder, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01not a video" * 100)
    assert cli.main(["demo", "--video", str(corrupt), "--model", str(tiny_classifier_folder)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("avfmae")]
    assert len(err) == 1 and "corrupt.mp4" in err[0] and "Traceback" not in err[0]
