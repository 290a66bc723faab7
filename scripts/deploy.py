"""`make deploy`: deploy the dev stack on this machine's Docker engine.

Checks the prerequisites first and stops with one paragraph naming what is
missing and how to install it; no stack trace, non-zero exit. Then installs
the program's dependencies into .venv, checks that the stack's host ports are
free, and runs `pulumi up` (see scripts/pulumi_env.py for the backend it uses
and for when it passes --yes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script by make

from scripts.pulumi_env import (  # noqa: E402
    ROOT,
    backend_env,
    missing_passphrase,
    pulumi_is_interactive,
    uses_local_backend,
)

STACK = os.environ.get("STACK", "dev")
MINIMUM_PYTHON = (3, 11)


def missing_prerequisites() -> list[str]:
    problems = []
    if shutil.which("docker") is None:
        problems.append(
            "the Docker CLI is not installed (install Docker Engine: https://docs.docker.com/engine/install/)"
        )
    else:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, check=False
        )
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
    # Compared as a tuple at run time: this file also runs on a system Python older than the project's.
    if tuple(sys.version_info[:2]) < MINIMUM_PYTHON:
        problems.append(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]} (install python3.11)")
    return problems


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, **kwargs)


def stop(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def main() -> int:
    problems = missing_prerequisites()
    if problems:
        return stop(
            "Cannot deploy the telemetry stack: "
            + "; ".join(problems)
            + ". Nothing was changed. Once these are in place, run `make deploy` again."
        )

    venv_python = ROOT / ".venv" / "bin" / "python"
    if not venv_python.exists():
        run(sys.executable, "-m", "venv", str(ROOT / ".venv"), check=True)
    run(str(venv_python), "-m", "pip", "install", "-q", "-r", "requirements.txt", check=True)

    taken = subprocess.run([str(venv_python), "-m", "scripts.host_ports", STACK], cwd=ROOT, check=False)
    if taken.returncode != 0:
        return stop(f"Cannot deploy stack '{STACK}': the host ports above are taken. Nothing was changed.")

    env = backend_env(os.environ)
    interactive = pulumi_is_interactive(env, sys.stdin, sys.stdout)
    if missing_passphrase(env, interactive):
        return stop(
            f"Cannot deploy stack '{STACK}' without a terminal to ask for the passphrase that encrypts its secrets "
            f"in the local state ({env['PULUMI_BACKEND_URL']}): set PULUMI_CONFIG_PASSPHRASE (or "
            "PULUMI_CONFIG_PASSPHRASE_FILE) and run `make deploy` again. Nothing was changed."
        )
    if uses_local_backend(env) and interactive and not any(
        env.get(name) for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
    ):
        print("The local state backend encrypts secrets with a passphrase: pulumi will ask for it.", flush=True)

    if run("pulumi", "stack", "select", STACK, env=env, stdin=subprocess.DEVNULL, capture_output=True).returncode:
        run("pulumi", "stack", "init", STACK, "--secrets-provider", "passphrase", env=env, check=True)
    up = ["pulumi", "up", "--stack", STACK]
    # pulumi refuses to run `up` without --yes when it cannot ask (a pipe, CI, TERM=dumb).
    if os.environ.get("YES") or not interactive:
        up.append("--yes")
    return run(*up, env=env).returncode


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"Deploy stopped: `{' '.join(error.cmd)}` exited with {error.returncode}; see its output above.", file=sys.stderr)
        sys.exit(error.returncode or 1)
    except KeyboardInterrupt:
        sys.exit(130)
