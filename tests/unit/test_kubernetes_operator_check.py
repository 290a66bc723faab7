"""The operator check against a stand-in Kubernetes API server over real HTTP, reached through a
real kubeconfig by the official client: it stands in for `GET
/apis/apiextensions.k8s.io/v1/customresourcedefinitions/<name>` on a cluster with or without the
operator installed (404 when the CRD is absent, 403 without RBAC, the CRD object when present)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from components.platforms.operator_check import RequiredOperatorProvider, served_versions
from components.platforms.operators import CNPG_CLUSTER_CRD, EMQX_CRD

PREFIX = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"


class FakeApiServer:
    def __init__(self) -> None:
        self.crds: dict[str, list[tuple[str, bool]]] = {}
        self.status_override: int | None = None
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                name = self.path.split("?")[0].removeprefix(PREFIX)
                if outer.status_override:
                    self._answer(outer.status_override, {"kind": "Status", "code": outer.status_override})
                elif self.path.startswith(PREFIX) and name in outer.crds:
                    versions = [{"name": v, "served": served, "storage": served} for v, served in outer.crds[name]]
                    self._answer(200, {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                                       "metadata": {"name": name},
                                       "spec": {"group": name.split(".", 1)[1], "names": {"plural": name.split(".")[0],
                                                "kind": "X"}, "scope": "Namespaced", "versions": versions}})
                else:
                    self._answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_kubeconfig(path: Path, server: str, context: str = "test") -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
    }))


@pytest.fixture()
def api_server(tmp_path, monkeypatch) -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server.url)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield server
    server.stop()


def _props(crd: str = CNPG_CLUSTER_CRD, version: str = "v1", context: str | None = None) -> dict:
    return {"crd": crd, "version": version, "operator": "CloudNativePG", "pinned_version": "1.30.0", "context": context}


def test_kubernetes_operator_check_passes_when_the_crd_is_served(api_server):
    api_server.crds[CNPG_CLUSTER_CRD] = [("v1", True)]
    result = RequiredOperatorProvider().check({}, _props())
    assert result.failures == []
    assert api_server.paths and api_server.paths[0].startswith(PREFIX + CNPG_CLUSTER_CRD)
    created = RequiredOperatorProvider().create(_props())
    assert created.id == f"{CNPG_CLUSTER_CRD}/v1"


def test_kubernetes_operator_check_fails_preview_with_the_fix_when_missing(api_server):
    [failure] = RequiredOperatorProvider().check({}, _props()).failures
    assert failure.property == "crd"
    assert failure.reason.startswith("CloudNativePG is required but not installed: the cluster has no "
                                     "clusters.postgresql.cnpg.io custom resource definition")
    assert "telemetry:kubernetes.operators.install true" in failure.reason and "1.30.0" in failure.reason


def test_kubernetes_operator_check_names_the_served_versions_when_only_older_ones_exist(api_server):
    api_server.crds[EMQX_CRD] = [("v2alpha1", True), ("v2beta1", False)]
    assert served_versions(EMQX_CRD, None) == ["v2alpha1"]
    [failure] = RequiredOperatorProvider().check({}, _props(EMQX_CRD, "v2beta1")).failures
    assert "serves emqxes.apps.emqx.io only at v2alpha1" in failure.reason


def test_kubernetes_operator_check_explains_missing_rbac(api_server):
    api_server.status_override = 403
    [failure] = RequiredOperatorProvider().check({}, _props()).failures
    assert "HTTP 403" in failure.reason and "customresourcedefinitions" in failure.reason


def test_kubernetes_operator_check_explains_an_unknown_context(api_server):
    [failure] = RequiredOperatorProvider().check({}, _props(context="no-such-context")).failures
    assert "context 'no-such-context'" in failure.reason and "telemetry:kubernetes.context" in failure.reason


def test_kubernetes_operator_check_explains_an_unreachable_cluster(tmp_path, monkeypatch):
    server = FakeApiServer()
    url = server.url
    server.stop()  # nothing listens there any more
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, url)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    [failure] = RequiredOperatorProvider().check({}, _props()).failures
    assert failure.reason.startswith("cannot reach the Kubernetes API server")
