"""Where ../shared/testdata is: beside the checkout (as in CI), or named by CHATOPS_TESTDATA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def testdata_dir() -> Path:
    named = os.environ.get("CHATOPS_TESTDATA")
    if named:
        return Path(named)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "testdata"
        if candidate.is_dir():
            return candidate
    pytest.skip(
        "../shared/testdata not found beside the checkout; set CHATOPS_TESTDATA",
        allow_module_level=True,
    )


def slack_testdata(*parts: str) -> Path:
    return testdata_dir().joinpath("slack", *parts)
