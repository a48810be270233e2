"""Running code in a sandbox: ``sbx.run_code("x + 1")``, in the style of E2B's code interpreter.

Code runs in contexts: one live interpreter each (an IPython kernel for Python, a persistent
``bash`` or ``node``), whose state (variables, imports, working directory) lasts from one call
to the next, also across SDK objects and processes. ``run_code`` sends
``POST /v1/sandboxes/{id}/execute`` and reads its event stream to the end, calling the
callbacks as events arrive; it returns an ``Execution`` (results, logs, error). The models here
mirror E2B's (``Execution``, ``Result``, ``Logs``, ``ExecutionError``, ``OutputMessage``,
``Context``) so that code written against E2B reads the same.

``ExecutionBuilder`` turns the events into an ``Execution``; the sync client (``CodeApi.run``)
and ``AsyncSandbox`` share it and differ only in how they wait for events and call callbacks.
"""

from __future__ import annotations

import datetime
import json as _json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, Union

from ._stream import EventStream, dropped_marker
from ._transport import Transport, sandbox_path
from .commands import timeout_ms
from .exceptions import SandboxError

__all__ = ["CodeApi", "Context", "Execution", "ExecutionBuilder", "ExecutionError", "Logs",
           "OutputHandler", "OutputMessage", "Result", "MIME_FIELDS"]

T = TypeVar("T")
# A callback: a plain function, or (with AsyncSandbox) a coroutine function too.
OutputHandler = Union[Callable[[T], Any], Callable[[T], Awaitable[Any]]]

# The MIME types that have an attribute of their own on a Result; any other goes to ``extra``.
MIME_FIELDS: Dict[str, str] = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}

# Aliases the engine accepts for a language (case-insensitive), for comparing a context's
# language with an explicit ``language=`` argument.
_LANGUAGE_ALIASES = {"js": "javascript", "sh": "bash"}


def _norm_language(language: str) -> str:
    lang = language.strip().lower()
    return _LANGUAGE_ALIASES.get(lang, lang)


def _timestamp_ns(ts: Any) -> int:
    """An event's ``ts`` (RFC 3339, e.g. ``2026-11-27T00:00:00.090Z``) as Unix nanoseconds;
    the time of arrival if it is missing or unreadable."""
    if isinstance(ts, str):
        try:
            dt = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=datetime.timezone.utc)
            epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
            delta = dt - epoch
            return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
        except ValueError:
            pass
    return time.time_ns()


# -- models --------------------------------------------------------------------------------


@dataclass
class OutputMessage:
    """One chunk of standard output or error, as the code printed it (one stream event).

    ``line`` is the text (it may hold several lines, or part of one); ``timestamp`` is when the
    engine saw it, in Unix nanoseconds; ``error`` is True for standard error.
    """

    line: str
    timestamp: int
    error: bool = False

    def __str__(self) -> str:
        return self.line


@dataclass
class ExecutionError:
    """What the code raised: ``name`` (e.g. ``ZeroDivisionError``; ``KernelDied`` when the
    interpreter died and was restarted), ``value`` (the message) and ``traceback`` (the
    interpreter's traceback lines, joined with newlines; Python's carry ANSI colours)."""

    name: str
    value: str
    traceback: str

    def to_json(self) -> str:
        """The error as a JSON object ``{"name", "value", "traceback"}``."""
        return _json.dumps({"name": self.name, "value": self.value,
                            "traceback": self.traceback})

    def __str__(self) -> str:
        return f"{self.name}: {self.value}" if self.value else self.name


class Result:
    """A displayable value the code produced: the value of the cell's last expression
    (``is_main_result`` True), or a display such as a matplotlib figure or ``display(df)``.

    Each representation the interpreter sent is an attribute: ``text`` (text/plain), ``html``,
    ``markdown``, ``svg``, ``png`` and ``jpeg`` (base64), ``pdf``, ``latex``, ``json`` (the
    decoded value), ``javascript``; other MIME types are in ``extra`` (MIME → value). ``data``
    is the whole bundle exactly as sent (MIME → value) and ``metadata`` the interpreter's
    metadata. The ``_repr_*_`` methods let a notebook show a Result natively;
    ``str(result)`` is its text.
    """

    text: Optional[str]
    html: Optional[str]
    markdown: Optional[str]
    svg: Optional[str]
    png: Optional[str]
    jpeg: Optional[str]
    pdf: Optional[str]
    latex: Optional[str]
    json: Any
    javascript: Optional[str]

    def __init__(self, data: Optional[Mapping[str, Any]] = None, is_main_result: bool = False,
                 metadata: Optional[Mapping[str, Any]] = None) -> None:
        self.data: Dict[str, Any] = dict(data or {})
        self.metadata: Dict[str, Any] = dict(metadata or {})
        self.is_main_result: bool = bool(is_main_result)
        self.extra: Dict[str, Any] = {}
        for attr in MIME_FIELDS.values():
            setattr(self, attr, None)
        for mime, value in self.data.items():
            field_name = MIME_FIELDS.get(mime)
            if field_name is None:
                self.extra[mime] = value
            else:
                setattr(self, field_name, value)

    @classmethod
    def from_event(cls, ev: Mapping[str, Any]) -> "Result":
        """Builds a Result from a ``result`` event of the stream."""
        data = ev.get("data")
        meta = ev.get("metadata")
        return cls(data if isinstance(data, dict) else {}, bool(ev.get("is_main_result")),
                   meta if isinstance(meta, dict) else {})

    def formats(self) -> List[str]:
        """The representations present: attribute names (``"text"``, ``"png"``, ...) first,
        then the MIME types of ``extra``."""
        out = [name for name in MIME_FIELDS.values() if getattr(self, name) is not None]
        return out + list(self.extra)

    def __getitem__(self, item: str) -> Any:
        """``result["png"]`` is ``result.png``."""
        return getattr(self, item)

    def to_dict(self) -> Dict[str, Any]:
        """The representations present (by attribute name, extra MIME types as they are) and
        ``is_main_result``."""
        out: Dict[str, Any] = {name: getattr(self, name) for name in MIME_FIELDS.values()
                               if getattr(self, name) is not None}
        out.update(self.extra)
        out["is_main_result"] = self.is_main_result
        return out

    def to_json(self) -> str:
        """``to_dict()`` as JSON."""
        return _json.dumps(self.to_dict())

    def __str__(self) -> str:
        return self.text if self.text is not None else repr(self)

    def __repr__(self) -> str:
        if self.text is not None:
            return f"Result({self.text})"
        return "Result(Formats: " + ", ".join(self.formats()) + ")"

    def _repr_html_(self) -> Optional[str]:
        return self.html

    def _repr_markdown_(self) -> Optional[str]:
        return self.markdown

    def _repr_svg_(self) -> Optional[str]:
        return self.svg

    def _repr_png_(self) -> Optional[str]:
        return self.png

    def _repr_jpeg_(self) -> Optional[str]:
        return self.jpeg

    def _repr_pdf_(self) -> Optional[str]:
        return self.pdf

    def _repr_latex_(self) -> Optional[str]:
        return self.latex

    def _repr_json_(self) -> Any:
        return self.json

    def _repr_javascript_(self) -> Optional[str]:
        return self.javascript


@dataclass
class Logs:
    """What the code printed: ``stdout`` and ``stderr`` as lists of chunks, one per event, in
    order (``"".join(logs.stdout)`` is the whole output)."""

    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)

    def to_json(self) -> str:
        """``{"stdout": [...], "stderr": [...]}`` as JSON."""
        return _json.dumps({"stdout": self.stdout, "stderr": self.stderr})


@dataclass
class Execution:
    """The outcome of one ``run_code`` call.

    Attributes:
        results: the displays and the main result, in the order produced.
        logs: standard output and error chunks.
        error: what the code raised, or None. A kernel that died is an error named
            ``KernelDied`` (the context was restarted fresh). An execution stopped at its
            ``timeout`` carries the interpreter's error (``KeyboardInterrupt`` for Python), or
            one named ``TimeoutError`` if the interpreter reported none.
        execution_count: the IPython cell number (None for bash and JavaScript).
        status: ``"ok"``, ``"error"`` or ``"interrupted"``.
        timed_out: True when the engine interrupted the execution at its timeout (the
            context and its state survive).
        dropped_bytes: output the engine did not send because one execution printed more
            than 32 MiB; a line ``[ai2in: N bytes of output dropped]`` marks it in
            ``logs.stdout``.
        context_id: the context the code ran in.
    """

    results: List[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: Optional[ExecutionError] = None
    execution_count: Optional[int] = None
    status: Optional[str] = None
    timed_out: bool = False
    dropped_bytes: int = 0
    context_id: Optional[str] = None

    @property
    def text(self) -> Optional[str]:
        """The text of the main result (the value of the last expression), or None."""
        for r in self.results:
            if r.is_main_result:
                return r.text
        return None

    def to_json(self) -> str:
        """The execution as one JSON object: results (see ``Result.to_dict``), logs, error,
        execution_count."""
        return _json.dumps({
            "results": [r.to_dict() for r in self.results],
            "logs": {"stdout": self.logs.stdout, "stderr": self.logs.stderr},
            "error": None if self.error is None else {
                "name": self.error.name, "value": self.error.value,
                "traceback": self.error.traceback},
            "execution_count": self.execution_count,
        })

    def __repr__(self) -> str:
        return (f"Execution(Results: {self.results}, Logs: {self.logs}, Error: {self.error})")


@dataclass(frozen=True)
class Context:
    """A code context: one live interpreter with its own state.

    ``default`` is True for a language's default context (used when a call names none).
    """

    id: str
    language: str
    cwd: str
    user: str = "root"
    default: bool = False

    @classmethod
    def from_json(cls, doc: Any) -> "Context":
        """Builds it from the engine's context object."""
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise SandboxError(f"unexpected answer from the engine (no context object): "
                               f"{str(doc)[:200]}")

        def s(k: str, default: str) -> str:
            v = doc.get(k)
            return v if isinstance(v, str) else default
        return cls(id=doc["id"], language=s("language", "python"), cwd=s("cwd", ""),
                   user=s("user", "root"), default=bool(doc.get("default")))


ContextRef = Union[Context, str]


def context_id(context: ContextRef) -> str:
    """The id of a Context, or the string itself."""
    if isinstance(context, Context):
        return context.id
    if isinstance(context, str) and context:
        return context
    raise TypeError(f"context must be a Context or a context id, not {context!r}")


# -- the event stream ----------------------------------------------------------------------

# (callback kind, argument): kinds are "stdout", "stderr", "result", "error".
Dispatch = Tuple[str, Any]


class ExecutionBuilder:
    """Applies the events of one execution's stream to an ``Execution``.

    ``apply(ev)`` returns the callbacks the event calls for, as (kind, argument) pairs, for the
    caller to run in order; ``done`` turns True at the ``end`` event. A stream ``error`` event
    (the engine's failure, with only a ``message``) raises SandboxError.
    """

    def __init__(self, sandbox_id: str, timeout: Optional[float]) -> None:
        self.sandbox_id = sandbox_id
        self.timeout = timeout
        self.execution = Execution()
        self.done = False

    def apply(self, ev: Mapping[str, Any]) -> List[Dispatch]:
        ex = self.execution
        t = ev.get("type")
        if t == "stdout" or t == "stderr":
            text = ev.get("text")
            if not isinstance(text, str):
                raise SandboxError(f"output event without text from {self.sandbox_id}: "
                                   f"{str(ev)[:200]}")
            (ex.logs.stdout if t == "stdout" else ex.logs.stderr).append(text)
            return [(t, OutputMessage(text, _timestamp_ns(ev.get("ts")), t == "stderr"))]
        if t == "result":
            r = Result.from_event(ev)
            ex.results.append(r)
            return [("result", r)]
        if t == "error":
            if "name" not in ev:  # the stream failed: the engine's message only
                raise SandboxError(f"running code in {self.sandbox_id} failed: "
                                   f"{ev.get('message') or 'the stream failed'}")
            tb = ev.get("traceback")
            lines = [str(x) for x in tb] if isinstance(tb, list) else \
                ([tb] if isinstance(tb, str) else [])
            ex.error = ExecutionError(str(ev.get("name") or ""), str(ev.get("value") or ""),
                                      "\n".join(lines))
            return [("error", ex.error)]
        if t == "dropped":
            n = ev.get("bytes")
            n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0
            ex.dropped_bytes += n
            marker = dropped_marker(n)
            prev = ex.logs.stdout[-1] if ex.logs.stdout else "\n"
            chunk = ("" if prev.endswith("\n") else "\n") + marker + "\n"
            ex.logs.stdout.append(chunk)
            return [("stdout", OutputMessage(chunk, _timestamp_ns(ev.get("ts")), False))]
        if t == "start":
            cid = ev.get("context_id")
            ex.context_id = cid if isinstance(cid, str) else ex.context_id
            return []
        if t == "end":
            self.done = True
            n = ev.get("execution_count")
            ex.execution_count = n if isinstance(n, int) and not isinstance(n, bool) else None
            status = ev.get("status")
            ex.status = status if isinstance(status, str) else None
            ex.timed_out = bool(ev.get("timed_out"))
            if ex.timed_out and ex.error is None:
                after = "" if self.timeout is None else f" after {self.timeout:g} s"
                ex.error = ExecutionError("TimeoutError", f"the execution timed out{after} "
                                          "and was interrupted", "")
                return [("error", ex.error)]
            return []
        return []  # unknown types: newer engines may add some

    def finish(self) -> Execution:
        """The Execution, once the stream is over; raises if it ended before ``end``."""
        if not self.done:
            raise SandboxError(f"the execution stream of {self.sandbox_id} ended before the "
                               "execution did")
        return self.execution


@dataclass
class Callbacks:
    """The callbacks of one ``run_code`` call, by kind."""

    on_stdout: Optional[Callable[[OutputMessage], Any]] = None
    on_stderr: Optional[Callable[[OutputMessage], Any]] = None
    on_result: Optional[Callable[[Result], Any]] = None
    on_error: Optional[Callable[[ExecutionError], Any]] = None

    def get(self, kind: str) -> Optional[Callable[[Any], Any]]:
        return {"stdout": self.on_stdout, "stderr": self.on_stderr, "result": self.on_result,
                "error": self.on_error}[kind]


# -- the routes ----------------------------------------------------------------------------


class CodeApi:
    """The ``/execute`` and ``/contexts`` routes of one sandbox (behind ``Sandbox.run_code``
    and the ``*_code_context`` methods)."""

    def __init__(self, sandbox_id: str, transport: Transport) -> None:
        self.sandbox_id = sandbox_id
        self.transport = transport

    def _contexts_path(self, ctx: Optional[ContextRef] = None, suffix: str = "") -> str:
        p = "/contexts"
        if ctx is not None:
            p += "/" + urllib.parse.quote(context_id(ctx), safe="")
        return sandbox_path(self.sandbox_id, p + suffix)

    def execute_body(self, code: str, language: Optional[str], context: Optional[ContextRef],
                     envs: Optional[Mapping[str, str]], timeout: Optional[float]
                     ) -> Dict[str, Any]:
        """The request body of ``run_code``; checks ``language`` against ``context``."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        body: Dict[str, Any] = {"code": code}
        if context is not None:
            body["context_id"] = context_id(context)
            if language is not None:
                self._check_language(context, language)
        elif language is not None:
            body["language"] = language
        if envs is not None:
            body["envs"] = dict(envs)
        if timeout is not None:
            body["timeout_ms"] = timeout_ms(timeout)
        return body

    def _check_language(self, context: ContextRef, language: str) -> None:
        if isinstance(context, Context):
            ctx_lang: Optional[str] = context.language
        else:  # an id: look its language up (an unknown id is left to the engine's 404)
            ctx_lang = next((c.language for c in self.list_contexts() if c.id == context),
                            None)
        if ctx_lang is not None and _norm_language(ctx_lang) != _norm_language(language):
            raise ValueError(f"language {language!r} conflicts with context "
                             f"{context_id(context)}, a {ctx_lang} context: pass one of them")

    def open(self, body: Dict[str, Any]) -> EventStream:
        """Starts an execution; returns its event stream."""
        return self.transport.open_stream("POST", sandbox_path(self.sandbox_id, "/execute"),
                                          body=body)

    def run(self, code: str, language: Optional[str] = None,
            context: Optional[ContextRef] = None, callbacks: Optional[Callbacks] = None,
            envs: Optional[Mapping[str, str]] = None,
            timeout: Optional[float] = None) -> Execution:
        """Runs code and reads its stream to the end in this thread; see Sandbox.run_code."""
        body = self.execute_body(code, language, context, envs, timeout)
        cbs = callbacks or Callbacks()
        builder = ExecutionBuilder(self.sandbox_id, timeout)
        stream = self.open(body)
        try:  # closing the stream early (a callback raised, Ctrl-C) interrupts the execution
            for ev in stream:
                for kind, arg in builder.apply(ev):
                    cb = cbs.get(kind)
                    if cb is not None:
                        cb(arg)
                if builder.done:
                    break
        finally:
            stream.close()
        return builder.finish()

    def create_context(self, language: Optional[str] = None, cwd: Optional[str] = None,
                       user: Optional[str] = None) -> Context:
        """``POST …/contexts``: a new interpreter, returned once it answers."""
        body: Dict[str, Any] = {}
        if language is not None:
            body["language"] = language
        if cwd is not None:
            body["cwd"] = cwd
        if user is not None:
            body["user"] = user
        return Context.from_json(self.transport.request("POST", self._contexts_path(),
                                                        body=body))

    def list_contexts(self) -> List[Context]:
        """``GET …/contexts``."""
        doc = self.transport.request("GET", self._contexts_path())
        if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), list):
            raise SandboxError(f"unexpected answer to a context list in {self.sandbox_id}: "
                               f"{str(doc)[:200]}")
        return [Context.from_json(c) for c in doc["contexts"]]

    def restart_context(self, context: ContextRef) -> Context:
        """``POST …/contexts/{id}/restart``."""
        return Context.from_json(self.transport.request(
            "POST", self._contexts_path(context, "/restart")))

    def remove_context(self, context: ContextRef) -> None:
        """``DELETE …/contexts/{id}``."""
        self.transport.request("DELETE", self._contexts_path(context))

