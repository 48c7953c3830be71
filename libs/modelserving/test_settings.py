import pytest

from modelserving import Settings, SettingsError, load_settings


def test_defaults_serve_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "WORKERS", "LOG_LEVEL", "MODEL_DIR", "ACCESS_LOG", "ROOT_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.access_log is True  # the audit trail is on unless turned off
    assert settings.root_path == ""
    assert (settings.host, settings.port, settings.workers, settings.log_level) == (
        "127.0.0.1",
        8000,
        1,
        "info",
    )
    assert settings.model_dir is None


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("WORKERS", "4")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("MAX_BATCH_SIZE", "10")
    monkeypatch.setenv("APP_REVISION", "abc123")
    settings = load_settings()
    assert settings == Settings(
        host="0.0.0.0", port=9001, workers=4, log_level="warning", max_batch_size=10, app_revision="abc123"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("WORKERS", "0"),
        ("LOG_LEVEL", "loud"),
        ("MAX_BODY_BYTES", "-1"),
        ("GRPC_PORT", "0"),
        ("GRPC_PORT", "8000"),  # PORT's
        ("SHADOW_URL", "titanic-candidate:8000"),  # no scheme
        ("SHADOW_URL", "ftp://titanic-candidate"),
        ("SHADOW_URL", "http://user:secret@titanic-candidate"),
        ("SHADOW_URL", "http://titanic-candidate:99999"),
        ("SHADOW_URL", "http://titanic-candidate/?q=1"),
        ("SHADOW_SAMPLE_RATE", "0"),
        ("SHADOW_SAMPLE_RATE", "1.5"),
        ("SHADOW_SAMPLE_RATE", "half"),
        ("SHADOW_QUEUE_SIZE", "0"),
        ("SHADOW_TIMEOUT_SECONDS", "0"),
        ("SHADOW_TIMEOUT_SECONDS", "-2"),
    ],
)
def test_invalid_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {name}=")
    assert repr(value) in message
    assert "\n" not in message


def test_shadow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHADOW_URL", "SHADOW_SAMPLE_RATE", "SHADOW_QUEUE_SIZE", "SHADOW_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.shadow_url is None  # no shadowing unless asked
    assert (settings.shadow_sample_rate, settings.shadow_queue_size, settings.shadow_timeout_seconds) == (
        1.0,
        100,
        2.0,
    )
    monkeypatch.setenv("SHADOW_URL", "http://titanic-candidate.models.svc:8000/")
    monkeypatch.setenv("SHADOW_SAMPLE_RATE", "0.1")
    settings = load_settings()
    assert settings.shadow_url == "http://titanic-candidate.models.svc:8000"  # predict paths are appended
    assert settings.shadow_sample_rate == 0.1
