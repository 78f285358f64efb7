"""Shared test settings: deterministic, single-threaded-friendly, tiny sizes."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """The CLI's ``main()`` configures the root logger on the stream pytest captured for that test;
    put the root handlers back so later tests do not log into a closed stream."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
