"""Alert relay: body mapping and settings (the HTTP round trip is in tests/integration/test_alert_relay.py)."""

from __future__ import annotations

import pytest

from mlops_template.ci.relay import RelaySettings, dispatch_body
from mlops_template.core.errors import UserError


def alert(status: str, **labels: str) -> dict:
    return {"status": status, "labels": {"alertname": "FeatureDrift", **labels}, "startsAt": "2026-01-01T00:00:00Z"}


def test_firing_alerts_become_a_dispatch_with_at_most_ten_payload_keys() -> None:
    body = dispatch_body(
        {
            "status": "firing",
            "groupKey": "g",
            "alerts": [alert("firing", feature="b"), alert("firing", feature="a"), alert("resolved", feature="z")],
        },
        "retrain",
    )
    assert body["event_type"] == "retrain"
    assert body["client_payload"]["features"] == ["a", "b"] and body["client_payload"]["alerts"] == ["FeatureDrift"]
    assert len(body["client_payload"]) <= 10


def test_resolved_notifications_dispatch_nothing() -> None:
    assert dispatch_body({"status": "resolved", "alerts": [alert("resolved")]}, "retrain") is None
    assert dispatch_body({"status": "firing", "alerts": []}, "retrain") is None


def test_settings_come_from_the_environment_and_never_show_the_token() -> None:
    settings = RelaySettings.from_env(
        {
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_TOKEN": "tok",
            "RELAY_MIN_INTERVAL": "5",
            "GITHUB_API_URL": "https://ghe.example/api/v3/",
        }
    )
    assert settings.api_url == "https://ghe.example/api/v3" and settings.min_interval == 5.0
    assert "tok" not in repr(settings)
    with pytest.raises(UserError, match="GITHUB_TOKEN"):
        RelaySettings.from_env({"GITHUB_REPOSITORY": "o/r"})
    with pytest.raises(UserError, match="owner/name"):
        RelaySettings.from_env({"GITHUB_REPOSITORY": "nope", "GITHUB_TOKEN": "t"})
    with pytest.raises(UserError, match="RELAY_MIN_INTERVAL"):
        RelaySettings.from_env({"GITHUB_REPOSITORY": "o/r", "GITHUB_TOKEN": "t", "RELAY_MIN_INTERVAL": "soon"})
