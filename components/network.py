"""The stack's private Docker network."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class NetworkArgs:
    # Named after project and stack so two stacks can share one Docker host.
    name: str
    labels: dict[str, str]


class Network(pulumi.ComponentResource):
    """One bridge network that every container of the stack joins."""

    network: docker.Network
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:network:Network", resource_name, None, opts)
        self.network = docker.Network(
            f"{resource_name}-bridge",
            name=args.name,
            driver="bridge",
            labels=[docker.NetworkLabelArgs(label=key, value=value) for key, value in sorted(args.labels.items())],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name = self.network.name
        self.register_outputs({"name": self.name})
