"""Pseudo-terminals through the SDK against the real engine: an interactive shell that
answers typed input, resizing seen by the program, TERM, kill, and the errors."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest
from conftest import wait_for

from ai2in import ConflictError, InvalidArgumentError, NotFoundError, Sandbox


class Screen:
    """Collects a terminal's output bytes (from the handle's reader thread)."""

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        with self.lock:
            self.chunks.append(data)

    @property
    def text(self) -> str:
        with self.lock:
            return b"".join(self.chunks).decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout: float = 10) -> None:
        wait_for(lambda: needle in self.text, timeout, f"{needle!r} on the terminal; got "
                 f"{self.text[-500:]!r}")


def test_interactive_shell(sbx: Sandbox) -> None:
    screen = Screen()
    t = sbx.pty.create(cols=80, rows=24, on_data=screen)
    assert t.pid > 1
    t.send_input(b"echo $((6*7))\n")
    screen.wait_for("42")
    t.send_input("stty size; echo $TERM\n")
    screen.wait_for("24 80")
    screen.wait_for("xterm-256color")
    t.resize(120, 40)
    t.send_input("stty size\n")
    screen.wait_for("40 120")
    listed = [p for p in sbx.commands.list() if p.pid == t.pid]
    assert len(listed) == 1 and listed[0].pty
    assert t.kill() is True
    r = t.wait(timeout=10)
    assert r.exit_code == 137 and "42" in r.stdout
    assert t.kill() is False


def test_pty_runs_a_command_with_a_tty(sbx: Sandbox) -> None:
    screen = Screen()
    t = sbx.pty.create(cols=100, rows=30, on_data=screen, cmd="tty; stty size; exit 4")
    r = t.wait(timeout=10)
    assert r.exit_code == 4
    assert "/dev/pts/" in screen.text and "30 100" in screen.text


def test_shell_exit_ends_the_terminal(sbx: Sandbox) -> None:
    t = sbx.pty.create(on_data=lambda b: None)
    t.send_input("exit 3\n")
    assert t.wait(timeout=10).exit_code == 3


def test_closing_the_stream_kills_a_foreground_terminal(sbx: Sandbox) -> None:
    t = sbx.pty.create()
    t.disconnect()
    wait_for(lambda: t.pid not in [p.pid for p in sbx.commands.list()], 10,
             "the terminal to be killed when its client went away")
    bg = sbx.pty.create(background=True)
    bg.disconnect()
    time.sleep(0.5)
    assert bg.pid in [p.pid for p in sbx.commands.list()]
    screen = Screen()
    again = sbx.pty.connect(bg.pid, on_data=screen)
    again.send_input("echo back$((1+1))\n")
    screen.wait_for("back2")
    assert again.kill() is True


def test_pty_errors(sbx: Sandbox) -> None:
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.pty.create(cols=0, rows=24)
    assert "cols" in str(ei.value)
    with pytest.raises(InvalidArgumentError):
        sbx.pty.create(cols=80, rows=1001)
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.pty.create(user="nobody-such")
    assert "user" in str(ei.value)
    h = sbx.commands.run("sleep 30", background=True)
    with pytest.raises(ConflictError) as ce:
        sbx.pty.resize(h.pid, 100, 30)
    assert ce.value.status == 409 and str(ce.value)
    assert h.kill()
    t = sbx.pty.create()
    with pytest.raises(InvalidArgumentError):
        t.resize(0, 10)
    assert t.kill()
    t.wait(timeout=10)
    with pytest.raises(NotFoundError):
        t.send_input("x")
    with pytest.raises(NotFoundError):
        t.resize(80, 24)
