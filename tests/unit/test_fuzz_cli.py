"""Property-based fuzzing of the files people feed the CLI: damaged CSVs into prep, predict and drift, damaged
params.yaml into every command that reads it. Whatever the file: exit 0 (1 for drift found), or exit 2 with one
`error:` line that starts with the file (params.yaml adds one indented line per bad key); never a traceback or an
internal error, and no output file touched on failure (in the output folder, or in the working directory).
Examples per test: the Hypothesis profile (tests/conftest.py; `make fuzz` runs the long one)."""

from __future__ import annotations

import io
import re
import shutil
from contextlib import chdir, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_template.cli import main
from tests.conftest import ROOT
from tests.serving_helpers import build_bundle

pytestmark = pytest.mark.fuzz
# a CLI run loads the model bundle (checksums, ONNX session): slower than an HTTP request, so fewer examples
CLI_EXAMPLES = max(settings().max_examples // 4, 20)
SENTINEL = b"left alone"
FILE_FIRST = re.compile(r"error: \S*[/.]\S*: ")  # `error: <path>: <problem, line, field and fix>`


@dataclass
class Project:
    """A trained bundle, a valid CSV of its features and a directory for each run's files."""

    bundle: Path
    csv: bytes
    work: Path

    def params(self, **sections: dict) -> dict[str, Any]:
        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        raw["data"]["path"] = str(self.work / "in.csv")
        raw["prep"]["output_dir"] = str(self.work / "out" / "prepared")
        raw["train"]["output_dir"] = str(self.work / "out" / "candidate")
        raw["evaluate"] |= {"metrics_path": str(self.work / "out" / "metrics.json"),
                            "plots_dir": str(self.work / "out" / "plots")}  # fmt: skip
        raw["gate"] |= {"bundle_dir": str(self.bundle), "report_path": str(self.work / "out" / "gate.md")}
        raw["monitoring"]["drift"] |= {"min_rows": 50, "output_dir": str(self.work / "out" / "drift")}
        for section, values in sections.items():
            raw[section] |= values
        return raw


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    trained = tmp_path_factory.mktemp("cli-bundle")
    bundle = build_bundle(trained)
    lines = (trained / "data.csv").read_bytes().split(b"\n")
    return Project(bundle, b"\n".join(lines[:121]) + b"\n", tmp_path_factory.mktemp("cli"))


def fresh(project: Project, params: dict[str, Any] | str) -> tuple[Path, Path]:
    """An empty output folder holding one sentinel file, and the params file; returns both paths."""
    out = project.work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    (out / "sentinel").write_bytes(SENTINEL)
    path = project.work / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False))
    return out, path


def run(args: list[str], names: list[str], out: Path, allowed: set[int]) -> int:
    """Run the CLI in-process and check the outcome; `names`: file names one of which the error must name.

    It runs in an empty working directory: a damaged params.yaml's relative or default paths (a mutated
    prep.output_dir, a deleted gate.bundle_dir) land there, never in the repository the tests run from."""
    cwd = out.parent / "cwd"
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir()
    shutil.copyfile(ROOT / "dvc.yaml", cwd / "dvc.yaml")  # `report` reads its plot definitions from the project root
    stderr, stdout = io.StringIO(), io.StringIO()
    with redirect_stderr(stderr), redirect_stdout(stdout), chdir(cwd):
        code = main(args)
    text = stderr.getvalue()
    assert "Traceback" not in text, text
    assert code in allowed, (code, text[-3000:])
    if code == 2:
        (error,) = [line for line in text.splitlines() if line.startswith("error: ")]
        assert FILE_FIRST.match(error), error  # whatever went wrong, the line says in which file
        assert not names or any(name in error for name in names), error
        following = text.split(error, 1)[1].strip("\n").splitlines()  # params.yaml: a line per bad key, if any
        assert all(line.startswith("  - ") for line in following), text
    if code not in (0, 1):
        assert sorted(p.name for p in out.iterdir()) == ["sentinel"], sorted(out.iterdir())  # no partial output
        assert (out / "sentinel").read_bytes() == SENTINEL
        assert sorted(p.name for p in cwd.iterdir()) == ["dvc.yaml"], sorted(cwd.rglob("*"))
    return code


# ---- CSV mutations ----------------------------------------------------------------------------------------------
CELLS = st.one_of(
    st.sampled_from([b"", b" ", b'"', b'""', b"1e999", b"-inf", b"NaN", b"nan", b"True", b"1.0", b"3+", b"x,y",
                     b'"a\nb"', b"\x00", b"\xff\xfe", b"\xe9", b"9" * 400, b"Urban\r"]),
    st.binary(max_size=12),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
)  # fmt: skip


@st.composite
def damaged_csv(draw: st.DrawFn, valid: bytes) -> bytes:
    """The valid CSV with 1-3 of: truncated/dropped/doubled lines, stray quotes, binary bytes, a BOM, other
    encodings, duplicate or empty header names, one column only, bad cells, CRLF, nothing but a header."""
    lines = valid.rstrip(b"\n").split(b"\n")
    encoding = None
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "quote", "binary", "bom", "encoding", "duplicate_header",
                                   "empty_header", "one_column", "cell", "drop", "double", "blank", "extra",
                                   "crlf", "header_only", "empty"]))  # fmt: skip
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        line = lines[i] if lines else b""
        at = draw(st.integers(0, len(line)))
        header = lines[0].split(b",") if lines else [b""]
        if op == "truncate" and lines:
            lines[i] = line[:at]
        elif op == "quote" and lines:
            lines[i] = line[:at] + b'"' + line[at:]
        elif op == "binary" and lines:
            lines[i] = line[:at] + draw(st.binary(min_size=1, max_size=6)) + line[at:]
        elif op == "bom" and lines:
            lines[0] = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])) + lines[0]
        elif op == "encoding":
            encoding = draw(st.sampled_from(["utf-16", "utf-32", "latin-1-e-acute", "cp1252-quote"]))
        elif op == "duplicate_header":
            header[draw(st.integers(0, len(header) - 1))] = draw(st.sampled_from(header))
            lines[0:1] = [b",".join(header)]
        elif op == "empty_header":
            header[draw(st.integers(0, len(header) - 1))] = b""
            lines[0:1] = [b",".join(header)]
        elif op == "one_column":
            lines = [x.split(b",")[0] for x in lines]
        elif op == "cell" and lines:
            cells = line.split(b",")
            cells[draw(st.integers(0, len(cells) - 1))] = draw(CELLS)
            lines[i] = b",".join(cells)
        elif op == "drop" and lines:
            del lines[i]
        elif op == "double" and lines:
            lines.insert(i, line)
        elif op == "blank":
            lines.insert(i, b"")
        elif op == "extra" and lines:
            lines[i] = line + b"," + draw(CELLS)
        elif op == "header_only":
            lines = lines[:1]
        elif op == "empty":
            lines = []
    separator = b"\r\n" if draw(st.booleans()) else b"\n"
    data = separator.join(lines) + (separator if lines and draw(st.booleans()) else b"")
    if encoding in ("utf-16", "utf-32"):
        data = data.decode("utf-8", "replace").encode(encoding)
    elif encoding == "latin-1-e-acute":  # a Latin-1 file among UTF-8 ones: é is one byte, not valid UTF-8
        data = data.replace(b"Urban", b"Urb\xe9n", 1)
    elif encoding == "cp1252-quote":
        data = data.replace(b"Graduate", b"\x93Graduate\x94", 1)
    return data


@settings(max_examples=CLI_EXAMPLES)
@given(data=st.data())
def test_damaged_csv_into_prep_predict_drift(project: Project, data: st.DataObject):
    source = data.draw(damaged_csv(project.csv))
    command = data.draw(st.sampled_from(["prep", "predict", "drift"]))
    out, params = fresh(project, project.params())
    (project.work / "in.csv").write_bytes(source)
    names = ["in.csv"]
    if command == "prep":
        run(["--params", str(params), "prep"], names, out, {0, 2})
    elif command == "predict":
        args = ["--input", str(project.work / "in.csv"), "--output", str(out / "scored.csv"),
                "--rejects", str(out / "rejects.csv"), "--model-dir", str(project.bundle), "--no-progress"]  # fmt: skip
        run(["--params", str(params), "predict", *args], names, out, {0, 2})
    else:
        args = ["--current", str(project.work / "in.csv"), "--bundle", str(project.bundle)]
        run(["--params", str(params), "drift", *args, "--output-dir", str(out / "drift")], names, out, {0, 1, 2})


# ---- params.yaml mutations --------------------------------------------------------------------------------------
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(0, 3), max_size=2),
    st.sampled_from(["nan", ".inf", "1e999", "yes", "~", "2026-02-30", "-1", "0"]),
)  # fmt: skip
BOMB = "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n"
               for i in range(9))  # fmt: skip
# what runs here without a DVC remote, MLflow or a server; test_every_command_refuses_a_damaged_params_yaml
# (test_bad_files.py) gives all commands that read params.yaml (serve, data, bundle-pull, promote...) a damaged one
COMMANDS = [
    ["sample", "--rows", "20", "--output", "{out}/sample.csv"], ["prep"], ["train"], ["evaluate"], ["gate"],
    ["metrics"], ["bundle-check"], ["report", "--output", "{out}/report.md"],
    ["drift", "--current", "{work}/missing.csv"], ["predict", "--input", "{work}/missing.csv", "--output",
                                                   "{out}/scored.csv", "--no-progress"],
]  # fmt: skip


def leaves(tree: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(tree, dict) and tree:
        return [leaf for key, value in tree.items() for leaf in leaves(value, (*path, key))]
    return [path] if path else []


@st.composite
def damaged_params(draw: st.DrawFn, valid: dict[str, Any]) -> str:
    """params.yaml with wrong types, unknown or missing keys, or as text: YAML alias bombs, deep nesting,
    self-referencing aliases, tabs, binary bytes, not a mapping."""
    tree = yaml.safe_load(yaml.safe_dump(valid))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["type", "unknown", "delete"]))
        path = draw(st.sampled_from(leaves(tree)))
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        if op == "type":
            parent[path[-1]] = draw(ODD_VALUES)
        elif op == "unknown":
            parent[draw(st.text(min_size=1, max_size=10))] = draw(ODD_VALUES)
        else:
            del parent[path[-1]]
    text = yaml.safe_dump(tree, sort_keys=False)
    form = draw(st.sampled_from(["tree", "bomb", "deep", "cycle", "raw", "scalar"]))
    if form == "bomb":  # a billion laughs where any value is accepted (hyper-parameters), or a list of str
        where = draw(st.sampled_from(["estimator", "drop"]))
        bomb = f"train:\n  logistic_regression:\n{BOMB}" if where == "estimator" else f"bombs:\n{BOMB}"
        text = bomb + text.replace("train:\n", "train_:\n") if where == "estimator" else bomb + text
        text = text.replace("drop:\n- loan_id", "drop: *a8") if where == "drop" else text
    elif form == "deep":
        depth = draw(st.integers(100, 20_000))
        text += "extra: " + "[" * depth + "]" * depth + "\n"
    elif form == "cycle":
        text = text.replace("drop:\n- loan_id", "drop: &loop [*loop]")
    elif form == "raw":
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from(["\t", "\x00", "\ufeff", ": :", "{", "&", "*nothing", "!!python/object:os.system"]))
        text = text[:at] + junk + text[at:]
    elif form == "scalar":
        text = draw(st.sampled_from(["", "42", "- a\n- b\n", "null", "'text'"]))
    return text


@settings(max_examples=CLI_EXAMPLES)
@given(data=st.data())
def test_damaged_params_into_every_command(project: Project, data: st.DataObject):
    text = data.draw(damaged_params(project.params()))
    out, params = fresh(project, text)
    shutil.rmtree(project.work / "out" / "prepared", ignore_errors=True)
    command = [arg.format(out=out, work=project.work) for arg in data.draw(st.sampled_from(COMMANDS))]
    # 0: still a valid file (e.g. bundle-check, sample); 1: a gate or drift verdict; 2: one error line (the file, or
    # whatever file the damaged params now point at)
    run(["--params", str(params), *command], [], out, {0, 1, 2})
