"""The cap on requests open at once inside one sandbox (--max-streams): a sandbox whose
streams fill it gets 429 naming the cap, other sandboxes are not affected, and closing a
stream frees its slot."""

from __future__ import annotations

from typing import Iterator

import pytest
from conftest import Engine, start_engine, wait_for

from ai2in import RateLimitError

CAP = 3


@pytest.fixture(scope="module")
def streams_engine() -> Iterator[Engine]:
    e = start_engine(["--max-streams", str(CAP)])
    yield e
    e.teardown()


def test_open_streams_are_capped_per_sandbox(streams_engine: Engine) -> None:
    e = streams_engine
    key = e.make_key("streams")
    sbx, other = e.sandbox(key), e.sandbox(key)
    handles = [sbx.commands.run(f"echo {i}; sleep 300", background=True) for i in range(CAP)]
    for h in handles:
        wait_for(lambda: h.stdout, 10, "the background command's first output")

    with pytest.raises(RateLimitError) as err:
        sbx.commands.run("true")
    assert err.value.status == 429 and str(CAP) in err.value.message, err.value.message
    assert other.commands.run("echo other").stdout == "other\n"  # another sandbox is not affected

    handles[0].disconnect()  # its slot is released once the engine sees the client leave
    wait_for(lambda: _runs(sbx), 10, "a free slot after a stream closed")
    for h in handles[1:]:
        h.kill()


def _runs(sbx: object) -> bool:
    try:
        return sbx.commands.run("true").exit_code == 0  # type: ignore[attr-defined]
    except RateLimitError:
        return False
