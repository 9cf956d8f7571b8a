# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""transformers' own common test mixins (`ModelTesterMixin`, `ProcessorTesterMixin`, `VideoProcessingTestMixin`,
...) for the installed transformers version.

They are not part of the transformers wheel, but the source distribution of the same version on the package registry
holds them. The first use fetches it with pip (the package registry is the one network source the tests may use),
unpacks its `tests/` folder (without the per-model tests) into a cache as the package `transformers_tests`, and
imports from there; later runs read the cache. Nothing is copied into this project.

The source distribution leaves out three sub-packages that the common files import. Their places are taken by empty
modules written here, so the rest can be imported: `exporters.test_export` (the `torch.export` tests of
`ExportTesterMixin` do not run from here; `tests/test_modeling_avfmae.py` exports the model itself),
`generation.test_utils` (AVF-MAE++ does not generate text) and `utils.test_configuration_utils` (its
`config_common_kwargs` list of generic config arguments is empty here, so `ConfigTester` checks AVF-MAE++'s own
arguments only). `test_processing_common` also imports `url_to_local_path` from transformers' CI scripts, which map
the URLs of its sample media to pre-downloaded files; here it returns the URL unchanged, so the mixin tests that need
those remote media cannot run offline (the test suites that use the mixins list them as exceptions).

Set `AVFMAE_TRANSFORMERS_TESTS_CACHE` to choose the cache folder (default `~/.cache/avfmae-hf/transformers-tests`).
"""

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers
from filelock import FileLock


PACKAGE = "transformers_tests"
# Sub-packages missing from the source distribution, and the names imported from them (see the module docstring).
MISSING_MODULES = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/test_configuration_utils.py": "config_common_kwargs = {}\n",
}


def suite_root() -> Path:
    """The folder holding the `transformers_tests` package for the installed transformers version."""
    version = transformers.__version__
    default = Path.home() / ".cache" / "avfmae-hf" / "transformers-tests"
    cache = Path(os.environ.get("AVFMAE_TRANSFORMERS_TESTS_CACHE", default)) / version
    package = cache / PACKAGE
    cache.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers may arrive together: one fetches, the others wait for it
    with FileLock(str(cache / ".lock")):
        if not (package / "test_modeling_common.py").is_file():
            _fetch(version, package)
    return cache


def _fetch(version: str, package: Path) -> None:
    with tempfile.TemporaryDirectory(dir=package.parent) as work:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                work,
                f"transformers=={version}",
            ],
            check=True,
        )
        archive = next(Path(work).glob("transformers-*.tar.gz"))
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(archive) as tar:
            members = [
                member
                for member in tar.getmembers()
                if member.name.startswith(prefix) and not member.name.startswith(prefix + "models/")
            ]
            tar.extractall(work, members=members, filter="data")
        unpacked = Path(work, prefix)
        for name, text in MISSING_MODULES.items():
            path = unpacked / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                (path.parent / "__init__.py").touch()
                path.write_text(
                    f"# Not in the transformers source distribution (see tests/transformers_suite.py).\n{text}"
                )
        (unpacked / "__init__.py").touch()
        ci_scripts = package.parent / "utils"
        ci_scripts.mkdir(exist_ok=True)
        (ci_scripts / "fetch_hub_objects_for_ci.py").write_text(
            "# Stands in for transformers' CI script (see tests/transformers_suite.py).\n"
            "def url_to_local_path(url, *args, **kwargs):\n    return url\n"
        )
        shutil.move(os.fspath(unpacked), package)


def import_common(module: str):
    """`transformers_tests.<module>`, e.g. `import_common("test_modeling_common").ModelTesterMixin`."""
    root = os.fspath(suite_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"{PACKAGE}.{module}")
