"""Tests run offline: nothing may reach the Hub (pushes go to a replaced API object, loading reads local folders)."""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
