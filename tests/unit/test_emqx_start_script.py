"""The EMQX container's start script, with a stand-in `emqx` that behaves like EMQX 5.8's CLI.

Stands in for a redeploy onto a kept EMQX volume: `emqx ctl` fails until the node is up
(`Node ... not responding to pings`), then `admins passwd` answers `ok` (or EMQX's own
`Error: ...` for a password it refuses, emqx_dashboard_cli.erl). The script must hand the
password and cookie from their files to the EMQX process only, set the admin password once
the node answers, and mark readiness only then.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from components.emqx import START_SCRIPT

PASSWORD = "Dashb0ardPassw0rd"
COOKIE = "NodeC00kie"
FAKE_EMQX = """#!/bin/bash
state="$FAKE_EMQX_STATE"
case "$1" in
  ctl)
    n=$(( $(cat "$state/calls" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$state/calls"
    if [ "$n" -lt 3 ]; then echo "Node emqx@127.0.0.1 not responding to pings."; exit 1; fi
    echo "$*" > "$state/ctl"
    echo "${FAKE_EMQX_ANSWER:-ok}" ;;
  foreground)
    env > "$state/foreground-env"
    exec sleep 60 ;;
esac
"""


def _start(tmp_path: Path, **extra_env: str) -> tuple[subprocess.Popen, Path, Path]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "emqx").write_text(FAKE_EMQX)
    (bin_dir / "docker-entrypoint.sh").write_text('#!/bin/sh\nexec "$@"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    (tmp_path / "dashboard-password").write_text(PASSWORD)
    (tmp_path / "node-cookie").write_text(COOKIE)
    ready = tmp_path / "ready"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_EMQX_STATE": str(state),
        "TELEMETRY_DASHBOARD_PASSWORD_FILE": str(tmp_path / "dashboard-password"),
        "TELEMETRY_NODE_COOKIE_FILE": str(tmp_path / "node-cookie"),
        "TELEMETRY_READY_FILE": str(ready),
        **extra_env,
    }
    process = subprocess.Popen(["bash", str(START_SCRIPT)], env=env, stderr=subprocess.PIPE, text=True)
    return process, state, ready


def _wait_for(path: Path, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return path.exists()


@pytest.fixture()
def stop_later():
    processes: list[subprocess.Popen] = []
    yield processes.append
    for process in processes:
        process.terminate()
        process.wait(10)


def test_the_admin_password_is_set_once_the_node_answers(tmp_path, stop_later):
    process, state, ready = _start(tmp_path)
    stop_later(process)
    assert _wait_for(ready), "the ready file never appeared"
    assert (state / "ctl").read_text().split() == ["ctl", "admins", "passwd", "admin", PASSWORD]
    assert int((state / "calls").read_text()) == 3  # retried while the node was not up
    foreground = dict(line.split("=", 1) for line in (state / "foreground-env").read_text().splitlines() if "=" in line)
    # EMQX gets them in its own environment (first boot creates admin with the password)...
    assert foreground["EMQX_DASHBOARD__DEFAULT_PASSWORD"] == f'"{PASSWORD}"'
    assert foreground["EMQX_NODE__COOKIE"] == COOKIE
    assert process.poll() is None  # EMQX runs in the foreground: the container lives as long as it does


def test_a_refused_password_never_marks_the_container_ready(tmp_path, stop_later):
    process, state, ready = _start(
        tmp_path, FAKE_EMQX_ANSWER="Error: Bad password.", TELEMETRY_ADMIN_PASSWORD_TIMEOUT="5"
    )
    stop_later(process)
    calls = state / "calls"
    deadline = time.monotonic() + 20
    while not (calls.exists() and int(calls.read_text() or 0) >= 3) and time.monotonic() < deadline:
        time.sleep(0.1)  # the node answered, and refused the password
    process.terminate()
    # stderr closes when the script's helper gives up, after its own 5 s deadline.
    _, stderr = process.communicate(timeout=20)
    assert "could not set the password of the dashboard user admin: Error: Bad password." in stderr
    assert not ready.exists()
