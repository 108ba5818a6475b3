"""Fixtures for the tasks tests: a standard-layout hand-made corpus and a tiny synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_helpers import standard_corpus

from tasks.synthetic import generate_corpus


@pytest.fixture(scope="session")
def std_corpus(tmp_path_factory) -> Path:
    return standard_corpus(tmp_path_factory.mktemp("std") / "TIMIT")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("syn") / "tiny", "tiny", seed=0)
