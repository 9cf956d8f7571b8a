import logging
import shutil
import zipfile
from argparse import Namespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from avfmae_hf import AVFMAEConfig, AVFMAEForVideoClassification
from avfmae_hf.checkpoint_avfmae import (
    CheckpointError,
    VerificationReport,
    build_config,
    classifier_labels,
    compare_with_reference,
    load_original_checkpoint,
    verify_export,
)
from avfmae_hf.convert_avfmae import convert_original_state_dict
from avfmae_hf.hub_avfmae import export_checkpoint
from avfmae_hf.labels_avfmae import parse_id2label
from avfmae_hf.original_config_avfmae import config_from_original, describe_original_state_dict
from tests.official_checkpoints import (
    OFFICIAL,
    fixture_constructor_kwargs,
    fixture_state_dict,
    real_variant_meta_state_dict,
    save_official_checkpoint,
    training_args,
)


MAFW = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety"]
MAFW += ["helplessness", "disappointment"]


def record_unpickling(marker: str):
    """Stands for code a malicious pickle would run: it leaves a file behind when called."""
    with open(marker, "w") as handle:
        handle.write("unpickled")
    return marker


class RunsCodeWhenUnpickled:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (record_unpickling, (self.marker,))


# ------------------------------------------------------------------------------------------------ safe loading


def test_official_checkpoint_loads_safely_memory_mapped_keeping_args(tmp_path, monkeypatch):
    state_dict = fixture_state_dict("tiny_finetune")
    path = save_official_checkpoint(tmp_path / "checkpoint-best.pth", state_dict, training_args("classification"))
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    checkpoint = load_original_checkpoint(path)

    assert calls == [{"map_location": "cpu", "mmap": True, "weights_only": True}]
    assert checkpoint.dropped == ["optimizer", "scaler"] and checkpoint.epoch == 99
    assert isinstance(checkpoint.args, Namespace)
    # numpy scalars become Python numbers the strict config accepts
    assert type(checkpoint.args.batch_size) is int and type(checkpoint.args.lr) is float
    assert checkpoint.args.data_set == "DFEW" and checkpoint.args.opt_betas == [0.9, 0.95]
    assert checkpoint.state_dict.keys() == state_dict.keys()
    assert all(torch.equal(checkpoint.state_dict[key], value) for key, value in state_dict.items())


def test_numpy_1_pickle_names_are_allowed(tmp_path):
    path = save_official_checkpoint(tmp_path / "new.pth", fixture_state_dict("tiny_finetune"), training_args("x"))
    old = tmp_path / "numpy1.pth"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            target.writestr(info, data)
    assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(old)
    assert load_original_checkpoint(old).args.lr == 1.5e-4


def test_numpy_arrays_and_dtypes_in_args_are_allowed(tmp_path):
    args = training_args("classification", mean=np.array([0.485, 0.456, 0.406]), dtype=np.dtype("float32"))
    path = save_official_checkpoint(tmp_path / "c.pth", fixture_state_dict("tiny_finetune"), args)
    assert load_original_checkpoint(path).args.mean == [0.485, 0.456, 0.406]


def test_objects_outside_the_allow_list_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    state_dict = fixture_state_dict("tiny_finetune")
    path = save_official_checkpoint(
        tmp_path / "c.pth", state_dict, training_args("x"), extra=RunsCodeWhenUnpickled(str(marker))
    )
    with pytest.raises(CheckpointError, match=r"record_unpickling.*--unsafe-pickle"):
        load_original_checkpoint(path)
    assert not marker.exists()


def test_unsafe_pickle_is_an_explicit_opt_in_with_a_warning(tmp_path, caplog):
    marker = tmp_path / "ran"
    state_dict = fixture_state_dict("tiny_finetune")
    path = save_official_checkpoint(
        tmp_path / "c.pth", state_dict, training_args("x"), extra=RunsCodeWhenUnpickled(str(marker))
    )
    with caplog.at_level(logging.WARNING):
        checkpoint = load_original_checkpoint(path, unsafe_pickle=True)
    assert marker.exists() and "extra" in checkpoint.dropped
    assert any("arbitrary code" in record.getMessage() for record in caplog.records)


def test_bare_state_dicts_load_from_pth_and_safetensors(tmp_path):
    state_dict = fixture_state_dict("tiny_pretrain")
    torch.save({f"module.{key}": value for key, value in state_dict.items()}, tmp_path / "bare.pth")
    from_pth = load_original_checkpoint(tmp_path / "bare.pth")
    from_safetensors = load_original_checkpoint(OFFICIAL / "tiny_pretrain" / "state_dict.safetensors")
    for checkpoint in (from_pth, from_safetensors):
        assert checkpoint.args is None and checkpoint.dropped == []
        assert checkpoint.state_dict.keys() == state_dict.keys()


def truncated(tmp_path, name):
    source = tmp_path / f"whole{name[-5:]}"
    if name.endswith(".safetensors"):
        shutil.copy(OFFICIAL / "tiny_finetune" / "state_dict.safetensors", source)
    else:
        save_official_checkpoint(source, fixture_state_dict("tiny_finetune"), training_args("x"))
    data = source.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    return tmp_path / name


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp_path: truncated(tmp_path, "truncated.pth"),
        lambda tmp_path: truncated(tmp_path, "truncated.safetensors"),
        lambda tmp_path: (
            (tmp_path / "garbage.pth").write_bytes(b"\x80\x02not a pickle" * 50) and tmp_path / "garbage.pth"
        ),
        lambda tmp_path: (tmp_path / "empty.pth").write_bytes(b"") or tmp_path / "empty.pth",
    ],
    ids=["truncated-pth", "truncated-safetensors", "garbage", "empty"],
)
def test_unreadable_files_raise_a_clear_error(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=r"not a readable .*\(truncated or corrupt\?\)"):
        load_original_checkpoint(path)


def test_missing_file_and_checkpoint_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint file"):
        load_original_checkpoint(tmp_path / "absent.pth")
    torch.save({"optimizer": {"state": {}}, "epoch": 3}, tmp_path / "optimizer_only.pth")
    with pytest.raises(CheckpointError, match="has no model weights"):
        load_original_checkpoint(tmp_path / "optimizer_only.pth")


# ------------------------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
@pytest.mark.parametrize("size", ["base", "large", "huge"])
def test_size_auto_reads_the_released_variants_from_their_weights(task, size):
    architecture = describe_original_state_dict(real_variant_meta_state_dict(task, size))
    assert architecture.size == size and architecture.task == (
        "pretraining" if task == "pretrain" else "classification"
    )
    detected = build_config(architecture)
    named = build_config(architecture, size=size)
    released = AVFMAEConfig.from_size(size, **({"num_labels": 11} if task == "finetune" else {}))
    assert detected.to_diff_dict() == named.to_diff_dict() == released.to_diff_dict()


def test_training_arguments_win_for_what_they_specify():
    architecture = describe_original_state_dict(real_variant_meta_state_dict("pretrain", "huge"))
    args = Namespace(
        model="pretrain_hicmae_dim768_patch16_160_a256",
        encoder_depth=None,  # None: the registered default, i.e. the weights decide
        mask_ratio=0.8,
        mask_ratio_audio=0.75,
        decoder_mask_type="random",
        return_intermediate_features=[3, 8, 14],
        loss_weight=0.01,
        batch_size=100,
    )
    config = build_config(architecture, args=args)
    assert config.video_config.num_hidden_layers == 15
    assert (config.video_config.mask_ratio, config.audio_config.mask_ratio) == (0.8, 0.75)
    assert config.video_config.decoder_masking_strategy == "random"
    assert tuple(config.video_config.intermediate_layer_indices) == (3, 8, 14)
    assert config.contrastive_loss_weight == 0.01


def test_a_named_size_must_match_the_weights():
    architecture = describe_original_state_dict(real_variant_meta_state_dict("finetune", "huge"))
    with pytest.raises(
        ValueError, match=r"Size 'base' has hidden size 512 .* checkpoint has hidden size 768 .*huge size"
    ):
        build_config(architecture, size="base")


def test_sizes_without_a_released_variant_need_the_constructor_arguments():
    architecture = describe_original_state_dict(fixture_state_dict("tiny_pretrain"))
    assert architecture.size is None
    with pytest.raises(ValueError, match=r"Hidden size 64 is not one of the released sizes.*--original-config"):
        build_config(architecture)
    config = build_config(architecture, original_config=fixture_constructor_kwargs("tiny_pretrain"))
    assert config.video_config.num_attention_heads == 2
    with pytest.raises(ValueError, match="not both"):
        build_config(architecture, size="base", original_config=fixture_constructor_kwargs("tiny_pretrain"))


# ------------------------------------------------------------------------------------------------ labels


def test_labels_follow_the_official_orders_and_require_names_where_unknown():
    pretraining = describe_original_state_dict(fixture_state_dict("tiny_pretrain"))
    finetuned = describe_original_state_dict(fixture_state_dict("tiny_finetune"))  # 7-class head
    assert list(classifier_labels(pretraining, "classification", dataset="mafw").values()) == MAFW
    assert list(classifier_labels(pretraining, "classification", dataset="CREMA-D", num_labels=4).values()) == [
        "ANG", "HAP", "NEU", "SAD",
    ]  # fmt: skip
    assert classifier_labels(pretraining, "pretraining") is None
    with pytest.raises(ValueError, match=r"DFEW \(7 classes\) as integer labels .*pass id2label"):
        classifier_labels(finetuned, "classification", dataset="DFEW")
    # the checkpoint's own arguments name the dataset
    with pytest.raises(ValueError, match=r"training arguments name the dataset DFEW.*pass id2label"):
        classifier_labels(finetuned, "classification", args=training_args("classification"))
    names = parse_id2label("a, b,c,d,e,f,g")
    assert classifier_labels(finetuned, "classification", id2label=names, dataset="DFEW") == dict(enumerate("abcdefg"))
    assert classifier_labels(finetuned, "classification") == {i: f"LABEL_{i}" for i in range(7)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_labels": 5}, r"does not agree: num_labels 5, the existing classification head 7"),
        ({"id2label": {0: "a", 1: "b"}}, "does not agree: id2label 2"),
        ({"dataset": "MAFW"}, r"trains MAFW with 11 or 43 classes, not 7"),
        ({"id2label": {0: "a", 2: "b"}}, "must number its labels 0..n-1"),
    ],
)
def test_contradicting_label_options_are_errors(kwargs, message):
    finetuned = describe_original_state_dict(fixture_state_dict("tiny_finetune"))
    with pytest.raises(ValueError, match=message):
        classifier_labels(finetuned, "classification", **kwargs)


def test_pretraining_has_no_labels_and_a_new_classifier_needs_some():
    pretraining = describe_original_state_dict(fixture_state_dict("tiny_pretrain"))
    with pytest.raises(ValueError, match="dataset describe a classifier"):
        classifier_labels(pretraining, "pretraining", dataset="MAFW")
    with pytest.raises(ValueError, match="Name the classes"):
        classifier_labels(pretraining, "classification")


def test_id2label_parsing():
    assert parse_id2label('{"1": "b", "0": "a"}') == {1: "b", 0: "a"}
    assert parse_id2label('["a", "b"]') == {0: "a", 1: "b"}
    assert parse_id2label("anger, joy") == {0: "anger", 1: "joy"}


# ------------------------------------------------------------------------------------------------ verification


def converted_finetune_model() -> AVFMAEForVideoClassification:
    config = config_from_original(fixture_constructor_kwargs("tiny_finetune"))
    model = AVFMAEForVideoClassification(config).eval()
    model.load_state_dict(convert_original_state_dict(fixture_state_dict("tiny_finetune"), config))
    return model


def test_verification_passes_on_a_faithful_folder_and_names_a_tampered_tensor(tmp_path):
    model = converted_finetune_model()
    export_checkpoint(model, tmp_path / "good")
    report = verify_export(model, tmp_path / "good")
    assert report.ok and [name for name, _, _ in report.checks] == ["saved weights", "forward"]

    shutil.copytree(tmp_path / "good", tmp_path / "tampered")
    weights = load_file(tmp_path / "tampered" / "model.safetensors")
    key = "avfmae.fusion.overall_projection.weight"
    weights[key] = weights[key] + 1e-7
    save_file(weights, tmp_path / "tampered" / "model.safetensors", metadata={"format": "pt"})
    report = verify_export(model, tmp_path / "tampered")
    assert not report.ok and key in report.summary() and "FAIL saved weights" in report.summary()


def test_reference_comparison_fails_on_any_tensor_out_of_tolerance(tmp_path):
    model = converted_finetune_model()
    report = VerificationReport()
    compare_with_reference(model, OFFICIAL / "tiny_finetune", report)
    assert report.ok and "fusion.in.video" in report.not_compared

    reference = tmp_path / "reference"
    shutil.copytree(OFFICIAL / "tiny_finetune", reference)
    outputs = load_file(reference / "outputs.safetensors")
    outputs["feature"][0, 0] += 2e-4
    save_file(outputs, reference / "outputs.safetensors")
    report = VerificationReport()
    compare_with_reference(model, reference, report)
    failed = [name for name, passed, _ in report.checks if not passed]
    assert failed == ["reference feature"] and not report.ok


def test_reference_of_another_task_is_a_failed_check():
    report = VerificationReport()
    compare_with_reference(converted_finetune_model(), OFFICIAL / "tiny_pretrain", report)
    assert not report.ok
