"""`make destroy`: remove the dev stack's containers, network, images and credentials, keep its data.

Runs `pulumi destroy --exclude-protected`: everything but the two protected data volumes
goes. Then says what was kept and how to remove it for good. A later `make deploy` reuses
the kept volumes (the containers set the new passwords at start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script by make

from scripts.pulumi_env import ROOT, backend_env, missing_passphrase, pulumi_is_interactive  # noqa: E402

STACK = os.environ.get("STACK", "dev")
PROJECT = "telemetry"
# components/timescaledb.py and components/emqx.py name them so.
KEPT_VOLUMES = {
    "timescaledb-data": "the database: every tenant's schema and rows",
    "emqx-data": "EMQX's data: dashboard users, API keys, built-in-database users and ACLs",
}


def kept_volumes(stack: str) -> list[str]:
    """The stack's volumes Docker still has (all of them when Docker cannot be asked)."""
    expected = [f"{PROJECT}-{stack}-{suffix}" for suffix in KEPT_VOLUMES]
    if shutil.which("docker") is None:
        return expected
    listing = subprocess.run(
        ["docker", "volume", "ls", "--filter", f"label=telemetry.stack={stack}", "--format", "{{.Name}}"],
        capture_output=True, text=True, check=False,
    )
    if listing.returncode != 0:
        return expected
    present = set(listing.stdout.split())
    return [name for name in expected if name in present]


def kept_message(stack: str, volumes: list[str]) -> str:
    if not volumes:
        return f"Stack '{stack}' is destroyed; Docker holds no data volume of it."
    lines = [f"Stack '{stack}' is destroyed except its data, which was kept on purpose:"]
    for volume in volumes:
        what = next(text for suffix, text in KEPT_VOLUMES.items() if volume.endswith(suffix))
        lines.append(f"  - Docker volume {volume}: {what}")
    lines += [
        "`make deploy` uses them again (the database and EMQX take the new passwords at start).",
        "To delete them for good (this cannot be undone):",
        f"  pulumi state unprotect --all --yes --stack {stack}",
        f"  pulumi destroy --yes --stack {stack}",
        f"  docker volume rm {' '.join(volumes)}",
        f"  pulumi stack rm --yes {stack}",
        "(with the local state backend, run those pulumi commands as "
        f"`python3 scripts/pulumi_env.py pulumi ...` or with PULUMI_BACKEND_URL=file://{ROOT}/.pulumi-state).",
    ]
    return "\n".join(lines)


def main() -> int:
    if shutil.which("pulumi") is None:
        print(
            "Cannot destroy the telemetry stack: the pulumi CLI is not installed (install it with "
            "`curl -fsSL https://get.pulumi.com | sh`). Nothing was changed.",
            file=sys.stderr,
        )
        return 1
    env = backend_env(os.environ)
    interactive = pulumi_is_interactive(env, sys.stdin, sys.stdout)
    if missing_passphrase(env, interactive):
        print(
            f"Cannot destroy stack '{STACK}' without a terminal to ask for its passphrase: set "
            "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) and run `make destroy` again. "
            "Nothing was changed.",
            file=sys.stderr,
        )
        return 1
    command = ["pulumi", "destroy", "--stack", STACK, "--exclude-protected"]
    if os.environ.get("YES") or not interactive:
        command.append("--yes")
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        print(f"Destroy stopped: `{' '.join(command)}` exited with {result.returncode}; see its output above.",
              file=sys.stderr)
        return result.returncode
    print(kept_message(STACK, kept_volumes(STACK)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
