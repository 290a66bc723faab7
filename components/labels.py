"""Docker labels shared by every object of one stack."""

from __future__ import annotations

import pulumi_docker as docker

STACK_LABEL = "telemetry.stack"


def stack_labels(project: str, stack: str) -> dict[str, str]:
    # `docker ps --filter label=telemetry.stack=<stack>` then lists exactly one stack's containers.
    return {STACK_LABEL: stack, "telemetry.project": project}


def container_labels(labels: dict[str, str]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=key, value=value) for key, value in sorted(labels.items())]


def volume_labels(labels: dict[str, str]) -> list[docker.VolumeLabelArgs]:
    return [docker.VolumeLabelArgs(label=key, value=value) for key, value in sorted(labels.items())]
