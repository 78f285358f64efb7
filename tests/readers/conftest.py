"""Fixtures of the reader-study tests."""

import pytest


@pytest.fixture
def study(tmp_path):
    """A 3-case study (stages C, CM, CDM) in a SQLite file, with an admin token (``study.admin_token``)."""
    from study_helpers import make_study

    s = make_study(tmp_path)
    s.admin_token = s.set_admin_token()
    return s
