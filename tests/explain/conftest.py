"""Fixtures of the explanation tests: one thread (tiny tensors; a busy shared CPU makes thread hand-offs
cost more than the work). The tiny synthetic set and checkpoint are in tests/conftest.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
