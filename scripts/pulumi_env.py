"""How the make targets run the pulumi CLI: which backend, and whether pulumi can ask questions.

    python3 scripts/pulumi_env.py pulumi preview --diff --stack dev

runs a command with the backend the deploy uses. Standard library only: `make deploy` runs
this with the system Python before any virtualenv exists.

Backend: the one the user is logged in to, else a file backend in `.pulumi-state/` given to
our own subprocesses through PULUMI_BACKEND_URL (never `pulumi login`, which would change the
user's current backend for every other project).

Interactivity: decided as the pulumi CLI decides it (sdk/go/common/util/cmdutil/console.go,
`Interactive()`): not when TERM is `dumb`, not unless both stdin and stdout are terminals,
not in a CI system it recognises (sdk/go/common/util/ciutil/detect.go). A non-interactive
`pulumi up` refuses to run without `--yes`, so the make targets pass it exactly then.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
LOCAL_STATE = ROOT / ".pulumi-state"
PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")

# ciutil's detectors: any of these set to a non-empty value means a CI system.
CI_VARIABLES = (
    "PULUMI_CI_SYSTEM",
    "APPVEYOR",
    "CODEBUILD_BUILD_ARN",
    "bamboo_planKey",
    "BITBUCKET_COMMIT",
    "TF_BUILD",
    "BUILDKITE",
    "CIRCLECI",
    "CF_BUILD_URL",
    "DRONE",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "GO_PIPELINE_LABEL",
    "HUDSON_URL",
    "JENKINS_URL",
    "MAGNUM",
    "SEMAPHORE",
    "SPACELIFT_MAX_REQUESTS_BURST",
    "TF_VAR_spacelift_run_trigger",
    "SPACELIFT_STORE_HOOKS_ENV_VARS",
    "TF_VAR_spacelift_commit_branch",
    "SPACELIFT_WORKER_TRACING_ENABLED",
    "TASK_ID",
    "RUN_ID",
    "TEAMCITY_VERSION",
    "TRAVIS",
)
# ... and these variables with these values.
CI_VALUES = {"CI_NAME": "codeship"}


def running_in_ci(environ: Mapping[str, str]) -> bool:
    if environ.get("PULUMI_DISABLE_CI_DETECTION"):
        return False
    return any(environ.get(name) for name in CI_VARIABLES) or any(
        environ.get(name) == value for name, value in CI_VALUES.items()
    )


def pulumi_is_interactive(environ: Mapping[str, str], stdin: TextIO, stdout: TextIO) -> bool:
    """Whether a pulumi command started with these streams and this environment may prompt."""
    if environ.get("TERM", "").lower() == "dumb":
        return False
    if not (stdin.isatty() and stdout.isatty()):
        return False
    return not running_in_ci(environ)


def backend_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for our pulumi subprocesses: the user's backend, or our local file backend."""
    env = dict(environ)
    if env.get("PULUMI_BACKEND_URL"):
        return env
    if shutil.which("pulumi", path=env.get("PATH")) is not None:
        # --non-interactive and no stdin: without a login, whoami fails instead of prompting
        # for a Pulumi Cloud token.
        whoami = subprocess.run(
            ["pulumi", "whoami", "--non-interactive"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False,
        )
        if whoami.returncode == 0:
            return env
    LOCAL_STATE.mkdir(exist_ok=True)
    env["PULUMI_BACKEND_URL"] = LOCAL_STATE.as_uri()
    return env


def uses_local_backend(env: Mapping[str, str]) -> bool:
    return env.get("PULUMI_BACKEND_URL", "").startswith("file://")


def missing_passphrase(env: Mapping[str, str], interactive: bool) -> bool:
    """A file backend encrypts secrets with a passphrase, which pulumi asks for only interactively."""
    return uses_local_backend(env) and not interactive and not any(env.get(name) for name in PASSPHRASE_VARIABLES)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python3 scripts/pulumi_env.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = backend_env(os.environ)
    try:
        return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode
    except FileNotFoundError:
        print(f"`{argv[0]}` is not installed or not on PATH; install it and run the command again.", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
