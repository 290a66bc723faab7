"""What every container of the Docker platform shares: how it stops, its limits, its secret files."""

from __future__ import annotations

from typing import Any

from components.config import ContainerLimits

# Secret files are uploaded readable by their owner only, the user the process runs as
# (pulumi-docker's `uploads` set the owner and mode of the file it writes into the container).
SECRET_FILE_MODE = "0400"


def stopping(signal: str, grace_seconds: int) -> dict[str, Any]:
    """How Docker stops the container, for `docker stop` and for pulumi-docker alike.

    pulumi-docker removes a container (on every replacement and destroy) with a stop timeout of
    `destroy_grace_seconds`, zero when unset: the process would be killed mid-write.
    `stop_timeout` is what `docker stop` and a daemon shutdown use.
    """
    return {"stop_signal": signal, "stop_timeout": grace_seconds, "destroy_grace_seconds": grace_seconds}


def limits(config: ContainerLimits) -> dict[str, Any]:
    """The container's optional memory and CPU limits; nothing when the config sets none."""
    result: dict[str, Any] = {}
    if config.memory_mb is not None:
        # Swap equal to the limit means no swap: a database that swaps is slower than one that is told no.
        result |= {"memory": config.memory_mb, "memory_swap": config.memory_mb}
    if config.cpus is not None:
        result["cpus"] = f"{config.cpus:g}"
    return result
