"""`make deploy` on a machine without its prerequisites: one clear paragraph, non-zero exit, nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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

