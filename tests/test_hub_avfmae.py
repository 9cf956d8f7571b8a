import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import EvalResult, HfApi, ModelCard
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForVideoClassification,
    AutoProcessor,
)
from transformers.dynamic_module_utils import check_imports, get_imports, get_relative_imports

from avfmae_hf import (
    AVFMAEConfig,
    AVFMAEForPreTraining,
    AVFMAEForVideoClassification,
    AVFMAEModel,
    AVFMAEProcessor,
)
from avfmae_hf.checkpoint_avfmae import random_inputs
from avfmae_hf.convert_avfmae import convert_original_state_dict
from avfmae_hf.hub_avfmae import (
    CITATION,
    build_model_card,
    export_checkpoint,
    push_to_hub,
    remote_code_auto_map,
    remote_code_files,
    staged_directory,
)
from avfmae_hf.original_config_avfmae import config_from_original
from tests.official_checkpoints import fixture_constructor_kwargs, fixture_state_dict
from tests.test_processor_hub_code import ALLOWED, PROCESSOR_MODULES
from tests.tiny_configs import tiny_config


FULL_AUTO_MAP = {
    "AutoConfig": "configuration_avfmae.AVFMAEConfig",
    "AutoModel": "modeling_avfmae.AVFMAEModel",
    "AutoModelForPreTraining": "modeling_avfmae.AVFMAEForPreTraining",
    "AutoModelForVideoClassification": "modeling_avfmae.AVFMAEForVideoClassification",
}
CODE_FILES = {"configuration_avfmae.py", "masking_avfmae.py", "modeling_avfmae.py"}
PROCESSOR_CODE_FILES = set(PROCESSOR_MODULES)
# an exported classifier with its processor also carries its pipeline (config.json custom_pipelines)
PIPELINE_CODE_FILES = {"pipeline_avfmae.py"}


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return AVFMAEForVideoClassification(tiny_config(id2label={0: "anger", 1: "joy", 2: "calm"})).eval()


@pytest.fixture(scope="module")
def classifier_folder(classifier, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "avf-mae-pp-tiny"
    export_checkpoint(classifier, folder, processor=AVFMAEProcessor.for_model_config(classifier.config))
    return folder


def tiny_clip(seed: int = 0) -> dict:
    """Raw frames and a waveform for the tiny models' processor (16 frames of 16x16 after processing)."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (20, 24, 24, 3), dtype=torch.uint8, generator=generator)
    return {"videos": frames.numpy(), "audio": torch.randn(8000, generator=generator).numpy(), "sampling_rate": 16000}


def test_export_writes_weights_config_with_full_auto_map_code_and_card(classifier, classifier_folder):
    files = {path.name for path in classifier_folder.iterdir()}
    expected = {"config.json", "model.safetensors", "README.md", "processor_config.json"}
    assert files == expected | CODE_FILES | PROCESSOR_CODE_FILES | PIPELINE_CODE_FILES
    assert json.loads((classifier_folder / "config.json").read_text())["auto_map"] == FULL_AUTO_MAP
    card = (classifier_folder / "README.md").read_text()
    assert "processor = AutoProcessor.from_pretrained(" in card
    assert all(f"`{name}`" in card for name in CODE_FILES | PROCESSOR_CODE_FILES)
    assert remote_code_auto_map() == FULL_AUTO_MAP
    assert remote_code_files() == sorted(CODE_FILES)
    # the export's remote-code settings do not leak into later ordinary saves
    assert AVFMAEForVideoClassification._auto_class is None and AVFMAEConfig._auto_class is None
    assert getattr(classifier.config, "auto_map", None) is None


def test_ordinary_save_after_an_export_stays_code_free(classifier, classifier_folder, tmp_path):
    classifier.save_pretrained(tmp_path)
    assert {path.name for path in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    assert "auto_map" not in json.loads((tmp_path / "config.json").read_text())


def test_large_weights_are_sharded_and_reload_identically(classifier, tmp_path):
    files = export_checkpoint(classifier, tmp_path / "sharded", max_shard_size="300KB")
    shards = [name for name in files if name.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in files
    reloaded = AVFMAEForVideoClassification.from_pretrained(tmp_path / "sharded")
    for key, value in classifier.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key


def test_package_path_loads_every_auto_class_without_flags(classifier, classifier_folder, tmp_path):
    pretraining = AVFMAEForPreTraining(tiny_config()).eval()
    export_checkpoint(pretraining, tmp_path / "pretraining")
    inputs = random_inputs(classifier.config, batch_size=2)
    for folder, auto_class, expected in [
        (classifier_folder, AutoModelForVideoClassification, AVFMAEForVideoClassification),
        (classifier_folder, AutoModel, AVFMAEModel),
        (tmp_path / "pretraining", AutoModelForPreTraining, AVFMAEForPreTraining),
        (tmp_path / "pretraining", AutoModel, AVFMAEModel),
    ]:
        assert type(AutoConfig.from_pretrained(folder)) is AVFMAEConfig
        model = auto_class.from_pretrained(folder).eval()
        assert type(model) is expected, (folder.name, auto_class.__name__)
    reloaded = AutoModelForVideoClassification.from_pretrained(classifier_folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, classifier(**inputs).logits, atol=0, rtol=0)
    assert reloaded.config.id2label == {0: "anger", 1: "joy", 2: "calm"}
    processor = AutoProcessor.from_pretrained(classifier_folder)
    assert type(processor) is AVFMAEProcessor
    processed = processor(**tiny_clip(), return_tensors="pt")
    assert processed["pixel_values"].shape == (1, 16, 3, 16, 16)
    assert processed["audio_values"].shape == (1, 1, 32, 16)
    with torch.no_grad():
        assert classifier(**processed).logits.shape == (1, 3)


def test_remote_code_files_import_only_torch_numpy_transformers_and_each_other(classifier_folder):
    allowed = ALLOWED | set(sys.stdlib_module_names)
    for path in sorted(classifier_folder.glob("*.py")):
        # transformers' own scan looks at every import, also inside functions, and installs must satisfy it
        assert set(get_imports(path)) <= allowed, path.name
        check_imports(path)
        module_level = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                module_level |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                module_level.add(node.module.split(".")[0])
        assert module_level <= allowed, (path.name, module_level - allowed)
        for sibling in get_relative_imports(path):
            assert (classifier_folder / f"{sibling}.py").is_file(), (path.name, sibling)


REMOTE_LOADER = r"""
import importlib.abc
import json
import sys

import_path, folder, inputs_path, clip_path, outputs_path, result_path = json.loads(sys.argv[1])


class BlockPackage(importlib.abc.MetaPathFinder):
    # -I -S already hides the development install (its finder lives in a .pth file); this also hides a regular one
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "avfmae_hf":
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, BlockPackage())
sys.path.extend(import_path)
try:
    import avfmae_hf  # noqa: F401
except ModuleNotFoundError:
    importable = False
else:
    importable = True

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoProcessor

auto_classes = {"AutoConfig": AutoConfig, "AutoModel": AutoModel,
                "AutoModelForVideoClassification": AutoModelForVideoClassification, "AutoProcessor": AutoProcessor}
refusals = {}
for name, auto_class in auto_classes.items():
    try:
        auto_class.from_pretrained(folder)
    except ValueError as error:
        refusals[name] = "trust_remote_code=True" in str(error)
    else:
        refusals[name] = "loaded without trust_remote_code"

torch.set_num_threads(1)
inputs = load_file(inputs_path)
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
backbone = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
classifier = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
clip = load_file(clip_path)
processed = processor(
    videos=clip["frames"].numpy(), audio=clip["audio"].numpy(), sampling_rate=16000, return_tensors="pt"
)
with torch.no_grad():
    outputs = {"pooler_output": backbone(**inputs).pooler_output, "logits": classifier(**inputs).logits}
outputs.update({name: processed[name] for name in ("pixel_values", "audio_values")})
save_file(outputs, outputs_path)
result = {
    "importable": importable,
    "refusals": refusals,
    "classes": {
        name: [type(obj).__name__, type(obj).__module__]
        for name, obj in [
            ("config", config), ("backbone", backbone), ("classifier", classifier), ("processor", processor)
        ]
    },
    "package_in_modules": sorted(name for name in sys.modules if name.split(".")[0] == "avfmae_hf"),
    "id2label": config.id2label,
}
with open(result_path, "w") as handle:
    json.dump(result, handle)
"""


@pytest.mark.slow
def test_remote_code_path_loads_in_a_process_without_the_package(classifier, classifier_folder, tmp_path):
    inputs = random_inputs(classifier.config, batch_size=2)
    save_file(inputs, tmp_path / "inputs.safetensors")
    clip = tiny_clip()
    save_file(
        {"frames": torch.from_numpy(clip["videos"]), "audio": torch.from_numpy(clip["audio"])},
        tmp_path / "clip.safetensors",
    )
    (tmp_path / "remote_loader.py").write_text(REMOTE_LOADER)
    # this process's import path without the folders holding the package (the checkout); -S keeps site-packages'
    # .pth files, among them the development install's import hook, from running
    site_packages = [path for path in sys.path if path and not (Path(path) / "avfmae_hf").exists()]
    arguments = [site_packages, str(classifier_folder), str(tmp_path / "inputs.safetensors")]
    arguments += [str(tmp_path / "clip.safetensors")]
    arguments += [str(tmp_path / "outputs.safetensors"), str(tmp_path / "result.json")]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "HF_HUB_OFFLINE": "1",
    }
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(tmp_path / "remote_loader.py"), json.dumps(arguments)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,  # no one answers transformers' trust prompt
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["importable"] is False and result["package_in_modules"] == []
    assert result["refusals"] == {
        "AutoConfig": True,
        "AutoModel": True,
        "AutoModelForVideoClassification": True,
        "AutoProcessor": True,
    }
    assert result["classes"]["config"][0] == "AVFMAEConfig"
    assert result["classes"]["backbone"][0] == "AVFMAEModel"
    assert result["classes"]["classifier"][0] == "AVFMAEForVideoClassification"
    assert result["classes"]["processor"][0] == "AVFMAEProcessor"
    assert all(module.startswith("transformers_modules.") for _, module in result["classes"].values())
    assert result["id2label"] == {"0": "anger", "1": "joy", "2": "calm"}

    # the same outputs as the package path (a), on the same single thread
    remote = load_file(tmp_path / "outputs.safetensors")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            backbone = AutoModel.from_pretrained(classifier_folder).eval()
            local = {
                "pooler_output": backbone(**inputs).pooler_output,
                "logits": AutoModelForVideoClassification.from_pretrained(classifier_folder).eval()(**inputs).logits,
            }
        processed = AutoProcessor.from_pretrained(classifier_folder)(**clip, return_tensors="pt")
        local.update({name: processed[name] for name in ("pixel_values", "audio_values")})
    finally:
        torch.set_num_threads(threads)
    for name, value in local.items():
        torch.testing.assert_close(remote[name], value, atol=0, rtol=0, msg=name)


@pytest.fixture
def fake_hub(monkeypatch):
    """Replaces the Hub API: records repositories created and commits made (with the committed files' content)."""
    hub = SimpleNamespace(repos=[], commits=[])

    def create_repo(self, repo_id, **kwargs):
        hub.repos.append((repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {operation.path_in_repo: Path(operation.path_or_fileobj).read_bytes() for operation in operations}
        hub.commits.append(SimpleNamespace(repo_id=repo_id, files=files, message=commit_message, kwargs=kwargs))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc", oid="0123abc")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return hub


def test_push_to_hub_publishes_model_processor_code_and_card_in_one_commit(classifier, fake_hub):
    processor = AVFMAEProcessor.for_model_config(classifier.config)
    commit = push_to_hub(classifier, "someone/avf-mae-pp-tiny", processor=processor, private=True)

    assert commit.commit_url.endswith("/commit/0123abc")
    assert fake_hub.repos == [("someone/avf-mae-pp-tiny", {"private": True, "exist_ok": True, "repo_type": "model"})]
    assert len(fake_hub.commits) == 1
    files = fake_hub.commits[0].files
    expected = {"config.json", "model.safetensors", "README.md", "processor_config.json"}
    assert set(files) == expected | CODE_FILES | PROCESSOR_CODE_FILES | PIPELINE_CODE_FILES
    assert json.loads(files["config.json"])["auto_map"] == FULL_AUTO_MAP
    processor_config = json.loads(files["processor_config.json"])
    assert processor_config["auto_map"] == {"AutoProcessor": "processing_avfmae.AVFMAEProcessor"}
    assert processor_config["feature_extractor"]["num_mel_bins"] == 16
    assert fake_hub.commits[0].message == "Upload AVFMAEForVideoClassification"
    assert (
        'from_pretrained("someone/avf-mae-pp-tiny", trust_remote_code=True, revision=' in files["README.md"].decode()
    )


def test_model_cards_carry_metadata_loading_paths_and_citation(classifier, tmp_path):
    results = [
        EvalResult(
            task_type="video-classification",
            dataset_type="mafw",
            dataset_name="MAFW",
            metric_type="uar",
            metric_value=46.05,
        )
    ]
    card = build_model_card(
        classifier, repo_id="someone/tiny", base_model="someone/avf-mae-pp-huge", eval_results=results
    )
    card.save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == (
        "transformers",
        "video-classification",
        "apache-2.0",
    )
    assert {"avfmae", "audio-visual", "emotion-recognition", "custom_code"} <= set(data.tags)
    assert data.base_model == "someone/avf-mae-pp-huge" and data.metrics == ["uar"]
    assert data.eval_results[0].metric_value == 46.05 and data.eval_results[0].dataset_name == "MAFW"
    assert "model-index" in (tmp_path / "README.md").read_text()
    text = card.text
    assert CITATION in text and "CVPR" in text
    assert "import avfmae_hf" in text and 'trust_remote_code=True, revision="<commit sha>"' in text
    assert all(f"`{name}`" in text for name in CODE_FILES)  # every file trust_remote_code runs is named
    assert "0 anger, 1 joy, 2 calm" in text
    assert "## Intended use" in text and "## Limitations and risks" in text

    pretraining_card = build_model_card(AVFMAEForPreTraining(tiny_config()))
    assert pretraining_card.data.pipeline_tag == "feature-extraction"
    assert pretraining_card.data.base_model is None and pretraining_card.data.eval_results is None


def test_pretraining_folder_hands_off_to_a_classifier(tmp_path):
    config = config_from_original(fixture_constructor_kwargs("tiny_pretrain"))
    pretraining = AVFMAEForPreTraining(config).eval()
    pretraining.load_state_dict(convert_original_state_dict(fixture_state_dict("tiny_pretrain"), config))
    export_checkpoint(pretraining, tmp_path / "pretraining")

    classifier, info = AVFMAEForVideoClassification.from_pretrained(
        tmp_path / "pretraining", num_labels=4, output_loading_info=True
    )
    head = {"fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}
    assert set(info["missing_keys"]) == head | {"avfmae.video_layer_weights", "avfmae.audio_layer_weights"}
    decoders = {key for key in pretraining.state_dict() if key.startswith(("video_decoder.", "audio_decoder."))}
    assert set(info["unexpected_keys"]) == decoders and not info["mismatched_keys"]
    assert classifier.config.num_labels == 4 and classifier.classifier.weight.shape == (4, 128)

    encoders_and_fusion = pretraining.avfmae.state_dict()
    handed_off = classifier.avfmae.state_dict()
    assert {key.split(".")[0] for key in encoders_and_fusion} >= {"video_encoder", "audio_encoder", "fusion"}
    for key, value in encoders_and_fusion.items():
        assert torch.equal(handed_off[key], value), key
    inputs = random_inputs(classifier.config, batch_size=2)
    with torch.no_grad():
        assert classifier.eval()(**inputs).logits.shape == (2, 4)

    via_auto = AutoModelForVideoClassification.from_pretrained(tmp_path / "pretraining", num_labels=4)
    assert type(via_auto) is AVFMAEForVideoClassification
    assert torch.equal(
        via_auto.avfmae.fusion.overall_projection.weight, pretraining.avfmae.fusion.overall_projection.weight
    )


def test_staged_directory_leaves_nothing_behind_on_error(tmp_path):
    target = tmp_path / "new" / "nested" / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with staged_directory(target) as staging:
            (staging / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="not empty"):
        with staged_directory(existing):
            pass
    with pytest.raises(RuntimeError):
        with staged_directory(existing, overwrite=True) as staging:
            (staging / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert [path.name for path in tmp_path.iterdir()] == ["existing"]
    assert [path.name for path in existing.iterdir()] == ["keep.txt"]
    with staged_directory(existing, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert [path.name for path in tmp_path.iterdir()] == ["existing"]
    assert [path.name for path in existing.iterdir()] == ["new.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert existing.stat().st_mode & 0o777 == 0o777 & ~umask  # an ordinary folder, not a private temporary one


def test_exporting_a_model_of_another_class_names_the_exportable_ones():
    from avfmae_hf.hub_avfmae import carrying_remote_code
    from tests.tiny_configs import tiny_config

    class Renamed(AVFMAEModel):
        pass

    with pytest.raises(TypeError, match=r"Cannot export a Renamed; expected one of \[.*'AVFMAEModel'"):
        with carrying_remote_code(Renamed(tiny_config())):
            pass
