"""Unit tests of ``run_code`` and the code contexts against an in-process fake engine that
speaks the contract's ``/execute`` stream (docs/api.md, "Running code") over chunked HTTP.

They check the request bodies (language, context, envs, timeout), what the SDK makes of the
events (results by MIME type, logs, errors, dropped output, the end), the callbacks (order,
before the call returns, as events arrive), the errors (engine's messages, a stream error
event, a stream cut short) and the async twin. Fast and offline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ai2in import (  # noqa: E402
    AsyncSandbox,
    Context,
    Execution,
    ExecutionError,
    InvalidArgumentError,
    NotFoundError,
    OutputMessage,
    Result,
    Sandbox,
    SandboxError,
)

KEY = "ai2in_live_test"
SID = "sbx_" + "c" * 20
TS = "2026-11-27T00:00:01.250Z"
TS_NS = 1795737601250000000  # TS in Unix nanoseconds

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


class Emit:
    """Writes one NDJSON event per HTTP chunk of the answer."""

    def __init__(self, h: BaseHTTPRequestHandler) -> None:
        self.h = h

    def ev(self, **kw: Any) -> None:
        kw.setdefault("ts", TS)
        data = json.dumps(kw).encode() + b"\n"
        self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.h.wfile.flush()

    def end(self, count: Optional[int] = 1, status: str = "ok", timed_out: bool = False) -> None:
        self.ev(type="end", execution_count=count, status=status, timed_out=timed_out)


class Fake:
    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.scripts: Dict[str, Callable[[Emit], None]] = {}
        self.contexts: Dict[str, Dict[str, Any]] = {
            "ctx_default": {"id": "ctx_default", "language": "python", "cwd": "/home/sandbox",
                            "user": "root", "default": True}}
        self.hung_up = threading.Event()  # set when a client left a stream before its end
        self.seq = 0


def make_handler(fake: Fake) -> type:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def reply(self, status: int, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def err(self, status: int, code: str, msg: str) -> None:
            self.reply(status, {"error": {"code": code, "message": msg}})

        def handle_any(self, method: str) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            body = json.loads(raw) if raw else None
            path = urlsplit(self.path).path
            fake.requests.append({"method": method, "path": path, "body": body})
            if self.headers.get("X-API-Key") != KEY:
                return self.err(401, "unauthorized", "missing or wrong API key")
            parts = path.strip("/").split("/")
            if parts[:2] != ["v1", "sandboxes"]:
                return self.err(404, "not_found", "no route")
            if len(parts) == 2 and method == "POST":
                return self.reply(201, {"id": SID, "state": "running"})
            if len(parts) == 3 and method == "GET":
                return self.reply(200, {"id": SID, "state": "running"})
            rest = parts[3:]
            if rest == ["execute"] and method == "POST":
                return self.execute(body or {})
            if rest[:1] == ["contexts"]:
                return self.contexts(method, rest[1:], body or {})
            return self.err(404, "not_found", "no route")

        def execute(self, body: Dict[str, Any]) -> None:
            code = body.get("code")
            if not code:
                return self.err(400, "bad_request", "code must be a non-empty string")
            lang = body.get("language")
            if lang is not None and lang.lower() not in ("python", "bash", "javascript", "js",
                                                         "sh"):
                return self.err(400, "bad_request", f"unknown language {lang!r}: expected "
                                "python, bash or javascript")
            cid = body.get("context_id")
            if cid is not None and cid not in fake.contexts:
                return self.err(404, "not_found", f"no context {cid}")
            script = fake.scripts.get(code)
            if script is None:
                return self.err(400, "bad_request", f"no script for {code!r}")
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            e = Emit(self)
            try:
                e.ev(type="start", context_id=cid or "ctx_default")
                script(e)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                fake.hung_up.set()
            self.close_connection = True
            return None

        def contexts(self, method: str, rest: List[str], body: Dict[str, Any]) -> None:
            if not rest and method == "POST":
                lang = body.get("language", "python")
                if lang not in ("python", "bash", "javascript"):
                    return self.err(400, "bad_request", f"unknown language {lang!r}")
                fake.seq += 1
                c = {"id": f"ctx_{fake.seq}", "language": lang,
                     "cwd": body.get("cwd", "/home/sandbox"), "user": body.get("user", "root"),
                     "default": False}
                fake.contexts[c["id"]] = c
                return self.reply(201, c)
            if not rest and method == "GET":
                return self.reply(200, {"contexts": list(fake.contexts.values())})
            c = fake.contexts.get(rest[0])
            if c is None:
                return self.err(404, "not_found", f"no context {rest[0]}")
            if rest[1:] == ["restart"] and method == "POST":
                return self.reply(200, c)
            if rest[1:] == [] and method == "DELETE":
                del fake.contexts[rest[0]]
                return self.reply(200, {})
            return self.err(404, "not_found", "no route")

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_DELETE(self) -> None:
            self.handle_any("DELETE")

    return H


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    f = Fake()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(f))
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    monkeypatch.setenv("AI2IN_API_URL", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("AI2IN_API_KEY", KEY)
    yield f
    srv.shutdown()
    srv.server_close()


def last_body(fake: Fake, suffix: str) -> Dict[str, Any]:
    for r in reversed(fake.requests):
        if r["path"].endswith(suffix):
            return r["body"]
    raise AssertionError(f"no request to …{suffix}")


# -- results, logs, errors ----------------------------------------------------------------------


def test_main_result_logs_and_count(fake: Fake) -> None:
    def script(e: Emit) -> None:
        e.ev(type="stdout", text="hi\n")
        e.ev(type="stderr", text="warn\n")
        e.ev(type="stdout", text="there")
        e.ev(type="result", data={"text/plain": "42"}, metadata={}, is_main_result=True)
        e.end(count=7)
    fake.scripts["x + 1"] = script
    ex = Sandbox().run_code("x + 1")
    assert last_body(fake, "/execute") == {"code": "x + 1"}
    assert ex.text == "42"
    assert ex.execution_count == 7 and ex.status == "ok" and not ex.timed_out
    assert ex.results[0].is_main_result and str(ex.results[0]) == "42"
    assert ex.logs.stdout == ["hi\n", "there"] and ex.logs.stderr == ["warn\n"]
    assert ex.error is None and ex.dropped_bytes == 0 and ex.context_id == "ctx_default"


def test_result_formats_by_mime_type(fake: Fake) -> None:
    bundle = {"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": PNG,
              "text/html": "<table><tr><td>1</td></tr></table>", "text/markdown": "# h",
              "image/svg+xml": "<svg/>", "image/jpeg": "/9j/", "application/pdf": "JVBE",
              "text/latex": "$x$", "application/json": {"a": [1, 2]},
              "application/javascript": "alert(1)", "application/vnd.custom+json": {"k": 1}}

    def script(e: Emit) -> None:
        e.ev(type="result", data=bundle, metadata={"image/png": {"width": 640}},
             is_main_result=False)
        e.end()
    fake.scripts["plot"] = script
    ex = Sandbox().run_code("plot")
    r = ex.results[0]
    assert ex.text is None  # a display, not the main result
    assert (r.png, r.html, r.markdown, r.svg, r.jpeg, r.pdf, r.latex, r.javascript) == (
        PNG, bundle["text/html"], "# h", "<svg/>", "/9j/", "JVBE", "$x$", "alert(1)")
    assert r.json == {"a": [1, 2]} and r.text.startswith("<Figure")
    assert r.extra == {"application/vnd.custom+json": {"k": 1}}
    assert r.data == bundle and r.metadata == {"image/png": {"width": 640}}
    assert r.formats() == ["text", "html", "markdown", "svg", "png", "jpeg", "pdf", "latex",
                           "json", "javascript", "application/vnd.custom+json"]
    assert (r._repr_png_(), r._repr_html_(), r._repr_json_()) == (PNG, bundle["text/html"],
                                                                  {"a": [1, 2]})
    assert (r._repr_markdown_(), r._repr_svg_(), r._repr_jpeg_(), r._repr_pdf_(),
            r._repr_latex_(), r._repr_javascript_()) == ("# h", "<svg/>", "/9j/", "JVBE",
                                                         "$x$", "alert(1)")
    assert r["png"] == PNG and str(r) == r.text
    only_png = Result({"image/png": PNG})
    assert only_png.text is None and only_png.formats() == ["png"]
    assert only_png._repr_html_() is None and "png" in str(only_png)
    doc = json.loads(ex.to_json())
    assert doc["results"][0]["png"] == PNG and doc["results"][0]["is_main_result"] is False
    assert doc["results"][0]["application/vnd.custom+json"] == {"k": 1}


def test_code_error(fake: Fake) -> None:
    tb = ["\x1b[0;31m---------------------------------------------------------------------------",
          "ZeroDivisionError                         Traceback (most recent call last)",
          "Cell In[3], line 3", "ZeroDivisionError: division by zero"]

    def script(e: Emit) -> None:
        e.ev(type="stdout", text="before\n")
        e.ev(type="error", name="ZeroDivisionError", value="division by zero", traceback=tb)
        e.end(count=3, status="error")
    fake.scripts["1/0"] = script
    seen: List[Any] = []
    ex = Sandbox().run_code("1/0", on_error=seen.append)
    assert isinstance(ex.error, ExecutionError)
    assert (ex.error.name, ex.error.value) == ("ZeroDivisionError", "division by zero")
    assert ex.error.traceback == "\n".join(tb) and "line 3" in ex.error.traceback
    assert seen == [ex.error] and ex.status == "error" and ex.text is None
    assert json.loads(ex.error.to_json())["name"] == "ZeroDivisionError"
    doc = json.loads(ex.to_json())
    assert doc["error"]["value"] == "division by zero" and doc["execution_count"] == 3
    assert doc["logs"] == {"stdout": ["before\n"], "stderr": []}


def test_kernel_died_is_a_code_error(fake: Fake) -> None:
    def script(e: Emit) -> None:
        e.ev(type="error", name="KernelDied", value="the kernel died (SIGKILL); restarted",
             traceback=[])
        e.end(count=None, status="error")
    fake.scripts["die"] = script
    ex = Sandbox().run_code("die")
    assert ex.error is not None and ex.error.name == "KernelDied"
    assert ex.error.traceback == "" and ex.execution_count is None


def test_stream_error_event_raises_with_message(fake: Fake) -> None:
    def script(e: Emit) -> None:
        e.ev(type="stdout", text="partial\n")
        e.ev(type="error", message="the sandbox's agent went away")
    fake.scripts["broken"] = script
    got: List[str] = []
    with pytest.raises(SandboxError, match="the sandbox's agent went away") as ei:
        Sandbox().run_code("broken", on_stdout=lambda m: got.append(m.line))
    assert type(ei.value) is SandboxError
    assert got == ["partial\n"]  # what arrived before the failure was delivered


def test_stream_cut_before_end_raises(fake: Fake) -> None:
    fake.scripts["cut"] = lambda e: e.ev(type="stdout", text="x")
    with pytest.raises(SandboxError, match="ended before the execution did"):
        Sandbox().run_code("cut")


def test_dropped_output_is_counted_and_marked(fake: Fake) -> None:
    def script(e: Emit) -> None:
        e.ev(type="stdout", text="a" * 10)
        e.ev(type="dropped", bytes=104857600)
        e.end()
    fake.scripts["flood"] = script
    msgs: List[OutputMessage] = []
    ex = Sandbox().run_code("flood", on_stdout=msgs.append)
    assert ex.dropped_bytes == 104857600
    assert ex.logs.stdout == ["a" * 10, "\n[ai2in: 104857600 bytes of output dropped]\n"]
    assert [m.line for m in msgs] == ex.logs.stdout


def test_unknown_events_are_ignored(fake: Fake) -> None:
    def script(e: Emit) -> None:
        e.ev(type="keepalive")
        e.ev(type="something_new", x=1)
        e.ev(type="result", data={"text/plain": "1"}, metadata={}, is_main_result=True)
        e.end()
    fake.scripts["new"] = script
    assert Sandbox().run_code("new").text == "1"


# -- callbacks ------------------------------------------------------------------------------


def test_callbacks_in_order_as_events_arrive(fake: Fake) -> None:
    def script(e: Emit) -> None:
        for i in range(3):
            e.ev(type="stdout", text=f"{i}\n")
            e.ev(type="stderr", text=f"e{i}\n")
            time.sleep(0.3)
        e.ev(type="result", data={"text/plain": "'done'"}, metadata={}, is_main_result=True)
        e.ev(type="error", name="ValueError", value="v", traceback=["t"])
        e.end(status="error")
    fake.scripts["stream"] = script
    calls: List[Any] = []
    t0 = time.monotonic()

    def rec(kind: str) -> Callable[[Any], None]:
        return lambda x: calls.append((kind, x, time.monotonic() - t0))
    ex = Sandbox().run_code("stream", on_stdout=rec("out"), on_stderr=rec("err"),
                            on_result=rec("res"), on_error=rec("error"))
    returned = time.monotonic() - t0
    kinds = [c[0] for c in calls]
    assert kinds == ["out", "err"] * 3 + ["res", "error"]
    outs = [c for c in calls if c[0] == "out"]
    assert [c[1].line for c in outs] == ["0\n", "1\n", "2\n"]
    assert all(isinstance(c[1], OutputMessage) and not c[1].error for c in outs)
    errs = [c[1] for c in calls if c[0] == "err"]
    assert all(m.error and str(m) == m.line for m in errs)
    assert outs[0][1].timestamp == TS_NS
    # Delivered as they arrived, not all at the end: ~0.3 s apart, the first well before the
    # call returned.
    assert outs[1][2] - outs[0][2] > 0.2 and outs[2][2] - outs[1][2] > 0.2
    assert outs[0][2] < returned - 0.5
    assert calls[-2][1] is ex.results[0] and calls[-1][1] is ex.error


def test_a_raising_callback_stops_the_execution(fake: Fake) -> None:
    def script(e: Emit) -> None:
        for i in range(200):
            e.ev(type="stdout", text=f"{i}\n")
            time.sleep(0.02)
        e.end()
    fake.scripts["long"] = script

    def boom(m: OutputMessage) -> None:
        raise RuntimeError("enough")
    with pytest.raises(RuntimeError, match="enough"):
        Sandbox().run_code("long", on_stdout=boom)
    assert fake.hung_up.wait(5), "the SDK kept the stream open after the callback raised"


# -- request bodies -------------------------------------------------------------------------


def test_timeout_language_envs_in_the_body(fake: Fake) -> None:
    fake.scripts["c"] = lambda e: e.end()
    sbx = Sandbox()
    sbx.run_code("c", timeout=2)
    assert last_body(fake, "/execute") == {"code": "c", "timeout_ms": 2000}
    sbx.run_code("c", timeout=0.25)
    assert last_body(fake, "/execute")["timeout_ms"] == 250
    sbx.run_code("c", timeout=0)
    assert last_body(fake, "/execute")["timeout_ms"] == 0
    sbx.run_code("c", timeout=None)
    assert "timeout_ms" not in last_body(fake, "/execute")
    sbx.run_code("c", language="bash", envs={"A": "1"})
    assert last_body(fake, "/execute") == {"code": "c", "language": "bash", "envs": {"A": "1"}}
    with pytest.raises(TypeError):
        sbx.run_code("c", timeout="2")  # type: ignore[arg-type]


def test_timed_out_execution(fake: Fake) -> None:
    def with_interrupt(e: Emit) -> None:
        e.ev(type="error", name="KeyboardInterrupt", value="", traceback=["KeyboardInterrupt"])
        e.end(count=4, status="interrupted", timed_out=True)
    fake.scripts["while True: pass"] = with_interrupt
    fake.scripts["sleep 100"] = lambda e: e.end(count=None, status="interrupted",
                                                 timed_out=True)
    sbx = Sandbox()
    ex = sbx.run_code("while True: pass", timeout=2)
    assert ex.timed_out and ex.status == "interrupted"
    assert ex.error is not None and ex.error.name == "KeyboardInterrupt"
    errors: List[ExecutionError] = []
    ex = sbx.run_code("sleep 100", language="bash", timeout=1.5, on_error=errors.append)
    assert ex.timed_out and ex.error is not None and ex.error.name == "TimeoutError"
    assert "1.5 s" in ex.error.value and errors == [ex.error]


def test_engine_errors_carry_the_message(fake: Fake) -> None:
    sbx = Sandbox()
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        sbx.run_code("")
    with pytest.raises(InvalidArgumentError, match="expected python, bash or javascript"):
        sbx.run_code("1", language="cobol")
    with pytest.raises(NotFoundError, match="no context ctx_nope") as ei:
        sbx.run_code("1", context="ctx_nope")
    assert ei.value.status == 404 and ei.value.code == "not_found"


# -- contexts -------------------------------------------------------------------------------


def test_contexts_lifecycle(fake: Fake) -> None:
    sbx = Sandbox()
    ctx = sbx.create_code_context(language="bash", cwd="/tmp", user="sandbox")
    assert last_body(fake, "/contexts") == {"language": "bash", "cwd": "/tmp",
                                            "user": "sandbox"}
    assert ctx == Context("ctx_1", "bash", "/tmp", "sandbox", False)
    py = sbx.create_code_context()
    assert last_body(fake, "/contexts") is None or last_body(fake, "/contexts") == {}
    assert py.language == "python" and py.cwd == "/home/sandbox"
    listed = sbx.list_code_contexts()
    assert [c.id for c in listed] == ["ctx_default", "ctx_1", "ctx_2"]
    assert listed[0].default and not listed[1].default
    assert sbx.restart_code_context(ctx) == ctx
    assert fake.requests[-1]["path"] == f"/v1/sandboxes/{SID}/contexts/ctx_1/restart"
    assert sbx.restart_code_context("ctx_2").id == "ctx_2"
    sbx.remove_code_context(ctx)
    assert fake.requests[-1]["method"] == "DELETE"
    assert fake.requests[-1]["path"] == f"/v1/sandboxes/{SID}/contexts/ctx_1"
    with pytest.raises(NotFoundError, match="no context ctx_1"):
        sbx.remove_code_context(ctx)
    with pytest.raises(NotFoundError, match="no context ctx_1"):
        sbx.restart_code_context("ctx_1")
    with pytest.raises(InvalidArgumentError, match="unknown language"):
        sbx.create_code_context(language="cobol")


def test_run_in_a_context_and_language_conflicts(fake: Fake) -> None:
    fake.scripts["c"] = lambda e: e.end()
    sbx = Sandbox()
    ctx = sbx.create_code_context(language="javascript")
    ex = sbx.run_code("c", context=ctx)
    assert last_body(fake, "/execute") == {"code": "c", "context_id": ctx.id}
    assert ex.context_id == ctx.id
    sbx.run_code("c", context=ctx.id)
    assert last_body(fake, "/execute") == {"code": "c", "context_id": ctx.id}
    sbx.run_code("c", context=ctx, language="JS")  # the same language: fine
    n = len(fake.requests)
    with pytest.raises(ValueError, match="conflicts"):
        sbx.run_code("c", context=ctx, language="python")
    assert len(fake.requests) == n  # refused before anything was sent
    with pytest.raises(ValueError, match="conflicts"):  # an id: its language is looked up
        sbx.run_code("c", context=ctx.id, language="bash")
    with pytest.raises(TypeError):
        sbx.run_code("c", context=42)  # type: ignore[arg-type]


# -- async ----------------------------------------------------------------------------------


def test_async_run_code_and_contexts(fake: Fake) -> None:
    def script(e: Emit) -> None:
        e.ev(type="stdout", text="a\n")
        time.sleep(0.2)
        e.ev(type="stdout", text="b\n")
        e.ev(type="result", data={"text/plain": "2"}, metadata={}, is_main_result=True)
        e.end(count=2)
    fake.scripts["x"] = script

    async def main() -> Execution:
        sbx = await AsyncSandbox.create()
        calls: List[Any] = []
        loop_thread = threading.get_ident()

        async def on_stdout(m: OutputMessage) -> None:
            assert threading.get_ident() == loop_thread  # callbacks run in the event loop
            await asyncio.sleep(0)
            calls.append(m.line)

        ex = await sbx.run_code("x", on_stdout=on_stdout,
                                on_result=lambda r: calls.append(r.text))
        assert calls == ["a\n", "b\n", "2"]
        ctx = await sbx.create_code_context(language="bash")
        assert [c.id for c in await sbx.list_code_contexts()] == ["ctx_default", ctx.id]
        assert (await sbx.restart_code_context(ctx)).id == ctx.id
        await sbx.remove_code_context(ctx)
        with pytest.raises(NotFoundError):
            await sbx.run_code("x", context=ctx)
        return ex

    ex = asyncio.run(main())
    assert ex.text == "2" and ex.execution_count == 2


def test_async_stream_error_and_cancel(fake: Fake) -> None:
    fake.scripts["broken"] = lambda e: e.ev(type="error", message="agent gone")

    def slow(e: Emit) -> None:
        for i in range(300):
            e.ev(type="stdout", text=f"{i}\n")
            time.sleep(0.02)
        e.end()
    fake.scripts["slow"] = slow

    async def main() -> None:
        sbx = await AsyncSandbox.create()
        with pytest.raises(SandboxError, match="agent gone"):
            await sbx.run_code("broken")
        task = asyncio.ensure_future(sbx.run_code("slow"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert fake.hung_up.wait(5), "cancelling run_code left the stream open"
