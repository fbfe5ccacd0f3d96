"""Regression tests for files the CLI once answered with a traceback, an internal error, a hang or a silently
wrong result (found by tests/unit/test_fuzz_cli.py, issue 16): now exit 2 and one error line."""

import inspect
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from mlops_template.cli import COMMANDS, main
from tests.conftest import ROOT
from tests.serving_helpers import build_bundle


def cli(*args: str) -> tuple[int, list[str]]:
    stderr = io.StringIO()
    with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, [line for line in stderr.getvalue().splitlines() if not line[:4].isdigit()]  # not log lines


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bad-files"))


BOMB = "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n"
               for i in range(9))  # fmt: skip


@pytest.mark.timeout(60, method="thread")  # before: pydantic walked 9**9 items, past SIGALRM (Rust code)
@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: "bombs:\n" + BOMB + t.replace("drop: [loan_id]", "drop: *a8"), "YAML aliases"),
        (lambda t: t.replace("drop: [loan_id]", "drop: &loop [*loop]"), "YAML aliases"),
        (lambda t: t + "x: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested too deeply"),
        (lambda t: t.replace("  seed: 42", "  seed: 2026-02-30", 1), "day is out of range"),
        (lambda t: t.replace("# ", "# \udce9", 1), "not valid YAML"),
    ],
    ids=["alias-bomb", "alias-cycle", "deep", "impossible-date", "not-utf8"],
)
def test_params_yaml_that_crashed_or_hung(tmp_path: Path, edit, problem: str):
    text = edit((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
    code, lines = cli("--params", str(tmp_path / "params.yaml"), "prep")
    assert code == 2
    (line,) = lines
    assert line.startswith(f"error: {tmp_path / 'params.yaml'}: ") and problem in line


def test_a_bad_hyperparameter_is_reported_on_one_line(tmp_path: Path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["random_forest"]["depth"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, lines = cli("--params", str(tmp_path / "params.yaml"), "train")
    assert code == 2
    assert lines[0] == f"error: {tmp_path / 'params.yaml'}: invalid parameters"
    (detail,) = lines[1:]
    assert detail.startswith("  - train.random_forest: Invalid parameter 'depth'")


def test_train_before_prep_is_a_user_error(tmp_path: Path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prep"]["output_dir"] = str(tmp_path / "prepared")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, lines = cli("--params", str(tmp_path / "params.yaml"), "train")
    assert (code, lines) == (2, [f"error: {tmp_path / 'prepared' / 'schema.json'}: missing; run the prep stage first "
                                 "(`make pipeline`)"])  # fmt: skip


def write_csv(bundle: Path, directory: Path, edit) -> Path:
    rows = (bundle.parent / "data.csv").read_text().splitlines()[:260]
    path = directory / "in.csv"
    path.write_text("\n".join(edit(rows)) + "\n")
    return path


def commands(bundle: Path, csv: Path, out: Path) -> dict[str, list[str]]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["path"] = str(csv)
    params["prep"]["output_dir"] = str(out / "prepared")
    params["monitoring"]["drift"]["min_rows"] = 50
    (out.parent / "params.yaml").write_text(yaml.safe_dump(params))
    flag = ["--params", str(out.parent / "params.yaml")]
    return {
        "prep": [*flag, "prep"],
        "predict": [*flag, "predict", "--input", str(csv), "--output", str(out / "o.csv"), "--model-dir", str(bundle),
                    "--no-progress"],
        "drift": [*flag, "drift", "--current", str(csv), "--bundle", str(bundle), "--output-dir", str(out / "drift")],
    }  # fmt: skip


@pytest.mark.parametrize("command", ["prep", "predict", "drift"])
def test_an_extra_field_on_the_first_data_line(bundle: Path, tmp_path: Path, command: str):
    """pandas took the first column for the index and shifted every column: drift crashed (exit 3), prep and
    predict read every value under the wrong name."""
    csv = write_csv(bundle, tmp_path, lambda rows: [rows[0], rows[1] + ",x", *rows[2:]])
    (tmp_path / "out").mkdir()
    code, lines = cli(*commands(bundle, csv, tmp_path / "out")[command])
    assert code == 2
    assert lines == [f"error: {csv}: line 2 has more fields than the header line; remove the extra field(s) "
                     "(a trailing comma?)"]  # fmt: skip
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("command", ["prep", "predict", "drift"])
def test_parser_errors_are_one_line(bundle: Path, tmp_path: Path, command: str):
    csv = write_csv(bundle, tmp_path, lambda rows: [*rows[:5], rows[5] + ",x,y", *rows[6:]])
    (tmp_path / "out").mkdir()
    code, lines = cli(*commands(bundle, csv, tmp_path / "out")[command])
    assert code == 2
    (line,) = lines
    assert line.startswith(f"error: {csv}: not a readable CSV (") and "line 6" in line


@pytest.mark.parametrize("blank", ["", "\r", " "])
def test_a_blank_first_line_into_predict(bundle: Path, tmp_path: Path, blank: str):
    """The header check skipped the blank line, the chunk reader (which keeps blank lines, for the line numbers)
    did not: an internal error, KeyError 'applicant_income', exit 3 (found by `make fuzz`)."""
    csv = write_csv(bundle, tmp_path, lambda rows: [blank, *rows])
    (tmp_path / "out").mkdir()
    code, lines = cli(*commands(bundle, csv, tmp_path / "out")["predict"])
    assert (code, lines) == (2, [f"error: {csv}: line 1 is blank; the header line (the column names) must come first"])
    assert list((tmp_path / "out").iterdir()) == []


def reads_params(command: str) -> bool:
    """Whether a CLI command reads --params (its function uses `args.params`)."""
    return "args.params" in inspect.getsource(COMMANDS[command][1])


PARAMS_READERS = sorted(name for name in COMMANDS if reads_params(name))
# what a command needs besides --params; paths that do not exist: the damaged params.yaml must be refused first
REQUIRED = {
    "predict": ["--input", "{tmp}/in.csv", "--output", "{tmp}/out.csv"],
    "drift": ["--current", "{tmp}/in.csv"],
    "mlflow-model": ["--output", "{tmp}/m"],
}
DAMAGED = {
    "not YAML": "schema: {target: loan_status\n",
    "unknown key": "schema: {target: loan_status, task: binary}\ncolour: red\n",
    "wrong type": "schema: {target: loan_status, task: binary}\nprep: {test_size: half}\n",
    "alias bomb": "bombs:\n" + BOMB,
}


@pytest.mark.parametrize("command", PARAMS_READERS)
def test_every_command_refuses_a_damaged_params_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str):
    """test_fuzz_cli.py runs the commands that can run here on mutated params.yaml; this covers all of them (the DVC,
    MLflow, server and CI ones too): exit 2, the error names the file (one line per bad key), nothing written."""
    assert {"prep", "serve", "data", "bundle-pull", "promote"} <= set(PARAMS_READERS)  # the introspection works
    monkeypatch.chdir(tmp_path)  # relative defaults would land here
    for variable in ("MODEL_DIR", "MODEL_URI", "PARAMS_FILE", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(variable, raising=False)
    params = tmp_path / "params.yaml"
    for form, text in DAMAGED.items():
        params.write_text(text)
        code, lines = cli(
            "--params", str(params), command, *(a.format(tmp=tmp_path) for a in REQUIRED.get(command, []))
        )
        assert code == 2, (form, lines)
        assert lines[0].startswith(f"error: {params}: "), (form, lines)
        assert all(line.startswith("  - ") for line in lines[1:]), (form, lines)
        assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"], form
