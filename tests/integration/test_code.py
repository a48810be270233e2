"""Running code through the SDK against the real engine: the default Python kernel (results,
figures, tables, errors, streaming, timeouts, a kernel that dies), the bash and JavaScript
contexts, per-call environment variables, state across SDK objects and processes, bad input,
overwhelming and non-UTF-8 output, and how soon the first execution answers."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from typing import Any, List, Tuple

import pytest
from conftest import SDK_DIR, Engine, RssSampler, png_size, strip_ansi

from ai2in import (AsyncSandbox, ExecutionError, InvalidArgumentError, NotFoundError,
                   OutputMessage, Result, Sandbox)

MIB = 1 << 20


def test_state_persists_and_the_last_expression_is_the_main_result(sbx: Sandbox) -> None:
    first = sbx.run_code("x = 41")
    assert first.results == [] and first.error is None and first.text is None
    ex = sbx.run_code("x + 1")
    assert ex.text == "42" and ex.error is None
    assert len(ex.results) == 1 and ex.results[0].is_main_result
    assert str(ex.results[0]) == "42" and ex.results[0].formats() == ["text"]
    assert isinstance(ex.execution_count, int)
    assert first.execution_count is not None and ex.execution_count == first.execution_count + 1
    assert ex.status == "ok" and not ex.timed_out and ex.context_id


def test_state_survives_sdk_reconnects_and_other_processes(engine: Engine, module_key: str,
                                                          sbx: Sandbox) -> None:
    sbx.run_code("x = 41")
    other = Sandbox.connect(sbx.id, api_key=module_key, api_url=engine.url)
    assert other.run_code("x").text == "41"
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from ai2in import Sandbox; "
              "s = Sandbox.connect(sys.argv[2], api_key=sys.argv[3], api_url=sys.argv[4]); "
              "print(s.run_code('x').text); s.run_code('x = 99')")
    p = subprocess.run([sys.executable, "-c", script, str(SDK_DIR), sbx.id, module_key,
                        engine.url], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "41\n"
    assert sbx.run_code("x").text == "99"


def test_matplotlib_figure_is_a_png_of_the_figure(sbx: Sandbox) -> None:
    ex = sbx.run_code("import matplotlib.pyplot as plt; plt.plot([1,2,3]); plt.show()")
    assert ex.error is None, ex.error
    figs = ex.results
    assert len(figs) == 1 and figs[0].png and not figs[0].is_main_result and ex.text is None
    assert figs[0].text == "<Figure size 640x480 with 1 Axes>"
    w, h = png_size(figs[0].png or "")
    # The inline backend saves with bbox_inches="tight": the 640x480 figure (6.4 x 4.8 in at
    # dpi 100) loses its empty margins.
    assert 500 <= w <= 640 and 350 <= h <= 480, (w, h)
    assert figs[0]._repr_png_() == figs[0].png and "png" in figs[0].formats()
    # Without the cropping the PNG has the figure's exact size.
    ex = sbx.run_code("%config InlineBackend.print_figure_kwargs = {'bbox_inches': None}\n"
                      "fig = plt.figure(figsize=(3, 2), dpi=100); plt.plot([3, 1]); plt.show()")
    assert ex.error is None, ex.error
    assert png_size(ex.results[0].png or "") == (300, 200)


def test_dataframe_has_html_and_text(sbx: Sandbox) -> None:
    ex = sbx.run_code("import pandas as pd; pd.DataFrame({'a':[1,2], 'b':['x','yz']})")
    assert ex.error is None, ex.error
    r = ex.results[0]
    assert r.is_main_result and r.html is not None and r.text is not None
    assert "<table" in r.html and "</table>" in r.html
    for cell in ("<th>a</th>", "<th>b</th>", "<td>1</td>", "<td>2</td>", "<td>yz</td>"):
        assert cell in r.html, (cell, r.html)
    assert re.search(r"a\s+b\s*\n0\s+1\s+x\s*\n1\s+2\s+yz", r.text), r.text
    assert r._repr_html_() == r.html and ex.text == r.text


def test_displays_and_main_result_in_order(sbx: Sandbox) -> None:
    ex = sbx.run_code("from IPython.display import display, HTML, Markdown, JSON\n"
                      "display(HTML('<b>bold</b>'))\n"
                      "display(Markdown('# title'))\n"
                      "display({'application/vnd.custom+json': {'k': 1}}, raw=True)\n"
                      "'last'")
    assert ex.error is None, ex.error
    assert [r.is_main_result for r in ex.results] == [False, False, False, True]
    assert ex.results[0].html == "<b>bold</b>"
    assert ex.results[1].markdown == "# title"
    assert ex.results[2].extra == {"application/vnd.custom+json": {"k": 1}}
    assert ex.text == "'last'"


def test_error_has_name_value_and_a_traceback_naming_the_line(sbx: Sandbox) -> None:
    errors: List[ExecutionError] = []
    ex = sbx.run_code("a = 1\nb = 0\nc = a / b\n", on_error=errors.append)
    assert ex.error is not None and errors == [ex.error]
    assert ex.error.name == "ZeroDivisionError"
    assert ex.error.value == "division by zero"
    tb = strip_ansi(ex.error.traceback)
    assert "line 3" in tb and "c = a / b" in tb, tb
    assert "line 1" not in tb.replace("line 3", ""), tb
    assert ex.status == "error" and ex.results == []
    assert sbx.run_code("a + 1").text == "2"  # the lines before the error ran


def test_output_streams_as_printed_and_callbacks_fire_in_order(sbx: Sandbox) -> None:
    seen: List[Tuple[str, Any, float]] = []
    t0 = time.monotonic()

    def rec(kind: str) -> Any:
        return lambda x: seen.append((kind, x, time.monotonic() - t0))
    ex = sbx.run_code("for i in range(3): print(i); import time; time.sleep(1)",
                      on_stdout=rec("out"), on_stderr=rec("err"), on_result=rec("res"),
                      on_error=rec("error"))
    returned = time.monotonic() - t0
    outs = [s for s in seen if s[0] == "out"]
    assert "".join(m.line for _, m, _ in outs) == "0\n1\n2\n" == "".join(ex.logs.stdout)
    assert all(isinstance(m, OutputMessage) and not m.error for _, m, _ in outs)
    at = {m.line.strip(): t for _, m, t in outs}
    assert set(at) >= {"0", "1", "2"}, outs
    assert 0.6 < at["1"] - at["0"] < 1.6 and 0.6 < at["2"] - at["1"] < 1.6, at
    assert at["0"] < returned - 1.5, (at, returned)
    # Every kind, in the order the code produced it.
    seen.clear()
    ex = sbx.run_code("import sys, time\nfrom IPython.display import display, HTML\n"
                      "print('a'); time.sleep(0.3)\n"
                      "display(HTML('<i>r</i>')); time.sleep(0.3)\n"
                      "print('e', file=sys.stderr); time.sleep(0.3)\n"
                      "raise ValueError('v')",
                      on_stdout=rec("out"), on_stderr=rec("err"), on_result=rec("res"),
                      on_error=rec("error"))
    assert [k for k, _, _ in seen] == ["out", "res", "err", "error"], seen
    assert seen[1][1] is ex.results[0] and isinstance(seen[1][1], Result)
    assert seen[2][1].error and seen[2][1].line == "e\n"
    assert seen[3][1] is ex.error and ex.error is not None and ex.error.name == "ValueError"
    assert ex.logs.stderr == ["e\n"]
    ns = [m.timestamp for k, m, _ in seen if k in ("out", "err")]
    assert ns == sorted(ns) and abs(ns[0] / 1e9 - time.time()) < 60, ns


def test_timeout_interrupts_and_the_kernel_keeps_its_state(sbx: Sandbox) -> None:
    sbx.run_code("kept = 'yes'")
    t0 = time.monotonic()
    ex = sbx.run_code("while True: pass", timeout=2)
    took = time.monotonic() - t0
    assert 1.8 < took < 6, took
    assert ex.timed_out and ex.status == "interrupted"
    assert ex.error is not None and ex.error.name == "KeyboardInterrupt", ex.error
    t0 = time.monotonic()
    assert sbx.run_code("kept").text == "'yes'"
    assert time.monotonic() - t0 < 2
    ex = sbx.run_code("import time; time.sleep(0.2); 'fine'", timeout=0.1)
    assert ex.timed_out and ex.error is not None
    assert sbx.run_code("import time; time.sleep(1.5); 'slow'", timeout=0).text == "'slow'"


def test_a_kernel_killed_from_inside_is_reported_and_replaced(sbx: Sandbox) -> None:
    sbx.run_code("lost = 1")
    t0 = time.monotonic()
    ex = sbx.run_code("import os; print('bye', flush=True); os.kill(os.getpid(), 9)")
    assert time.monotonic() - t0 < 30
    assert ex.error is not None and ex.error.name == "KernelDied", ex.error
    assert ex.error.value and ex.status == "error"
    ex = sbx.run_code("1 + 1")
    assert ex.text == "2" and ex.error is None
    ex = sbx.run_code("lost")
    assert ex.error is not None and ex.error.name == "NameError"


def test_bash_keeps_variables_cwd_and_functions(sbx: Sandbox) -> None:
    ex = sbx.run_code("echo $HOME", language="bash")
    assert ex.logs.stdout and "".join(ex.logs.stdout) == "/root\n" and ex.error is None
    sbx.run_code("A=1; export B=2; cd /tmp; greet() { echo \"hi $1\"; }", language="bash")
    ex = sbx.run_code('echo "$A $B $(pwd)"; greet you; echo err >&2', language="BASH")
    assert "".join(ex.logs.stdout) == "1 2 /tmp\nhi you\n"
    assert "".join(ex.logs.stderr) == "err\n"
    ex = sbx.run_code("pwd", language="sh")  # an alias of bash: the same context
    assert "".join(ex.logs.stdout) == "/tmp\n"
    # The default Python context is another interpreter.
    assert sbx.run_code("import os; os.getcwd()").text == "'/home/sandbox'"


def test_javascript_keeps_state(sbx: Sandbox) -> None:
    sbx.run_code("let a = 1", language="javascript")
    ex = sbx.run_code("a + 1", language="javascript")
    assert ex.text == "2" and ex.error is None, ex
    sbx.run_code("function twice(n) { return 2 * n }; const o = {k: 'v'}", language="js")
    ex = sbx.run_code("console.log('out', twice(a)); console.error('err'); o.k",
                      language="javascript")
    assert "".join(ex.logs.stdout) == "out 2\n" and "".join(ex.logs.stderr) == "err\n"
    assert ex.text in ("'v'", "v"), ex.text
    ex = sbx.run_code("null.x", language="javascript")
    assert ex.error is not None and ex.error.name == "TypeError", ex.error
    assert sbx.run_code("a", language="javascript").text == "1"


def test_per_call_envs_apply_to_that_execution_only(sbx: Sandbox) -> None:
    get = "import os; os.environ.get('AI2IN_T', 'unset')"
    assert sbx.run_code(get, envs={"AI2IN_T": "v1"}).text == "'v1'"
    assert sbx.run_code(get).text == "'unset'"
    sbx.run_code("os.environ['AI2IN_T'] = 'old'")
    assert sbx.run_code(get, envs={"AI2IN_T": "v2"}).text == "'v2'"
    assert sbx.run_code(get).text == "'old'"
    out = sbx.run_code('echo "[$AI2IN_T]"', language="bash", envs={"AI2IN_T": "b"})
    assert "".join(out.logs.stdout) == "[b]\n"
    assert "".join(sbx.run_code('echo "[$AI2IN_T]"', language="bash").logs.stdout) == "[]\n"
    js = "console.log(`[${process.env.AI2IN_T}]`)"
    out = sbx.run_code(js, language="javascript", envs={"AI2IN_T": "j"})
    assert "".join(out.logs.stdout) == "[j]\n"
    assert "".join(sbx.run_code(js, language="javascript").logs.stdout) == "[undefined]\n"


def test_bad_input_gets_the_engines_message(engine: Engine, module_key: str,
                                            sbx: Sandbox) -> None:
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.run_code("")
    assert ei.value.status == 400 and "code" in str(ei.value).lower()
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.run_code("1", language="cobol")
    msg = str(ei.value).lower()
    assert "python" in msg and "bash" in msg and "javascript" in msg, msg
    with pytest.raises(InvalidArgumentError):
        sbx.run_code("a\0b")
    with pytest.raises(NotFoundError) as nf:
        sbx.run_code("1", context="ctx_doesnotexist")
    assert nf.value.status == 404 and "ctx_doesnotexist" in str(nf.value)
    ctx = sbx.create_code_context()
    with pytest.raises(ValueError, match="conflicts"):
        sbx.run_code("1", context=ctx, language="bash")
    sbx.remove_code_context(ctx)
    with pytest.raises(NotFoundError) as nf:
        sbx.run_code("1", context=ctx)
    assert ctx.id in str(nf.value)
    base = f"/v1/sandboxes/{sbx.id}/execute"
    for body, status, mentions in [
            ({}, 400, "code"), ({"code": 5}, 400, "code"), ({"code": "1", "bogus": 1}, 400,
                                                            "bogus"),
            ({"code": "1", "timeout_ms": -1}, 400, "timeout"),
            ({"code": "1", "envs": {"A": 1}}, 400, "envs"),
            ({"code": "1", "language": "python", "context_id": 7}, 400, "context_id"),
            ({"code": "x" * (MIB + 1)}, 413, "larger than")]:
        st, doc, raw = engine.raw("POST", base, body=body, key=module_key)
        assert st == status and doc["error"]["message"], (body, raw[:300])
        assert mentions in doc["error"]["message"].lower(), (body, doc)
    assert sbx.run_code("'still fine'").text == "'still fine'"


def test_overwhelming_output_is_bounded(engine: Engine, sbx: Sandbox) -> None:
    sbx.run_code("1")  # the kernel is up: the sampler sees the execution only
    markers: List[str] = []
    t0 = time.monotonic()
    with RssSampler(engine.pid()) as rss:
        ex = sbx.run_code("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n"
                          "    sys.stdout.write(chunk); sys.stdout.flush()\n'done'",
                          on_stdout=lambda m: markers.append(m.line)
                          if m.line.strip().startswith("[ai2in:") else None)
    took = time.monotonic() - t0
    received = sum(len(c) for c in ex.logs.stdout if not c.strip().startswith("[ai2in:"))
    print(f"\n100 MiB from one cell: {took:.1f} s, received {received / MIB:.1f} MiB, dropped "
          f"{ex.dropped_bytes / MIB:.1f} MiB, engine RSS +{rss.growth_mb:.1f} MiB")
    assert ex.text == "'done'" and ex.error is None
    assert ex.dropped_bytes > 0
    assert received <= 32 * MIB + 64 * 1024, received
    assert received + ex.dropped_bytes == 100 * MIB
    assert len(markers) == 1 and f"[ai2in: {ex.dropped_bytes} bytes" in markers[0]
    assert rss.growth_mb < 64, f"engine RSS grew by {rss.growth_mb:.0f} MiB"
    assert took < 60, took
    assert sbx.run_code("2 * 21").text == "42"
    # One giant message (ipykernel sends a 48 MiB print as one IOPub message): cut, not held.
    with RssSampler(engine.pid()) as rss:
        ex = sbx.run_code("print('y' * (48 << 20))")
    received = sum(len(c) for c in ex.logs.stdout if not c.strip().startswith("[ai2in:"))
    assert ex.error is None, ex.error
    assert ex.dropped_bytes > 0 and received <= 32 * MIB + 64 * 1024
    assert received + ex.dropped_bytes == (48 << 20) + 1
    assert rss.growth_mb < 64, f"engine RSS grew by {rss.growth_mb:.0f} MiB"
    assert sbx.run_code("'after'").text == "'after'"


def test_non_utf8_output_becomes_replacement_characters(sbx: Sandbox) -> None:
    ex = sbx.run_code(r"printf '\xff\xfe ok\n'", language="bash")
    assert "".join(ex.logs.stdout) == "\ufffd\ufffd ok\n"
    ex = sbx.run_code("process.stdout.write(Buffer.from([0xff, 0xfe, 0x20, 0x6f, 0x6b, 0x0a]))",
                      language="javascript")
    assert "".join(ex.logs.stdout) == "\ufffd\ufffd ok\n"
    # Python: ipykernel's OutStream takes only str (it has no .buffer), but a str holding
    # surrogate escapes (os.fsdecode of a non-UTF-8 file name, say) leaves the kernel as the
    # raw bytes inside its JSON message (jupyter_client packs with errors="surrogateescape").
    ex = sbx.run_code("print(b'\\xff\\xfe ok'.decode('utf-8', 'surrogateescape'))")
    assert ex.error is None, ex.error
    assert "".join(ex.logs.stdout) == "\ufffd\ufffd ok\n"
    ex = sbx.run_code("b'\\xff'.decode('utf-8', 'surrogateescape')")
    assert ex.text is not None and ex.error is None
    assert sbx.run_code("'alive'").text == "'alive'"


def test_non_utf8_bytes_on_the_kernels_fd_1(sbx: Sandbox) -> None:
    # What a C extension or a child process prints goes to fd 1, not through sys.stdout.
    # ipykernel 6.17 decodes it strictly; the agent's launcher makes it lenient (an invalid
    # byte used to end the fd's reader thread, and with it all later fd-level output).
    ex = sbx.run_code("import os, time; os.write(1, b'\\xff\\xfe ok\\n'); time.sleep(0.5)")
    assert ex.error is None, ex.error
    assert "".join(ex.logs.stdout) == "\ufffd\ufffd ok\n"
    ex = sbx.run_code("import subprocess; subprocess.run(['echo', 'child']); time.sleep(0.5)")
    assert "".join(ex.logs.stdout) == "child\n"
    # Valid UTF-8 longer than one read of the reader (1000 bytes) has characters cut in two.
    ex = sbx.run_code("os.write(1, '\u20ac'.encode() * 1000 + b'\\n'); time.sleep(0.5)")
    assert ex.error is None, ex.error
    assert "".join(ex.logs.stdout) == "\u20ac" * 1000 + "\n"


def test_a_client_that_goes_away_interrupts_its_execution(sbx: Sandbox) -> None:
    def stop(m: OutputMessage) -> None:
        raise RuntimeError("seen enough")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="seen enough"):
        sbx.run_code("import time\nprint('go', flush=True)\ntime.sleep(60)\nlate = 1",
                     on_stdout=stop)
    ex = sbx.run_code("'next'")
    assert ex.text == "'next'" and time.monotonic() - t0 < 10
    assert sbx.run_code("late").error is not None  # the rest of the cell never ran


def test_first_run_code_answers_soon_after_create(engine: Engine, module_key: str) -> None:
    t0 = time.monotonic()
    sbx = engine.sandbox(module_key)
    created = time.monotonic() - t0
    try:
        ex = sbx.run_code("1 + 1")
        ready = time.monotonic() - t0
        print(f"\ncreate {created:.2f} s; create -> first run_code done {ready:.2f} s")
        assert ex.text == "2"
        assert ready < 10, ready
    finally:
        sbx.kill()


def test_async_sandbox_runs_code(engine: Engine, module_key: str, sbx: Sandbox) -> None:
    async def main() -> None:
        a = await AsyncSandbox.connect(sbx.id, api_key=module_key, api_url=engine.url)
        lines: List[str] = []

        async def on_stdout(m: OutputMessage) -> None:
            await asyncio.sleep(0)
            lines.append(m.line)
        await a.run_code("n = 20")
        ex = await a.run_code("print('p'); n + 1", on_stdout=on_stdout,
                              on_result=lambda r: lines.append(r.text or ""))
        assert ex.text == "21" and lines == ["p\n", "21"]
        ctx = await a.create_code_context(language="bash")
        ex = await a.run_code("echo $((6 * 7))", context=ctx)
        assert "".join(ex.logs.stdout) == "42\n"
        assert ctx.id in [c.id for c in await a.list_code_contexts()]
        await a.remove_code_context(ctx)
        ex = await a.run_code("while True: pass", timeout=1)
        assert ex.timed_out

    asyncio.run(main())
    assert sbx.run_code("n").text == "20"


def test_execution_serializes(sbx: Sandbox) -> None:
    ex = sbx.run_code("print('o'); {'a': 1}")
    import json
    doc = json.loads(ex.to_json())
    assert doc["results"][0]["text"] == "{'a': 1}" and doc["results"][0]["is_main_result"]
    assert doc["logs"]["stdout"] == ["o\n"] and doc["error"] is None
    assert doc["execution_count"] == ex.execution_count
