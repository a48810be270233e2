"""Code contexts through the SDK against the real engine: each is its own interpreter (state,
working directory, user), listed with the defaults, restarted fresh, removed; executions in
one context queue in order while contexts run side by side; a context's kernel that dies is
replaced; and the engine's answers to bad context requests."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

import pytest
from conftest import Engine

from ai2in import Context, InvalidArgumentError, NotFoundError, Sandbox


def test_two_contexts_do_not_share_state(sbx: Sandbox) -> None:
    a = sbx.create_code_context(language="python")
    b = sbx.create_code_context()
    assert a.id != b.id and a.language == b.language == "python" and not a.default
    sbx.run_code("y = 'a'", context=a)
    sbx.run_code("y = 'b'", context=b.id)
    assert sbx.run_code("y", context=a).text == "'a'"
    assert sbx.run_code("y", context=b).text == "'b'"
    ex = sbx.run_code("y")  # the default context
    assert ex.error is not None and ex.error.name == "NameError"
    assert sbx.run_code("import os; os.getpid()", context=a).text != \
        sbx.run_code("import os; os.getpid()", context=b).text


def test_cwd_and_user_of_a_context(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context(language="python", cwd="/tmp")
    assert (ctx.cwd, ctx.user, ctx.language) == ("/tmp", "root", "python")
    assert sbx.run_code("import os; os.getcwd()", context=ctx).text == "'/tmp'"
    sbx.run_code("os.chdir('/etc')", context=ctx)
    assert sbx.run_code("os.getcwd()", context=ctx).text == "'/etc'"  # cwd is state too
    me = sbx.create_code_context(user="sandbox")
    assert me.user == "sandbox" and me.cwd == "/home/sandbox"
    assert sbx.run_code("import getpass, os; (getpass.getuser(), os.getuid() != 0)",
                        context=me).text == "('sandbox', True)"
    sh = sbx.create_code_context(language="bash", cwd="/var")
    assert "".join(sbx.run_code("pwd; id -un", context=sh).logs.stdout) == "/var\nroot\n"
    js = sbx.create_code_context(language="javascript", cwd="/usr")
    assert sbx.run_code("process.cwd()", context=js).text in ("'/usr'", "/usr")


def test_list_shows_created_and_started_default_contexts(sbx: Sandbox) -> None:
    sbx.run_code("1")  # the default Python context has started
    created = sbx.create_code_context(language="bash", cwd="/tmp")
    listed = sbx.list_code_contexts()
    by_id = {c.id: c for c in listed}
    assert by_id[created.id] == created
    defaults = [c for c in listed if c.default]
    assert [c.language for c in defaults] == ["python"], listed
    sbx.run_code("true", language="bash")
    langs = sorted(c.language for c in sbx.list_code_contexts() if c.default)
    assert langs == ["bash", "python"]
    assert all(isinstance(c, Context) and c.id.startswith("ctx_") for c in listed)


def test_restart_gives_a_fresh_interpreter(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context(cwd="/tmp")
    sbx.run_code("z = 3", context=ctx)
    again = sbx.restart_code_context(ctx)
    assert again.id == ctx.id and again.cwd == "/tmp"
    ex = sbx.run_code("z", context=ctx)
    assert ex.error is not None and ex.error.name == "NameError"
    assert sbx.run_code("import os; os.getcwd()", context=ctx).text == "'/tmp'"
    # The default context too.
    sbx.run_code("d = 1")
    default = next(c for c in sbx.list_code_contexts() if c.default and c.language == "python")
    sbx.restart_code_context(default)
    assert sbx.run_code("d").error is not None


def test_removed_context_is_gone(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context(language="javascript")
    sbx.run_code("let q = 1", context=ctx)
    sbx.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in sbx.list_code_contexts()]
    with pytest.raises(NotFoundError) as ei:
        sbx.run_code("q", context=ctx)
    assert ei.value.status == 404 and ctx.id in str(ei.value)
    with pytest.raises(NotFoundError) as ei:
        sbx.remove_code_context(ctx)
    assert ctx.id in str(ei.value)
    with pytest.raises(NotFoundError) as ei:
        sbx.restart_code_context(ctx.id)
    assert ctx.id in str(ei.value)
    # A removed default context comes back, fresh, on next use.
    sbx.run_code("w = 1")
    default = next(c for c in sbx.list_code_contexts() if c.default and c.language == "python")
    sbx.remove_code_context(default)
    ex = sbx.run_code("w")
    assert ex.error is not None and ex.error.name == "NameError"
    assert sbx.run_code("2 + 2").text == "4"


def test_executions_in_one_context_queue_in_order(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context()
    sbx.run_code("import time; log = []", context=ctx)
    done: List[Tuple[str, float]] = []
    t0 = time.monotonic()

    def run(tag: str, code: str) -> None:
        sbx.run_code(code, context=ctx)
        done.append((tag, time.monotonic() - t0))
    first = threading.Thread(target=run, args=("first", "time.sleep(1.5); log.append(1)"))
    first.start()
    time.sleep(0.3)
    second = threading.Thread(target=run, args=("second", "log.append(2)"))
    second.start()
    first.join(30)
    second.join(30)
    # The kernel's own record says the order; the two answers end within a millisecond of each
    # other, so which client thread appends first is the scheduler's choice on a busy machine.
    assert sorted(t for t, _ in done) == ["first", "second"], done
    assert dict(done)["second"] >= 1.4, done  # the second waited for the first
    assert sbx.run_code("log", context=ctx).text == "[1, 2]"


def test_contexts_run_side_by_side(sbx: Sandbox) -> None:
    slow = sbx.create_code_context()
    fast = sbx.create_code_context(language="bash")
    box: List[float] = []

    def sleeper() -> None:
        sbx.run_code("import time; time.sleep(3)", context=slow)
        box.append(time.monotonic())
    t = threading.Thread(target=sleeper)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert "".join(sbx.run_code("echo quick", context=fast).logs.stdout) == "quick\n"
    assert sbx.run_code("1 + 1").text == "2"  # the default context is not blocked either
    assert time.monotonic() - t0 < 2
    t.join(30)
    assert box and box[0] > t0


def test_a_dead_kernel_in_a_context_is_replaced(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context(cwd="/tmp")
    sbx.run_code("s = 1", context=ctx)
    ex = sbx.run_code("import os; os.kill(os.getpid(), 9)", context=ctx)
    assert ex.error is not None and ex.error.name == "KernelDied"
    ex = sbx.run_code("import os; os.getcwd()", context=ctx)
    assert ex.text == "'/tmp'", ex
    assert sbx.run_code("s", context=ctx).error is not None
    sh = sbx.create_code_context(language="bash")
    sbx.run_code("V=1", context=sh)
    ex = sbx.run_code("kill -9 $$", context=sh)
    assert ex.error is not None and ex.error.name == "KernelDied", ex
    assert "".join(sbx.run_code('echo "[$V]"', context=sh).logs.stdout) == "[]\n"


def test_bad_context_requests(engine: Engine, module_key: str, sbx: Sandbox) -> None:
    for kwargs, mentions in [({"language": "cobol"}, "python"),
                             ({"cwd": "/does/not/exist"}, "/does/not/exist"),
                             ({"user": "nobody-such"}, "nobody-such")]:
        with pytest.raises(InvalidArgumentError) as ei:
            sbx.create_code_context(**kwargs)
        assert ei.value.status == 400 and mentions in str(ei.value), (kwargs, str(ei.value))
    base = f"/v1/sandboxes/{sbx.id}/contexts"
    st, doc, raw = engine.raw("POST", base, body={"bogus": 1}, key=module_key)
    assert st == 400 and "bogus" in doc["error"]["message"], raw[:300]
    for method, path in [("POST", "/ctx_nosuchthing/restart"), ("DELETE", "/ctx_nosuchthing")]:
        st, doc, raw = engine.raw(method, base + path, key=module_key)
        assert st == 404 and "ctx_nosuchthing" in doc["error"]["message"], raw[:300]
    # Another team cannot see this sandbox's contexts.
    other = engine.make_key("ctx-other")
    st, doc, raw = engine.raw("GET", base, key=other)
    assert st == 404, raw[:300]
