"""Config validation: every bad config fails with its own message naming the key and the fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from components.config import MAX_SLUG_LENGTH, ConfigError, parse_stack_config
from tests.unit.harness import run_program

ROOT = Path(__file__).resolve().parents[2]


def dev_config() -> dict:
    raw = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in raw.items()}


def problems_of(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    return caught.value.problems


def with_tenant_change(index: int, **changes) -> dict:
    config = copy.deepcopy(dev_config())
    config["tenants"][index].update(changes)
    return config


def test_dev_config_is_valid_and_normalised():
    config = parse_stack_config(dev_config())
    assert [t.slug for t in config.tenants] == ["uberlandia-medical-center", "hospital-x"]
    umc = config.tenants[0]
    assert umc.schema_name == "tenant_uberlandia_medical_center"
    assert umc.retention == "365 days" and umc.compress_after == "7 days" and umc.chunk_interval == "1 day"
    assert config.emqx.image == "emqx/emqx:5.8.9"


def test_defaults_fill_absent_sections():
    config = parse_stack_config({"tenants": [{"slug": "a1", "topicPrefix": "a", "devices": ["d"]}]})
    ports = (config.timescaledb.host_port, config.emqx.mqtt_port, config.emqx.mqtt_tls_port, config.ingest.host_port)
    assert ports == (15432, 11883, 18883, 18000)
    assert config.tenants[0].retention is None


def test_unknown_top_level_key():
    config = dev_config() | {"tenant": []}
    [problem] = problems_of(config)
    assert problem.startswith("telemetry:tenant: unknown key") and "pulumi config rm telemetry:tenant" in problem


def test_unknown_nested_key():
    [problem] = problems_of(with_tenant_change(1, retentoin="30 days"))
    assert problem.startswith("telemetry:tenants[1].retentoin: unknown key")
    assert "remove it or correct its spelling" in problem


def test_bad_slug():
    [problem] = problems_of(with_tenant_change(0, slug="Uberlandia_MC"))
    assert problem.startswith("telemetry:tenants[0].slug: 'Uberlandia_MC' is not a valid slug")
    assert "lowercase letters, digits and hyphens" in problem


def test_duplicate_slug():
    [problem] = problems_of(with_tenant_change(1, slug="uberlandia-medical-center"))
    assert problem.startswith("telemetry:tenants[1].slug: 'uberlandia-medical-center' is already used by tenants[0]")


def test_duplicate_topic_prefix():
    [problem] = problems_of(with_tenant_change(1, topicPrefix="umc"))
    assert problem.startswith("telemetry:tenants[1].topicPrefix: 'umc' is the same as tenants[0]'s 'umc'")


def test_overlapping_topic_prefix():
    [problem] = problems_of(with_tenant_change(1, topicPrefix="umc/icu"))
    assert problem.startswith("telemetry:tenants[1].topicPrefix: 'umc/icu' overlaps tenants[0]'s 'umc'")


def test_prefixes_sharing_characters_but_not_levels_do_not_overlap():
    config = parse_stack_config(with_tenant_change(1, topicPrefix="umc2"))
    assert config.tenants[1].topic_prefix == "umc2"


def test_topic_prefix_with_wildcard():
    [problem] = problems_of(with_tenant_change(0, topicPrefix="umc/#"))
    assert problem.startswith("telemetry:tenants[0].topicPrefix: 'umc/#' is not a valid topic prefix")


def test_slug_too_long_for_schema_name():
    slug = "a" * (MAX_SLUG_LENGTH + 1)
    [problem] = problems_of(with_tenant_change(0, slug=slug))
    assert problem.startswith(f"telemetry:tenants[0].slug: '{slug}' is {len(slug)} characters")
    assert f"at most {MAX_SLUG_LENGTH} characters" in problem


def test_longest_slug_fits():
    config = parse_stack_config(with_tenant_change(0, slug="a" * MAX_SLUG_LENGTH))
    assert len(config.tenants[0].reader_role.encode()) == 63


def test_bad_interval_text():
    [problem] = problems_of(with_tenant_change(0, retention="one year"))
    assert problem.startswith("telemetry:tenants[0].retention: 'one year' is not an interval")


def test_chunk_interval_of_variable_length():
    [problem] = problems_of(with_tenant_change(0, chunkInterval="1 month"))
    assert problem.startswith("telemetry:tenants[0].chunkInterval: '1 month' is not an interval")
    assert "week" in problem and "month" not in problem.split("unit (")[1]


def test_compression_after_retention():
    [problem] = problems_of(with_tenant_change(0, retention="7 days", compressAfter="30 days"))
    assert problem.startswith("telemetry:tenants[0].compressAfter: '30 days' is not shorter than retention '7 days'")


def test_bad_port():
    config = dev_config()
    config["emqx"] = dict(config["emqx"], mqttPort=70000)
    [problem] = problems_of(config)
    assert problem.startswith("telemetry:emqx.mqttPort: 70000 is not a TCP port")


def test_port_that_is_not_a_number():
    config = dev_config()
    config["ingest"] = dict(config["ingest"], hostPort="eighty")
    [problem] = problems_of(config)
    assert problem.startswith("telemetry:ingest.hostPort:") and "'eighty'" in problem


def test_port_clash_between_services():
    config = dev_config()
    config["ingest"] = dict(config["ingest"], hostPort=18083)
    [problem] = problems_of(config)
    assert problem.startswith("telemetry:ingest.hostPort: port 18083 is also telemetry:emqx.dashboardPort")


def test_devices_are_not_stack_config():
    """Devices are registry rows: a tenant lists none (the dev stack does not); `devices` stays
    only for stacks deployed before, and is then the migration path."""
    config = parse_stack_config(dev_config())
    assert all(tenant.devices == [] for tenant in config.tenants)
    assert all("devices" not in raw for raw in dev_config()["tenants"])
    assert parse_stack_config(with_tenant_change(1, devices=["hx_device_1"])).tenants[1].devices == ["hx_device_1"]
    assert parse_stack_config(with_tenant_change(1, devices=[])).tenants[1].devices == []


def test_bad_device_id_names_the_key_and_the_cli():
    [problem] = problems_of(with_tenant_change(1, devices=["has/slash"]))
    assert problem.startswith("telemetry:tenants[1].devices: 'has/slash': device usernames use letters")
    assert "python -m tools.devices add" in problem


def test_device_repeated_across_tenants():
    config = with_tenant_change(0, devices=["umc_device"])
    config["tenants"][1]["devices"] = ["hx_device_1", "umc_device"]
    [problem] = problems_of(config)
    assert problem.startswith("telemetry:tenants[1].devices: 'umc_device' is already a device of tenants[0]")


def test_device_repeated_within_a_tenant():
    [problem] = problems_of(with_tenant_change(1, devices=["hx_device_1", "hx_device_1"]))
    assert problem.startswith("telemetry:tenants[1].devices: 'hx_device_1' listed more than once")


def test_unpinned_image():
    config = dev_config()
    config["emqx"] = dict(config["emqx"], image="emqx/emqx:latest")
    [problem] = problems_of(config)
    assert problem.startswith("telemetry:emqx.image: 'emqx/emqx:latest' is not a pinned image")


def test_image_without_tag():
    config = dev_config()
    config["timescaledb"] = dict(config["timescaledb"], image="timescale/timescaledb")
    [problem] = problems_of(config)
    assert problem.startswith("telemetry:timescaledb.image: 'timescale/timescaledb' is not a pinned image")


def test_every_problem_is_listed_at_once():
    config = with_tenant_change(1, slug="BAD", devices=["bad/id"])
    config["emqx"] = dict(config["emqx"], mqttPort=0)
    config["extra"] = 1
    problems = problems_of(config)
    keys = sorted(problem.split(":")[1].split(" ")[0] for problem in problems)
    assert keys == ["emqx.mqttPort", "extra", "tenants[1].devices", "tenants[1].slug"]


def test_program_fails_before_registering_any_resource():
    run = run_program(with_tenant_change(1, slug="uberlandia-medical-center"))
    assert run.error is not None
    assert "already used by tenants[0]" in str(run.error)
    assert type(run.error).__name__ == "RunError"  # reported without a stack trace
    assert run.registrations == []
