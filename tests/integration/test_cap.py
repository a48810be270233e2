"""The per-team cap on running sandboxes (--max-running)."""

from __future__ import annotations

from typing import Iterator

import pytest
from conftest import Engine, start_engine

from ai2in import RateLimitError, Sandbox

CAP = 2


@pytest.fixture(scope="module")
def cap_engine() -> Iterator[Engine]:
    e = start_engine(["--max-running", str(CAP)])
    yield e
    e.teardown()


def test_cap_per_team(cap_engine: Engine) -> None:
    e = cap_engine
    a = e.make_key("cap-a")
    b = e.make_key("cap-b")
    s1 = e.sandbox(a)
    s2 = e.sandbox(a)
    with pytest.raises(RateLimitError) as ei:
        Sandbox(api_key=a, api_url=e.url)
    assert ei.value.status == 429 and ei.value.code == "limit_exceeded"
    assert str(CAP) in ei.value.message, f"the message should name the cap: {ei.value.message!r}"
    assert [s["id"] for s in e.list(a)] == [s1.id, s2.id], "a refused create left a sandbox"
    # Another team is not affected.
    sb = e.sandbox(b)
    assert sb.commands.run("echo b").stdout == "b\n"
    # Killing one frees a slot.
    assert s1.kill() is True
    s3 = e.sandbox(a)
    assert s3.is_running()
    with pytest.raises(RateLimitError):
        Sandbox(api_key=a, api_url=e.url)
    assert len(e.list(a)) == CAP
