# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""`python -m avfmae_hf ...` runs the `avfmae` command line."""

import sys

from .cli import main


if __name__ == "__main__":
    sys.exit(main())

__all__ = []
