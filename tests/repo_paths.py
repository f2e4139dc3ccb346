"""Where the checkout is, for tests that read or run its files (notebooks, docs, the server as a
subprocess): one definition, so a test file can move between the folders under ``tests/`` without
counting ``parent`` steps."""

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
