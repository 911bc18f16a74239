"""Configuration loading: the contract's keys, locations, relative paths and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pacs.config import ConfigError, load_config, parse_size
from pacs.tiers.policy import PolicyError, parse_policy


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "cfg" / "pacs.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(data))
    return p


BASE = {
    "landing": ["landing"],
    "online": "data/online",
    "offline": {"url": "s3://pacs-offline/archive", "storage_options": {"endpoint_url": "http://x"},
                "conn_id": "aws_pacs"},
    "quarantine": "file:///srv/q",
    "catalogue": {"duckdb": "cat/pacs.duckdb", "parquet": "cat/parquet"},
}


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE))
    folder = tmp_path / "cfg"
    assert cfg.landing[0].root == str(folder / "landing")
    assert cfg.online.root == str(folder / "data/online")
    assert cfg.quarantine.root == "/srv/q"
    assert cfg.duckdb == folder / "cat/pacs.duckdb"
    assert cfg.settle_seconds == 60
    assert cfg.offline.protocol == "s3" and cfg.offline.root == "pacs-offline/archive"
    assert cfg.offline.conn_id == "aws_pacs"
    assert cfg.offline.path("2024/01/x.dcm") == "pacs-offline/archive/2024/01/x.dcm"
    assert cfg.offline.uri(cfg.offline.path("a.dcm")) == "s3://pacs-offline/archive/a.dcm"


def test_pacs_config_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACS_CONFIG", str(_write(tmp_path, BASE)))
    assert load_config().path == tmp_path / "cfg" / "pacs.yaml"


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACS_TEST_ROOT", str(tmp_path / "x"))
    cfg = load_config(_write(tmp_path, dict(BASE, online="${PACS_TEST_ROOT}/online", work="${NOPE:-w}")))
    assert cfg.online.root == str(tmp_path / "x" / "online")
    assert cfg.work.root.endswith("/cfg/w")
    with pytest.raises(ConfigError, match="UNSET_VAR_XYZ"):
        load_config(_write(tmp_path, dict(BASE, online="${UNSET_VAR_XYZ}")))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"landing": []}, "landing"),
        ({"bogus": 1}, "bogus"),
        ({"settle_seconds": -1}, "settle_seconds"),
        ({"catalogue": {"duckdb": "x"}}, "catalogue"),
        ({"online": {"path": "x"}}, "online"),
        ({"ingest": {"batch_size": 0}}, "ingest.batch_size"),
        ({"ingest": {"nope": 1}}, "nope"),
        ({"offline": {"url": "s3://b/p", "storage_options": {"secret": "abc"}}}, "credentials"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, {**BASE, **change}))


def test_missing_required_key(tmp_path: Path) -> None:
    data = dict(BASE)
    del data["online"]
    with pytest.raises(ConfigError, match="online"):
        load_config(_write(tmp_path, data))


def test_sizes() -> None:
    assert parse_size("20 TB", "x") == 20 * 10**12
    assert parse_size("1.5GiB", "x") == int(1.5 * 2**30)
    assert parse_size(1024, "x") == 1024
    with pytest.raises(ConfigError):
        parse_size("lots", "x")


def test_policy_defaults_and_overrides(tmp_path: Path) -> None:
    pol = parse_policy(None)
    assert pol.online_retention_years == 3 and pol.age_basis == "study_date"
    pol = parse_policy({"online_retention_years": 2, "modality_overrides": {"MG": 10},
                        "hold": {"patients": ["P1"], "studies": ["1.2.3"]},
                        "watermarks": {"high": 0.9, "low": 0.8, "capacity": "10 TB"}})
    assert pol.retention_years(["CT"]) == 2
    assert pol.retention_years(["CT", "MG"]) == 10
    assert pol.hold_patients == {"P1"} and pol.online_capacity_bytes == 10 * 10**12
    cfg = load_config(_write(tmp_path, dict(BASE, policy={"online_retention_years": 5})))
    assert cfg.policy.online_retention_years == 5


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"online_retention_years": "three"}, "online_retention_years"),
        ({"age_basis": "acquired"}, "age_basis"),
        ({"modality_overrides": {"MG": -1}}, "modality_overrides.MG"),
        ({"hold": {"people": []}}, "hold"),
        ({"watermarks": {"high": 0.5, "low": 0.9, "capacity": "1 TB"}}, "watermarks"),
        ({"watermarks": {"high": 0.9}}, "capacity"),
        ({"packing": "yes"}, "packing"),
        ({"verify": "trust"}, "verify"),
        ({"retention": 3}, "retention"),
    ],
)
def test_bad_policy_names_the_key(raw: dict, key: str) -> None:
    with pytest.raises(PolicyError, match=key):
        parse_policy(raw)


def test_offline_credentials_from_an_airflow_connection(tmp_path: Path, s3, monkeypatch: pytest.MonkeyPatch) -> None:
    """conn_id: the Amazon provider builds the S3 filesystem from an Airflow connection."""
    import json

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PACS_TEST", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"}}))
    from helpers import s3fs_for

    s3fs_for(s3).mkdir("conn-bucket")
    cfg = load_config(_write(tmp_path, dict(BASE, offline={"url": "s3://conn-bucket/archive",
                                                           "conn_id": "aws_pacs_test"})))
    fs = cfg.offline.fs
    fs.pipe_file(cfg.offline.path("probe.txt"), b"through the connection")
    assert s3fs_for(s3).cat_file("conn-bucket/archive/probe.txt") == b"through the connection"


@pytest.mark.parametrize(("change", "message"), [
    ({"policy": {"online_retention_yeras": 3}}, r"policy: unknown key\(s\) \['online_retention_yeras'\]"),
    ({"policy": {"watermarks": {"high": 0.9}}}, "policy.watermarks: needs the online capacity"),
    ({"capacity": {"price_per_gb": 1}}, r"capacity.*price_per_gb"),
    ({"capacity": {"forecast_months": 0}}, "capacity.forecast_months"),
    ({"ingest": {"fsync": "yes"}}, "ingest.fsync: expected true or false"),
    ({"catalogue": {"duckdb": "c.duckdb", "parquet": "pq", "memory": "1GB"}}, r"catalogue: unknown key\(s\)"),
], ids=["policy-typo", "policy-watermarks", "capacity-typo", "capacity-value", "ingest-bool", "catalogue-key"])
def test_every_section_is_validated_when_the_configuration_loads(tmp_path: Path, change: dict,
                                                                 message: str) -> None:
    """A typo in the lifecycle policy or the capacity settings fails the first command, not the
    nightly lifecycle or report run hours later."""
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, {**BASE, **change}))


def test_a_policy_file_is_read_and_validated_at_load(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "policy": "lifecycle.yaml"})
    (path.parent / "lifecycle.yaml").write_text("online_retention_years: 4\nmodality_overrides: {MG: 10}\n")
    cfg = load_config(path)
    assert cfg.policy.online_retention_years == 4 and cfg.policy.modality_overrides == {"MG": 10.0}
    (path.parent / "lifecycle.yaml").write_text("online_retention_years: -1\n")
    with pytest.raises(PolicyError, match=r"policy\.online_retention_years"):
        load_config(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"lifecycle": {"schedule": "@daily"}}, "'lifecycle' is no longer read"),
    ({"fixity": {}}, "'fixity' is no longer read"),
    ({"recall": {"pin_days": 30}}, "'recall' is no longer read"),
    ({"ingest": {"schedule": "*/5 * * * *"}}, "ingest.schedule is no longer read.*PACS_INGEST_SCHEDULE"),
    ({"retention": 5}, r"unknown top-level key\(s\) \['retention'\]"),
])
def test_dead_and_unknown_keys_are_refused_by_name(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, {**BASE, **change}))
