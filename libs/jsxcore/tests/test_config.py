from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from jsxcore.config import DEV_KEYS_FILE, ServiceConfig, parse_plugins, split_host_port
from jsxcore.errors import ConfigError
from jsxcore.pii import generate_key

PII, BLIND = generate_key(), generate_key()
SECRET = "s" * 40


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"JSX_DATA_DIR": str(tmp_path), "JSX_PII_KEY": PII, "JSX_BLIND_INDEX_KEY": BLIND, "JSX_AUTH_SECRET": SECRET}
    env.update(extra)
    return env


def test_defaults(tmp_path: Path) -> None:
    cfg = ServiceConfig.from_env("funds", base_env(tmp_path))
    assert cfg.service == "funds"
    assert cfg.data_dir == tmp_path
    assert cfg.database_url == f"sqlite:///{tmp_path.as_posix()}/funds.db"
    assert cfg.nats_url == "nats://127.0.0.1:4222" and cfg.nats_servers == ["nats://127.0.0.1:4222"]
    assert (cfg.grpc_addr, cfg.grpc_host, cfg.grpc_port) == ("127.0.0.1:0", "127.0.0.1", 0)
    assert cfg.plugins == {} and cfg.plugin_timeout_ms == 2000
    assert cfg.log_level == "INFO" and cfg.shutdown_grace_s == 5.0
    assert cfg.members_addr is None and cfg.funds_addr is None and cfg.events_addr is None
    assert not cfg.dev and cfg.pii_key_id == 1 and cfg.pii_old_keys == {}
    assert len(cfg.pii_key) == 32 and cfg.auth_secret == SECRET


def test_default_data_dir_is_relative_data(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    del env["JSX_DATA_DIR"]
    cfg = ServiceConfig.from_env("events", env)
    assert cfg.data_dir == Path("data").absolute()
    assert cfg.database_url.endswith("/data/events.db")


def test_service_specific_overrides_generic(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        JSX_DATABASE_URL="postgresql://postgres@127.0.0.1/test",
        JSX_FUNDS_DATABASE_URL="postgresql://postgres@127.0.0.1/funds",
        JSX_FUNDS_GRPC_ADDR="",  # empty counts as unset
        JSX_GRPC_ADDR="0.0.0.0:50051",
        JSX_MEMBERS_LOG_LEVEL="debug",
    )
    funds = ServiceConfig.from_env("funds", env)
    members = ServiceConfig.from_env("members", env)
    assert funds.database_url.endswith("/funds") and members.database_url.endswith("/test")
    assert funds.grpc_port == 50051
    assert members.log_level == "DEBUG" and funds.log_level == "INFO"


def test_typed_fields(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        JSX_PLUGINS=" hunan=430000 , hongjiang=431281+431222101 ",
        JSX_PLUGIN_TIMEOUT_MS="500",
        JSX_LOG_LEVEL="warn",
        JSX_SHUTDOWN_GRACE_S="2.5",
        JSX_MEMBERS_ADDR="members.svc:50051",
        JSX_EVENTS_ADDR="[::1]:7000",
        JSX_NATS_URL="nats://a:4222, nats://b:4222",
        JSX_GRPC_ADDR="[::]:0",
    )
    cfg = ServiceConfig.from_env("funds", env)
    assert cfg.plugins == {"hunan": ("430000000000",), "hongjiang": ("431281000000", "431222101000")}
    assert cfg.plugin_timeout_ms == 500 and cfg.log_level == "WARNING" and cfg.shutdown_grace_s == 2.5
    assert cfg.members_addr == "members.svc:50051" and cfg.events_addr == "[::1]:7000"
    assert cfg.nats_servers == ["nats://a:4222", "nats://b:4222"]
    assert (cfg.grpc_host, cfg.grpc_port) == ("[::]", 0)


def test_all_problems_reported_at_once_without_secrets(tmp_path: Path) -> None:
    bad_key = "c2hvcnQ="  # base64 of b"short"
    env = {
        "JSX_DATA_DIR": str(tmp_path),
        "JSX_PII_KEY": bad_key,
        "JSX_AUTH_SECRET": "tooshort",
        "JSX_FUNDS_PLUGIN_TIMEOUT_MS": "fast",
        "JSX_LOG_LEVEL": "LOUD",
        "JSX_GRPC_ADDR": "localhost",
        "JSX_MEMBERS_ADDR": "members:0",
        "JSX_PLUGINS": "hunan=43,=431281,hongjiang",
        "JSX_DATABASE_URL": "mysql://x/y",
        "JSX_NATS_URL": "http://x",
        "JSX_SHUTDOWN_GRACE_S": "-1",
        "JSX_DEV": "maybe",
    }
    with pytest.raises(ConfigError) as e:
        ServiceConfig.from_env("funds", env)
    msg = str(e.value)
    problems = e.value.problems
    for var in (
        "JSX_PII_KEY",
        "JSX_BLIND_INDEX_KEY",
        "JSX_AUTH_SECRET",
        "JSX_FUNDS_PLUGIN_TIMEOUT_MS",
        "JSX_LOG_LEVEL",
        "JSX_GRPC_ADDR",
        "JSX_MEMBERS_ADDR",
        "JSX_PLUGINS",
        "JSX_DATABASE_URL",
        "JSX_NATS_URL",
        "JSX_SHUTDOWN_GRACE_S",
        "JSX_DEV",
    ):
        assert var in msg, var
    assert len(problems) == 12
    assert "必须设置" in msg and "区划代码“43”无效" in msg
    assert bad_key not in msg and "tooshort" not in msg


def test_rejects_same_pii_and_blind_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="不能与 JSX_PII_KEY 相同"):
        ServiceConfig.from_env("funds", base_env(tmp_path, JSX_BLIND_INDEX_KEY=PII))


def test_bad_service_name() -> None:
    with pytest.raises(ConfigError):
        ServiceConfig.from_env("", {})


def test_repr_hides_secrets(tmp_path: Path) -> None:
    cfg = ServiceConfig.from_env("funds", base_env(tmp_path, JSX_PII_OLD_KEYS=f"7:{generate_key()}"))
    text = repr(cfg)
    assert "funds" in text and SECRET not in text
    for raw in (cfg.pii_key, cfg.blind_index_key, *cfg.pii_old_keys.values()):
        assert repr(raw) not in text and raw.hex() not in text


def test_cipher_and_blind_index_helpers_with_rotation(tmp_path: Path) -> None:
    old = generate_key()
    cfg_old = ServiceConfig.from_env("members", base_env(tmp_path, JSX_PII_KEY=old, JSX_PII_KEY_ID="3"))
    token = cfg_old.field_cipher().encrypt("13812345678")
    cfg_new = ServiceConfig.from_env("members", base_env(tmp_path, JSX_PII_KEY_ID="4", JSX_PII_OLD_KEYS=f"3:{old}"))
    cipher = cfg_new.field_cipher()
    assert cipher.decrypt(token) == "13812345678" and cipher.needs_rotation(token)
    assert cipher.encrypt("x")[0] == 4
    assert cfg_new.blind_index().digest("a") == cfg_old.blind_index().digest("a")
    with pytest.raises(ConfigError, match="JSX_PII_OLD_KEYS"):
        ServiceConfig.from_env("members", base_env(tmp_path, JSX_PII_OLD_KEYS=f"1:{old}"))
    with pytest.raises(ConfigError, match="JSX_PII_OLD_KEYS"):
        ServiceConfig.from_env("members", base_env(tmp_path, JSX_PII_OLD_KEYS="3:nope"))


def test_dev_keys_created_once_and_reused(tmp_path: Path) -> None:
    env = {"JSX_DEV": "1", "JSX_DATA_DIR": str(tmp_path / "stack")}
    a = ServiceConfig.from_env("funds", env)
    b = ServiceConfig.from_env("members", env)
    assert a.dev and a.pii_key == b.pii_key and a.auth_secret == b.auth_secret
    assert a.pii_key != a.blind_index_key
    path = tmp_path / "stack" / DEV_KEYS_FILE
    assert set(json.loads(path.read_text())) == {"pii_key", "blind_index_key", "auth_secret"}
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "stack").iterdir()] == [DEV_KEYS_FILE]  # no temp files left
    # explicit variables still win in dev mode
    c = ServiceConfig.from_env("funds", {**env, "JSX_AUTH_SECRET": SECRET})
    assert c.auth_secret == SECRET and c.pii_key == a.pii_key


def test_dev_keys_concurrent_start_agrees(tmp_path: Path) -> None:
    env = {"JSX_DEV": "1", "JSX_DATA_DIR": str(tmp_path)}
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(ServiceConfig.from_env("funds", env).pii_key)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1


def test_dev_keys_file_corrupt(tmp_path: Path) -> None:
    (tmp_path / DEV_KEYS_FILE).write_text("{}")
    with pytest.raises(ConfigError, match="开发密钥文件"):
        ServiceConfig.from_env("funds", {"JSX_DEV": "1", "JSX_DATA_DIR": str(tmp_path)})


def test_parse_plugins_and_host_port() -> None:
    assert parse_plugins("") == {}
    assert parse_plugins("a=431281+431281") == {"a": ("431281000000",)}
    with pytest.raises(ValueError, match="两次"):
        parse_plugins("a=430000,a=431281")
    assert split_host_port("h:1") == ("h", 1)
    for bad in ("h", ":1", "h:x", "h:70000", "h:0", "[::1:5"):
        with pytest.raises(ValueError):
            split_host_port(bad)
    assert split_host_port("h:0", allow_zero=True) == ("h", 0)


def test_url_passwords_hidden(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        JSX_DATABASE_URL="postgresql://jsx:hunter2@db:5432/funds",
        JSX_NATS_URL="nats://app:natspw@n1:4222,nats://app:natspw@n2:4222",
    )
    cfg = ServiceConfig.from_env("funds", env)
    assert cfg.database_url.endswith("hunter2@db:5432/funds")  # the real value is kept for connecting
    text = repr(cfg)
    assert "hunter2" not in text and "natspw" not in text
    assert "postgresql://jsx:***@db:5432/funds" in text and "nats://app:***@n2:4222" in text
    with pytest.raises(ConfigError) as e:
        ServiceConfig.from_env("funds", {**env, "JSX_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(e.value) and "mysql://root:***@db/x" in str(e.value)
