"""Correctness-test setup: kernel outputs are NaN-poisoned (see trackformer/_alloc.py). Seeds and the gpu marker
come from the repository's root conftest.py."""

import os

os.environ["TRACKFORMER_POISON_OUTPUTS"] = "1"  # before any trackformer import
