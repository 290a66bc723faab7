"""`python -m tools.status` against the strict EMQX API double (5.8 and 6.x): per tenant rule and
action metrics, losses and disabled objects, read the way an operator's `make status` reads them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emqx_double.server import EmqxDouble
from tests.tools.emqx_stand_in import api_outputs, disable, stack_emqx
from tools import status

UMC, ACME = "uberlandia-medical-center", "acme-labs"


@pytest.fixture(params=["5.8", "6.x"])
def emqx(request: pytest.FixtureRequest) -> Iterator[EmqxDouble]:
    with stack_emqx({UMC: "umc", ACME: "acme"}, version=request.param) as double:
        yield double


def outputs_file(tmp_path: Path, double: EmqxDouble, **overrides: object) -> str:
    outputs = {"tenants": {UMC: {"topicPrefix": "umc"}, ACME: {"topicPrefix": "acme"}}, **api_outputs(double),
               **overrides}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return str(path)


def test_a_healthy_stack_prints_each_tenants_metrics_and_exits_0(emqx: EmqxDouble, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    emqx.bump_rule_metrics(f"tenant-{UMC}", matched=7, passed=7, actions__total=7, actions__success=7)
    emqx.bump_action_metrics(f"tenant-{UMC}", matched=7, success=6, retried=2, inflight=1)
    code = status.main(["--outputs-file", outputs_file(tmp_path, emqx)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"OK   {UMC}: rule tenant-{UMC}, action http:tenant-{UMC}, delivery window 15m" in out
    assert "rule:   matched 7  passed 7  failed 0  actions.success 7" in out
    assert "action: matched 7  success 6  failed 0  retried 2  late_reply 0  queuing 0  inflight 1" in out
    assert out.rstrip().endswith("status: 2 tenants, 0 messages lost since the metrics last started")


def test_drops_are_shown_by_reason_and_exit_1(emqx: EmqxDouble, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    emqx.bump_action_metrics(f"tenant-{ACME}", matched=9, success=4, dropped__expired=3, dropped__queue_full=1,
                             failed=1)
    code = status.main(["--outputs-file", outputs_file(tmp_path, emqx)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"WARN {ACME}:" in out and f"OK   {UMC}:" in out
    assert "dropped 4 (expired 3, queue_full 1, resource_stopped 0, resource_not_found 0, other 0)" in out
    assert "status: 2 tenants, 5 messages lost" in out


def test_disabled_action_rule_and_connector_are_named(emqx: EmqxDouble, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    disable(emqx, [f"/actions/http:tenant-{UMC}", "/connectors/http:ingest"])
    with emqx.state() as state:
        state.rules[f"tenant-{ACME}"]["enable"] = False
    code = status.main(["--outputs-file", outputs_file(tmp_path, emqx)])
    out = capsys.readouterr().out
    assert code == 1
    assert "WARN connector http:ingest is disabled: every tenant's messages are dropped" in out
    assert f"! action http:tenant-{UMC} is disabled: its messages are dropped" in out
    assert f"! rule tenant-{ACME} is disabled" in out


def test_a_tenant_without_emqx_objects_is_reported(emqx: EmqxDouble, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = status.main(["--outputs-file", outputs_file(tmp_path, emqx), "--tenant", "nope"])
    out = capsys.readouterr().out
    assert code == 1 and "! rule tenant-nope is missing: run `pulumi up`" in out


def test_missing_api_outputs_and_a_wrong_secret_are_clear_errors(emqx: EmqxDouble, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert status.main(["--outputs-file", outputs_file(tmp_path, emqx, dashboardUrl=None)]) == 2
    assert "the stack outputs have no dashboardUrl" in capsys.readouterr().err
    assert status.main(["--outputs-file", outputs_file(tmp_path, emqx, emqxApiSecret="wrong")]) == 2
    err = capsys.readouterr().err
    assert "EMQX rejected the API key" in err and "Traceback" not in err
