import pandas as pd
import pytest

from mlops_template.cli import build_parser, main


def test_every_command_has_help():
    parser = build_parser()
    text = parser.format_help()
    for name in ("sample", "prep", "train", "evaluate", "gate", "metrics"):
        assert name in text


def test_user_error_exit_2_one_line_no_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["prep"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: params.yaml: file not found") and "Traceback" not in err


def test_sample_respects_if_missing(workdir, capsys):
    path = workdir / "data" / "loans.csv"
    before = path.read_bytes()
    assert main(["sample", "--if-missing", "--rows", "10"]) == 0
    assert path.read_bytes() == before
    assert main(["sample", "--rows", "10", "--output", "small.csv", "--drift", "0.3"]) == 0
    assert len(pd.read_csv(workdir / "small.csv")) == 10


def test_sample_rejects_bad_drift(workdir, capsys):
    assert main(["sample", "--drift", "2"]) == 2
    assert "--drift must be within 0..1" in capsys.readouterr().err


def test_unexpected_error_is_one_line(workdir, monkeypatch, capsys):
    monkeypatch.setattr("mlops_template.pipeline.prep.run", lambda params: 1 / 0)
    assert main(["prep"]) == 3
    assert "internal error: ZeroDivisionError" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        main(["-v", "prep"])


def test_metrics_without_pipeline(workdir, capsys):
    assert main(["metrics"]) == 2
    assert "run the pipeline first" in capsys.readouterr().err
