"""JSON log lines: the access logger's shortcut writes exactly what the logging machinery would."""

import io
import json
import logging

import pytest

from mlops_template.serving import logs

EXTRA = {"request_id": "abc", "method": "POST", "route": "/predict", "status": 200, "duration_ms": 1.234}


@pytest.fixture
def configured():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("INFO")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)
    yield stream, logging.getLogger(logs.ACCESS_LOGGER)
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_fast_line_equals_the_formatter_line(configured):
    stream, access = configured
    assert isinstance(access, logs.FastLogger)
    access.info("request", extra=EXTRA)
    fast = stream.getvalue()
    record = logging.LogRecord(access.name, logging.INFO, __file__, 1, "request", (), None)
    record.__dict__.update(EXTRA)
    record.created = logs.datetime.fromisoformat(json.loads(fast)["time"]).timestamp()
    assert fast == logs.JsonFormatter().format(record) + "\n"
    assert list(json.loads(fast)) == ["time", "level", "logger", "message", *EXTRA]


def test_timestamps_match_the_formatter():
    fast = logs.FastLogger("x")
    for t in (1_700_000_000.0, 1_700_000_000.9999996, 1_700_000_001.1234995, 1_700_000_002.0004999, 1.5):
        assert fast._time(t) == logs._timestamp(t)


def test_level_switch_and_unusual_records_take_the_standard_path(configured, caplog: pytest.LogCaptureFixture):
    stream, access = configured
    access.setLevel(logging.WARNING)
    try:
        access.info("request", extra=EXTRA)
        assert stream.getvalue() == ""  # same switch as before: the logger's level
    finally:
        access.setLevel(logging.NOTSET)
    access.info("with %s", "args", extra=EXTRA)  # args: formatted by the standard path
    assert json.loads(stream.getvalue())["message"] == "with args"
    with caplog.at_level(logging.INFO, logger=logs.ACCESS_LOGGER):  # a second handler: records reach both
        access.info("request", extra=EXTRA)
    assert caplog.records[-1].route == "/predict"
    with pytest.raises(KeyError):  # reserved names are refused as before
        access.info("request", extra={"message": "x"})
