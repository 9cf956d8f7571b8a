# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Convert an official AVF-MAE++ checkpoint into a Hugging Face folder / Hub repository.

The same as `avfmae convert`; all options are listed by `python modeling/convert_avfmae_original_to_hf.py --help`.
The work is done by `avfmae_hf.checkpoint_avfmae.convert_checkpoint`.
"""

import sys

from avfmae_hf.cli import main


if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
