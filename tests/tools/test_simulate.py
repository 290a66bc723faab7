"""The device simulator against a real broker (mosquitto), run as users run it: `python -m tools.simulate`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.tools.conftest import ACME, PASSWORDS, UMC, Broker, Subscriber, start_broker, stop_broker
from tools.simulate import Progress, SensorModel, SimulationSettings, format_summary, run_simulation

REPO_ROOT = Path(__file__).resolve().parents[2]


def simulate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.simulate", *args],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def assert_one_sentence_error(completed: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_devices_publish_to_their_tenant_topics_and_summary_counts_pubacks(
    broker: Broker, subscriber: Subscriber, tmp_path: Path
) -> None:
    outputs = broker.write_outputs(tmp_path / "outputs.json")

    completed = simulate(
        "--outputs-file",
        str(outputs),
        "--tenant",
        UMC,
        "--devices",
        "3",
        "--count",
        "12",
        "--rate",
        "40",
        "--run-id",
        "run-arrive",
    )

    assert completed.returncode == 0, completed.stderr
    received = subscriber.wait_for(12)
    assert len(received) == 12
    assert Counter(m.topic for m in received) == {f"tenants/umc/umc_device-{i}/telemetry": 4 for i in range(3)}
    payloads = [json.loads(m.payload) for m in received]
    assert {p["run_id"] for p in payloads} == {"run-arrive"}
    for i in range(3):
        assert sorted(p["seq"] for p in payloads if p["device"] == f"umc_device-{i}") == [1, 2, 3, 4]
    assert all({"ts", "temperature_c", "humidity_pct", "battery_pct"} <= p.keys() for p in payloads)
    summary = completed.stdout
    assert "sent          12" in summary
    assert "acknowledged  12 (PUBACK)" in summary
    assert "failed        0" in summary
    assert "msg/s achieved (target 40 msg/s)" in summary
    for i in range(3):
        assert f"umc_device-{i}  sent      4  acknowledged      4  failed      0" in summary
    # Not a terminal: progress comes as plain lines, never carriage returns.
    assert "progress:" in completed.stderr and "\r" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1].startswith("progress:") and "sent 12/12" in completed.stderr


def test_devices_share_the_tenants_device_users_round_robin(
    broker: Broker, subscriber: Subscriber, tmp_path: Path
) -> None:
    outputs = broker.outputs()
    outputs["deviceCredentials"][UMC]["umc_gateway"] = PASSWORDS["umc_gateway"]
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))

    completed = simulate(
        "--outputs-file", str(tmp_path / "outputs.json"), "--tenant", UMC, "-n", "3", "-c", "6", "-r", "50"
    )

    assert completed.returncode == 0, completed.stderr
    topics = {m.topic for m in subscriber.wait_for(6)}
    assert topics == {
        "tenants/umc/umc_device-0/telemetry",
        "tenants/umc/umc_gateway-1/telemetry",
        "tenants/umc/umc_device-2/telemetry",
    }


def test_duration_mode_publishes_until_time_is_up(broker: Broker, subscriber: Subscriber, tmp_path: Path) -> None:
    outputs = broker.write_outputs(tmp_path / "outputs.json")

    completed = simulate("--outputs-file", str(outputs), "--tenant", ACME, "--duration", "1", "--rate", "20")

    assert completed.returncode == 0, completed.stderr
    sent = int(next(line.split()[1] for line in completed.stdout.splitlines() if line.strip().startswith("sent")))
    assert sent > 0
    received = subscriber.wait_for(sent)
    assert len(received) == sent
    assert {m.topic for m in received} == {"tenants/acme/acme_device-0/telemetry"}


def test_explicit_connection_flags_need_no_stack_outputs(broker: Broker, subscriber: Subscriber) -> None:
    completed = simulate(
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--username",
        "acme_device",
        "--password",
        PASSWORDS["acme_device"],
        "--topic-prefix",
        "acme",
        "--count",
        "2",
    )

    assert completed.returncode == 0, completed.stderr
    assert len(subscriber.wait_for(2)) == 2


def test_wrong_password_is_refused_with_a_clear_error(broker: Broker, subscriber: Subscriber, tmp_path: Path) -> None:
    outputs = broker.write_outputs(tmp_path / "outputs.json")

    completed = simulate(
        "--outputs-file", str(outputs), "--tenant", UMC, "--password", "not-the-password", "--count", "3"
    )

    assert completed.returncode == 1
    assert_one_sentence_error(
        completed, f"{broker.host}:{broker.port}", "refused user 'umc_device'", "python -m tools.devices",
        "username as client id",
    )
    assert completed.stdout == ""
    assert subscriber.settle() == []


def test_publishing_outside_the_tenants_prefix_is_counted_as_failed(
    broker: Broker, subscriber: Subscriber, tmp_path: Path
) -> None:
    outputs = broker.write_outputs(tmp_path / "outputs.json")

    completed = simulate("--outputs-file", str(outputs), "--tenant", UMC, "--topic-prefix", "acme", "--count", "3")

    assert completed.returncode == 1
    assert "acknowledged  0 (PUBACK)" in completed.stdout
    assert "failed        3" in completed.stdout
    assert "3 x PUBACK refused (Not authorized, reason code 0x87)" in completed.stdout
    assert subscriber.settle() == []


def test_unknown_tenant_names_the_known_ones(broker: Broker, tmp_path: Path) -> None:
    outputs = broker.write_outputs(tmp_path / "outputs.json")

    completed = simulate("--outputs-file", str(outputs), "--tenant", "no-such-tenant")

    assert completed.returncode == 2
    assert_one_sentence_error(
        completed, "tenant 'no-such-tenant'", f"known tenants: {ACME}, {UMC}", "telemetry:tenants"
    )


def test_unreachable_broker_names_the_address(broker: Broker, tmp_path: Path) -> None:
    # A port that was free a moment ago: nothing listens there.
    from tests.net import free_port

    port = free_port()
    outputs = broker.write_outputs(tmp_path / "outputs.json", mqttEndpoint=f"mqtt://127.0.0.1:{port}")

    completed = simulate("--outputs-file", str(outputs), "--tenant", UMC)

    assert completed.returncode == 1
    assert_one_sentence_error(completed, f"cannot reach the MQTT broker at 127.0.0.1:{port}", "mqttEndpoint")


def test_missing_pulumi_cli_is_a_one_line_error_with_exit_2(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}

    completed = simulate("--stack", "dev", "--tenant", UMC, env=env)

    assert completed.returncode == 2
    assert_one_sentence_error(completed, "pulumi CLI is not on PATH", "stack 'dev'", "--outputs-file")


def test_missing_outputs_file_says_how_to_write_it(tmp_path: Path) -> None:
    completed = simulate("--outputs-file", str(tmp_path / "absent.json"), "--tenant", UMC)

    assert completed.returncode == 2
    assert_one_sentence_error(completed, "absent.json does not exist", "pulumi stack output --json --show-secrets")


def test_a_broker_that_goes_away_fails_the_in_flight_and_remaining_messages(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "own-broker")
    settings = SimulationSettings(
        host=broker.host,
        port=broker.port,
        usernames=("umc_device",),
        passwords={"umc_device": PASSWORDS["umc_device"]},
        topic_prefix="umc",
        devices=2,
        rate=20,
        count=200,
        ack_timeout=2,
    )
    results = []
    runner = threading.Thread(target=lambda: results.append(run_simulation(settings)))
    try:
        runner.start()
        while runner.is_alive() and "umc_device-1" not in broker.log.read_text() and not results:
            runner.join(0.05)  # wait until publishing is under way (the broker logs the connection)
        stop_broker(broker)
        runner.join(60)
    finally:
        stop_broker(broker)
    (result,) = results
    assert result.sent < 200
    assert result.stopped_early is not None and "every device lost its connection" in result.stopped_early
    assert "connection closed by the broker" in result.stopped_early
    # Whatever was in flight when the broker went away counts as failed, never as acknowledged.
    assert result.acknowledged + result.failed == result.sent
    assert all(reason.startswith("connection closed by the broker") for reason in result.failures)
    assert not result.ok
    assert "stopped early: every device lost its connection" in format_summary(result)


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(stream, interval=0)
    progress.update(1.0, 10, 9, 0, 20)
    progress.update(2.0, 20, 20, 0, 20)
    progress.finish()

    text = stream.getvalue()
    assert text.count("\r") == 2 and text.count("\n") == 1 and text.endswith("\n")
    assert "sent 20/20  acknowledged 20  failed 0" in text.split("\r")[-1]


def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream, interval=1.0)
    progress.update(0.5, 5, 5, 0, None)  # within the first interval: nothing yet
    progress.update(1.0, 10, 9, 1, None)
    progress.finish()

    assert stream.getvalue() == "progress:    1.0 s  sent 10  acknowledged 9  failed 1  10.0 msg/s\n"


def test_sensor_model_gives_numbered_plausible_readings() -> None:
    model = SensorModel("umc_device-0", "run-1", seed=7)
    readings = [model.next_reading() for _ in range(500)]

    assert [r["seq"] for r in readings] == list(range(1, 501))
    assert all(r["run_id"] == "run-1" and r["device"] == "umc_device-0" for r in readings)
    assert all(-20 <= r["temperature_c"] <= 60 and 0 <= r["humidity_pct"] <= 100 for r in readings)
    batteries = [r["battery_pct"] for r in readings]
    assert batteries == sorted(batteries, reverse=True) and 0 <= batteries[-1] <= 100


@pytest.mark.parametrize("args", [["--rate", "0"], ["--devices", "0"], ["--count", "-1"]])
def test_non_positive_load_arguments_are_rejected(args: list[str]) -> None:
    completed = simulate("--outputs-file", "unused.json", "--tenant", UMC, *args)

    assert completed.returncode == 2
    assert "must be greater than 0" in completed.stderr and "Traceback" not in completed.stderr


def test_qos_0_counts_messages_when_sent(broker: Broker, subscriber: Subscriber, tmp_path: Path) -> None:
    outputs = broker.write_outputs(tmp_path / "outputs.json")

    completed = simulate("--outputs-file", str(outputs), "--tenant", ACME, "--qos", "0", "--count", "5", "--rate", "50")

    assert completed.returncode == 0, completed.stderr
    assert "acknowledged  5 (QoS 0: no PUBACK, counted when sent)" in completed.stdout
    assert len(subscriber.wait_for(5)) == 5
