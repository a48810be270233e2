"""Boundaries that already hold, probed from inside a real sandbox so that none of them can
come back unnoticed: root inside is not root outside, no mount or new namespaces, the agent
can be neither traced nor replaced, no raw sockets, another team's sandbox is a 404."""

from __future__ import annotations

import pytest
from ai2in import NotFoundError, Sandbox
from it import Engine


def sh(sbx: Sandbox, cmd: str, user: str = "root") -> str:
    r = sbx.commands.run(cmd, user=user)
    return (r.stdout + r.stderr).strip()


def test_root_inside_maps_to_an_unprivileged_host_uid(sbx: Sandbox) -> None:
    assert sh(sbx, "id -u") == "0"
    line = sh(sbx, "cat /proc/self/uid_map").split()
    assert line[0] == "0" and int(line[1]) >= 100000, line  # host uid of root inside


@pytest.mark.parametrize("cmd", [
    "mount -t tmpfs none /mnt",
    "unshare -U true",
    "unshare -m true",
    "unshare -n true",
])
def test_no_mount_and_no_new_namespaces(sbx: Sandbox, cmd: str) -> None:
    r = sbx.commands.run(cmd + "; echo rc=$?", user="root")
    assert "rc=0" not in r.stdout, (cmd, r.stdout, r.stderr)


def test_the_agent_is_neither_traced_nor_replaced(sbx: Sandbox) -> None:
    out = sh(sbx, "python3 -c \"import ctypes; l = ctypes.CDLL(None); print(l.ptrace(16, 1, 0, 0))\"")
    assert out == "-1", out  # PTRACE_ATTACH to the agent (pid 1) refused
    out = sh(sbx, "a=$(readlink /proc/1/exe); echo x >> \"$a\" 2>&1; echo rc=$?")
    assert "rc=0" not in out, out


def test_no_raw_sockets(sbx: Sandbox) -> None:
    out = sh(sbx, "python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\" 2>&1; echo rc=$?")
    assert "rc=0" not in out and "Operation not permitted" in out, out


def test_another_teams_sandbox_is_a_404(engine: Engine, sbx: Sandbox, fresh_key: str) -> None:
    with pytest.raises(NotFoundError):
        engine.connect(sbx.id, fresh_key)
    code, _, _ = engine.raw("DELETE", f"/v1/sandboxes/{sbx.id}", key=fresh_key)
    assert code == 404
    assert sbx.commands.run("echo alive").stdout == "alive\n"
