"""`make deploy` on a machine without its prerequisites: one clear paragraph, non-zero exit, nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_deploy(bin_dir: Path) -> subprocess.CompletedProcess:
    # A PATH holding only the given folder: what is not there is "not installed".
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "deploy.py")],
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True, text=True, timeout=60,
    )


def fake_command(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_missing_docker_and_pulumi_stop_the_deploy(tmp_path):
    result = run_deploy(tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message, "one paragraph"
    assert message.startswith("Cannot deploy the telemetry stack:")
    assert "the Docker CLI is not installed" in message and "docs.docker.com/engine/install" in message
    assert "the pulumi CLI 3.x is not installed" in message and "get.pulumi.com" in message
    assert "Traceback" not in result.stderr


def test_a_docker_cli_without_an_engine_is_named(tmp_path):
    fake_command(tmp_path, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    fake_command(tmp_path, "pulumi", "echo v3.200.0")
    result = run_deploy(tmp_path)
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stderr
    assert "pulumi CLI" not in result.stderr



# ---------------------------------------------------------------- with Docker and pulumi present

# What the stack's containers publish (`docker ps --format {{.Ports}}`): a redeploy finds its own ports taken.
OWN_PORTS = (
    "127.0.0.1:15432->5432/tcp, 0.0.0.0:11883->1883/tcp, 0.0.0.0:18883->8883/tcp, "
    "127.0.0.1:18083->18083/tcp, 127.0.0.1:18000->8000/tcp"
)
FAKE_PULUMI = """
echo "$* | backend=${PULUMI_BACKEND_URL-}" >> "$PULUMI_LOG"
case "$1" in
  whoami) exit 1 ;;  # not logged in anywhere
  stack) [ "$2" = select ] && exit 1; exit 0 ;;
  *) exit 0 ;;
esac
"""


def fake_tools(bin_dir: Path, volumes: str = "") -> None:
    fake_command(bin_dir, "docker", f"""
case "$1" in
  info) echo 27.0.0 ;;
  ps) echo '{OWN_PORTS}' ;;
  volume) printf '%s\\n' {volumes} ;;
esac""")
    fake_command(bin_dir, "pulumi", FAKE_PULUMI)


def run_script(script: str, bin_dir: Path, tmp_path: Path, *, stdin_tty: bool, extra_env: dict | None = None):
    """Run a make script with stdout piped (as `make deploy | tee log` does) and stdin a terminal or not."""
    import pty

    log = tmp_path / "pulumi.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PULUMI_LOG": str(log),
        "TERM": "xterm",
        **(extra_env or {}),
    }
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script)],
            env=env, stdin=follower if stdin_tty else subprocess.DEVNULL,
            capture_output=True, text=True, timeout=300,
        )
    finally:
        os.close(leader)
        os.close(follower)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_a_piped_deploy_passes_yes_and_never_changes_the_users_login(tmp_path):
    fake_tools(tmp_path)
    result, calls = run_script("deploy.py", tmp_path, tmp_path, stdin_tty=True,
                               extra_env={"PULUMI_CONFIG_PASSPHRASE": "test"})
    assert result.returncode == 0, result.stderr
    commands = [call.split(" | ")[0] for call in calls]
    assert not [c for c in commands if c.startswith("login")], "pulumi login changes the user's global backend"
    # stdin is a terminal but stdout a pipe: pulumi is non-interactive, so `up` needs --yes.
    assert "up --stack dev --yes" in commands
    backends = {call.split(" | ")[1] for call in calls if not call.startswith("whoami")}
    assert backends == {f"backend={(ROOT / '.pulumi-state').as_uri()}"}


def test_a_ci_deploy_without_a_passphrase_stops_before_pulumi_runs(tmp_path):
    fake_tools(tmp_path)
    result, calls = run_script("deploy.py", tmp_path, tmp_path, stdin_tty=False, extra_env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 1
    assert "set PULUMI_CONFIG_PASSPHRASE" in result.stderr and "Nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert [call for call in calls if not call.startswith("whoami")] == []


@pytest.mark.parametrize(
    ("environ", "stdin_tty", "stdout_tty", "interactive"),
    [
        ({"TERM": "xterm"}, True, True, True),
        ({"TERM": "xterm"}, True, False, False),  # `make deploy | tee log`
        ({"TERM": "xterm"}, False, True, False),
        ({"TERM": "dumb"}, True, True, False),
        ({"TERM": "xterm", "GITLAB_CI": "true"}, True, True, False),
        ({"TERM": "xterm", "CI_NAME": "codeship"}, True, True, False),
        ({"TERM": "xterm", "GITLAB_CI": "true", "PULUMI_DISABLE_CI_DETECTION": "1"}, True, True, True),
        # Like pulumi, a bare CI=true is not a CI system it knows.
        ({"TERM": "xterm", "CI": "true"}, True, True, True),
    ],
)
def test_interactivity_is_decided_as_the_pulumi_cli_decides(environ, stdin_tty, stdout_tty, interactive):
    from scripts.pulumi_env import pulumi_is_interactive

    class Stream:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert pulumi_is_interactive(environ, Stream(stdin_tty), Stream(stdout_tty)) is interactive


def test_destroy_keeps_the_volumes_and_says_how_to_remove_them(tmp_path):
    fake_tools(tmp_path, volumes="telemetry-dev-timescaledb-data telemetry-dev-emqx-data")
    result, calls = run_script("destroy.py", tmp_path, tmp_path, stdin_tty=False,
                               extra_env={"PULUMI_CONFIG_PASSPHRASE": "test"})
    assert result.returncode == 0, result.stderr
    assert "destroy --stack dev --exclude-protected --yes" in [call.split(" | ")[0] for call in calls]
    out = result.stdout
    assert "Docker volume telemetry-dev-timescaledb-data: the database" in out
    assert "Docker volume telemetry-dev-emqx-data: EMQX's data" in out
    assert "pulumi state unprotect --all --yes --stack dev" in out
    assert "docker volume rm telemetry-dev-timescaledb-data telemetry-dev-emqx-data" in out
