"""`import outlay` stays cheap: the SDK's names load on first use, and neither that nor the SDK
itself imports the libraries it patches until intercept_all runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import outlay
from outlay import sdk

PATCHED_LIBRARIES = ("openai", "anthropic", "requests", "httpx", "httpx2")
PROBE = """
import json, sys
import outlay
first = sorted(m for m in sys.modules if m.startswith("outlay"))
error = outlay.BudgetExceeded
later = sorted(sys.modules)
print(json.dumps({"first": first, "later": later, "same": error is outlay.sdk.BudgetExceeded}))
"""


def test_import_outlay_loads_nothing_of_the_sdk_and_its_names_load_without_the_sdks() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, check=True,
                          text=True, timeout=60)
    seen = json.loads(done.stdout)

    assert seen["first"] == ["outlay"]
    assert "outlay.sdk" in seen["later"]
    assert seen["same"] is True
    loaded = {m.partition(".")[0] for m in seen["later"]}
    assert not loaded & set(PATCHED_LIBRARIES)


def test_the_package_reexports_the_sdk() -> None:
    for name in sdk.__all__:
        assert getattr(outlay, name) is getattr(sdk, name)
        assert name in dir(outlay)
    assert sorted(set(outlay.__all__) - {"__version__"}) == sorted(sdk.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="intercept_everything"):
        outlay.intercept_everything  # noqa: B018 (the lookup is the test)
