"""The isolation suite (tests/security/): probes made from inside real sandboxes, each asserting
that a boundary holds or a shared resource is bounded. It runs the real engine exactly like
the integration suite, whose fixtures and helpers it shares: tests/integration/conftest.py is
loaded here as the module `it` (a test imports from it: `from it import Engine, …`).

Run as its own pytest session (`make test` does): `pytest tests/security`; in one session
with tests/integration, `from conftest import …` there would find this module.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
_spec = importlib.util.spec_from_file_location("it", _path)
assert _spec and _spec.loader
it = importlib.util.module_from_spec(_spec)
sys.modules["it"] = it
_spec.loader.exec_module(it)

# The fixtures and hooks of the integration suite, registered for this directory too.
from it import (  # noqa: E402,F401
    engine,
    fresh_key,
    key,
    module_key,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_unconfigure,
    sbx,
)
