"""The delivery window: config validation and the action options derived from it."""

from __future__ import annotations

import pytest

from components.config import ConfigError, parse_stack_config
from components.providers.emqx.delivery import (
    ActionDelivery,
    accepted_message_age_seconds,
    parse_window,
    window_seconds,
)


@pytest.mark.parametrize("text,expected", [("15m", "15m"), ("15 minutes", "15m"), ("2h", "2h"), (" 1 day ", "1d"),
                                           ("90s", "90s"), ("Infinity", "infinity")])
def test_windows_are_normalised_to_emqx_durations(text: str, expected: str) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text,reason", [("30s", "shorter than a minute"), ("soon", "is not a delivery window"),
                                         ("15 mins!", "is not a delivery window"), ("0m", "is not a delivery window")])
def test_bad_windows_say_what_to_write(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_window(text)


def test_the_stack_config_names_the_key_and_the_fix() -> None:
    with pytest.raises(ConfigError) as failure:
        parse_stack_config({"emqx": {"deliveryWindow": "10s"}})
    assert "telemetry:emqx.deliveryWindow: '10s' is shorter than a minute" in str(failure.value)
    assert parse_stack_config({}).emqx.delivery_window == "15m"
    assert parse_stack_config({"emqx": {"deliveryWindow": "1 hour"}}).emqx.delivery_window == "1h"


def test_the_default_window_and_its_memory_and_disk_bounds() -> None:
    delivery = ActionDelivery.for_window()
    assert (delivery.request_ttl, delivery.max_buffer_bytes) == ("15m", "57MB")  # 900 s x 64 KiB/s
    assert (delivery.buffer_mode, delivery.buffer_seg_bytes) == ("volatile_offload", "4MB")
    bounds = delivery.bounds(worker_pool_size=16, inflight_window=100)
    assert bounds == {"memory_bytes": 16 * (4 * 2 ** 20 + 100 * 1024), "disk_bytes": 16 * 57 * 2 ** 20}


def test_long_windows_and_infinity_are_capped_at_a_gibibyte_per_worker() -> None:
    assert ActionDelivery.for_window("2h").max_buffer_bytes == "450MB"
    assert ActionDelivery.for_window("6h").max_buffer_bytes == "1024MB"
    infinite = ActionDelivery.for_window("infinity")
    assert (infinite.request_ttl, infinite.max_buffer_bytes) == ("infinity", "1024MB")


def test_every_tenants_action_takes_its_buffer_from_the_stack_config() -> None:
    from tests.unit.harness import run_program
    from tests.unit.test_config import dev_config

    config = dev_config()
    config["emqx"] = {**(config.get("emqx") or {}), "deliveryWindow": "2h"}
    run = run_program(config)
    assert run.error is None, run.error
    actions = run.by_type("pulumi-python:dynamic/emqx:Action")
    assert len(actions) == len(config["tenants"]) >= 2
    for action in actions:
        opts = {k: action.inputs[k] for k in ("request_ttl", "max_buffer_bytes", "buffer_mode", "buffer_seg_bytes")}
        assert opts == {"request_ttl": "2h", "max_buffer_bytes": "450MB", "buffer_mode": "volatile_offload",
                        "buffer_seg_bytes": "4MB"}
        # measured elsewhere (ingest throughput): unchanged
        assert (action.inputs["worker_pool_size"], action.inputs["inflight_window"]) == (16, 100)


@pytest.mark.parametrize(("window", "days"), [("15m", 7), ("10d", 11), ("infinity", 366)])
def test_the_ingest_service_accepts_every_message_emqx_may_still_deliver(window: str, days: int) -> None:
    # A message's time is EMQX's publish_received_at: one held for the whole window arrives that old,
    # and the ingest service's age limit (400, which EMQX never retries) must not refuse it.
    assert accepted_message_age_seconds(window) == days * 86400
    if window != "infinity":
        assert accepted_message_age_seconds(window) > window_seconds(parse_window(window))


def test_ingest_age_limit_follows_the_window_on_docker_and_kubernetes() -> None:
    from tests.unit.harness import run_program
    from tests.unit.platform_mocks import k8s_config, kubernetes_objects, run_platform
    from tests.unit.test_config import dev_config

    docker_config = dev_config()
    docker_config["emqx"] = {**(docker_config.get("emqx") or {}), "deliveryWindow": "10d"}
    run = run_program(docker_config)
    assert run.error is None, run.error
    assert "MAX_MESSAGE_AGE_SECONDS=950400" in run.named("ingest-container").inputs["envs"]

    config = k8s_config()
    config["emqx"] = {**(config.get("emqx") or {}), "deliveryWindow": "10d"}
    run = run_platform(config)
    assert run.error is None, run.error
    [deployment] = [o for o in kubernetes_objects(run) if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MAX_MESSAGE_AGE_SECONDS"] == "950400"
