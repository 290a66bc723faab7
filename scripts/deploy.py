"""`make deploy`: deploy the dev stack on this machine's Docker engine.

Checks the prerequisites first and stops with one paragraph naming what is
missing and how to install it; no stack trace, non-zero exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = os.environ.get("STACK", "dev")
LOCAL_STATE = ROOT / ".pulumi-state"


def missing_prerequisites() -> list[str]:
    problems = []
    if shutil.which("docker") is None:
        problems.append(
            "the Docker CLI is not installed (install Docker Engine: https://docs.docker.com/engine/install/)"
        )
    else:
        probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
        if probe.returncode != 0:
            problems.append(
                "no Docker engine answers (start it, e.g. `sudo systemctl start docker`, and make sure your user "
                "may use it: `sudo usermod -aG docker $USER`, then log in again)"
            )
    if shutil.which("pulumi") is None:
        problems.append(
            "the pulumi CLI 3.x is not installed (install it with `curl -fsSL https://get.pulumi.com | sh` "
            "and open a new shell so that ~/.pulumi/bin is on PATH)"
        )
    if sys.version_info < (3, 11):
        problems.append(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]} (install python3.11)")
    return problems


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, **kwargs)


def main() -> int:
    problems = missing_prerequisites()
    if problems:
        print(
            "Cannot deploy the telemetry stack: "
            + "; ".join(problems)
            + ". Nothing was changed. Once these are in place, run `make deploy` again.",
            file=sys.stderr,
        )
        return 1

    venv_python = ROOT / ".venv" / "bin" / "python"
    if not venv_python.exists():
        run(sys.executable, "-m", "venv", str(ROOT / ".venv"), check=True)
    run(str(venv_python), "-m", "pip", "install", "-q", "-r", "requirements.txt", check=True)

    # Keep whatever backend the user is logged in to; otherwise state lives
    # in a local folder next to the code (git-ignored).
    if subprocess.run(["pulumi", "whoami"], cwd=ROOT, capture_output=True).returncode != 0:
        LOCAL_STATE.mkdir(exist_ok=True)
        run("pulumi", "login", f"file://{LOCAL_STATE}", check=True)
        if "PULUMI_CONFIG_PASSPHRASE" not in os.environ and "PULUMI_CONFIG_PASSPHRASE_FILE" not in os.environ:
            print("The local state backend encrypts secrets with a passphrase: pulumi will ask for it.", flush=True)

    if run("pulumi", "stack", "select", STACK, capture_output=True).returncode != 0:
        run("pulumi", "stack", "init", STACK, "--secrets-provider", "passphrase", check=True)
    up = ["pulumi", "up", "--stack", STACK]
    if os.environ.get("YES") or not sys.stdin.isatty():
        up.append("--yes")
    return run(*up).returncode


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"Deploy stopped: `{' '.join(error.cmd)}` exited with {error.returncode}; see its output above.", file=sys.stderr)
        sys.exit(error.returncode or 1)
    except KeyboardInterrupt:
        sys.exit(130)
