"""A dynamic provider that checks an operator the stack relies on is installed in the cluster.

With `telemetry:kubernetes.operators.install: false` the stack does not install CloudNativePG or
the EMQX Operator; it requires them. The check runs in `check`, which the engine calls on every
preview and update, so a missing operator fails `pulumi preview` with one sentence naming the
operator, the pinned version and the two ways to fix it, before any resource is touched.

An operator is "installed" when the API server serves its custom resource definition at the API
version the stack writes (e.g. `clusters.postgresql.cnpg.io` at `v1`).

The Kubernetes client is built inside each method from the kubeconfig (and optional context):
Pulumi pickles this provider into the state, so it holds nothing.
"""

from __future__ import annotations

import os
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

INPUT_KEYS = ("crd", "version", "operator", "pinned_version", "context")


class OperatorMissingError(Exception):
    """The operator's CRD is not served: the message says what to install or which config to set."""


def _client(context: str | None):
    from kubernetes import client, config

    try:
        # The client reads KUBECONFIG once, at import; read it now, as kubectl and Pulumi do.
        api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None, context=context or None)
    except config.ConfigException as error:
        where = f"context {context!r}" if context else "the current context"
        raise OperatorMissingError(
            f"cannot load the kubeconfig for {where} ({error}); set KUBECONFIG or "
            "telemetry:kubernetes.context to a cluster Pulumi can reach"
        ) from None
    api.configuration.retries = 1
    return client.ApiextensionsV1Api(api)


def served_versions(crd: str, context: str | None) -> list[str]:
    """The versions the API server serves for ``crd``; raises OperatorMissingError with the reason."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = _client(context)
    try:
        definition = api.read_custom_resource_definition(crd, _request_timeout=15)
    except ApiException as error:
        if error.status == 404:
            return []
        raise OperatorMissingError(
            f"cannot read the custom resource definition {crd!r} (HTTP {error.status} {error.reason}); "
            "the identity in the kubeconfig needs `get` on customresourcedefinitions"
        ) from None
    except HTTPError as error:
        raise OperatorMissingError(
            f"cannot reach the Kubernetes API server to look up {crd!r} ({type(error).__name__}); "
            "check the kubeconfig and telemetry:kubernetes.context"
        ) from None
    return [version.name for version in definition.spec.versions if version.served]


def require_operator(props: dict[str, Any]) -> None:
    versions = served_versions(props["crd"], props.get("context"))
    if props["version"] in versions:
        return
    found = (
        f"the cluster serves {props['crd']} only at {', '.join(versions)}"
        if versions else f"the cluster has no {props['crd']} custom resource definition"
    )
    raise OperatorMissingError(
        f"{props['operator']} is required but not installed: {found}, and the stack needs "
        f"{props['version']} (tested with {props['operator']} {props['pinned_version']}); install it "
        f"(see README, Platforms > kubernetes) or let the stack install it with "
        "`pulumi config set --path telemetry:kubernetes.operators.install true`"
    )


class RequiredOperatorProvider(ResourceProvider):
    """Inputs: crd, version, operator, pinned_version, context. No cluster object is created."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        try:
            require_operator(news)
        except OperatorMissingError as error:
            return CheckResult(news, [CheckFailure("crd", str(error))])
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        require_operator(props)  # `pulumi up --skip-preview` reaches create without a check
        return CreateResult(id_=f"{props['crd']}/{props['version']}", outs={k: props.get(k) for k in INPUT_KEYS})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in INPUT_KEYS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={k: news.get(k) for k in INPUT_KEYS})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the operator belongs to the cluster, not to the stack."""


class RequiredOperator(pulumi.dynamic.Resource, module="kubernetes", name="RequiredOperator"):
    """Fails preview and update, with the fix, unless the cluster serves ``crd`` at ``version``."""

    def __init__(
        self,
        resource_name: str,
        *,
        crd: str,
        version: str,
        operator: str,
        pinned_version: str,
        context: str | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"crd": crd, "version": version, "operator": operator, "pinned_version": pinned_version,
                 "context": context}
        super().__init__(RequiredOperatorProvider(), resource_name, props, opts)
