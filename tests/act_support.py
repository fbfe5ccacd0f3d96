"""Run the GitHub Actions workflows for real with nektos/act (host mode), for the workflow tests.

The act wrapper comes from the environment variable ACT (`.ci/run` sets it; the project never names where
it lives): it runs a job's steps on this machine with the pinned actions from a local copy, and act's own
cache and artifact servers on 127.0.0.1. Missing: a skip locally, a failure in CI (tests.conftest.missing).

    repo = throwaway_repo(tmp / "repo")               # the working tree as the `main` branch of a new repository
    sha = commit(repo, "tune", {"params.yaml": text}, branch="feature")
    run = run_act(repo, "pull_request", "ci.yml", job="pipeline", payload=pull_request_event(...), state=state)
    run.step("Gate against the baseline's metrics")  # 'success' | 'failure' | 'skipped' | None (not reached)
    run.summary                                       # the job summary (what $GITHUB_STEP_SUMMARY received)

Each run gets its own HOME, artifact server port and workspace (removed after the run: a workspace with
its .venv is over 1 GB); act's cache server (uv and DVC caches of the workflows) lives in ACT_CACHE_DIR
(default .cache/act in the project, git-ignored) so that the second run of a session is a warm-cache run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT, FakeHandler, free_port, loopback_server, missing, require_tool

GIT_IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
REPOSITORY = "example/loans"  # github.repository of every run (ACT_REPOSITORY)


def act_tool() -> str:
    """The act wrapper named by $ACT: skip locally when unset, a failure in CI (.ci/run sets it)."""
    require_tool("git")
    require_tool("node", "act's setup-node and JavaScript actions run on this machine's node")
    path = os.environ.get("ACT", "")
    if not path:
        missing("ACT is not set: point it at an act host-mode wrapper (.ci/run exports it)")
    if not os.access(path, os.X_OK):
        missing(f"ACT={path} is not an executable file")
    return path


def nested_ci_env(**extra: str) -> dict[str, str]:
    """This process's environment for a CI runner started by a test, minus what belongs to this test run.

    The jobs must not think they run inside this suite's CI, nor inherit its coverage set-up: coverage's
    subprocess patch (COVERAGE_PROCESS_CONFIG) would make a job's own venv record the copied repository's
    source into this run's data, and `make test` would then fail its coverage threshold on files it never ran.
    """
    drop = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "VIRTUAL_ENV")
    kept = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("COVERAGE_", "COV_CORE_"))}
    return {**kept, **extra}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def throwaway_repo(path: Path, source: Path = ROOT) -> Path:
    """A new git repository at `path` whose `main` holds the working tree of `source` (tracked + new files,
    nothing git-ignored) as one commit: what a fork starts from, including uncommitted edits under test."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    path.mkdir(parents=True)
    for name in filter(None, listed.split("\0")):
        origin = source / name
        if origin.is_file():  # deleted-but-tracked files are listed too
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "template")
    return path


def commit(repo: Path, message: str, files: dict[str, str], branch: str, start: str = "main") -> str:
    """Write `files` (path -> text), commit them on `branch` (created from `start` when new); returns the sha."""
    exists = subprocess.run(["git", "rev-parse", "--verify", "-q", branch], cwd=repo, capture_output=True)
    git(repo, "checkout", "-q", *([branch] if exists.returncode == 0 else ["-b", branch, start]))
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def pull_request_event(repo: Path, number: int, head: str, base: str = "main", head_repo: str = REPOSITORY) -> dict:
    """A pull_request `opened` payload; `head_repo` other than the repository itself = a pull request from a fork."""
    return {
        "action": "opened",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": head, "sha": git(repo, "rev-parse", head), "repo": {"full_name": head_repo}},
            "base": {"ref": base, "sha": git(repo, "rev-parse", base), "repo": {"full_name": REPOSITORY}},
        },
        "repository": {"full_name": REPOSITORY, "name": REPOSITORY.split("/")[1], "default_branch": "main"},
    }


def push_event(repo: Path, branch: str = "main") -> dict:
    return {
        "ref": f"refs/heads/{branch}",
        "before": git(repo, "rev-parse", f"{branch}~1"),
        "after": git(repo, "rev-parse", branch),
        "repository": {"full_name": REPOSITORY, "name": REPOSITORY.split("/")[1], "default_branch": "main"},
    }


@dataclass
class ActRun:
    """One act invocation: exit code, wall time and act's JSON log records."""

    returncode: int
    seconds: float
    records: list[dict] = field(repr=False)
    workspace_files: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def log(self) -> str:
        return "\n".join(str(r.get("msg", "")) for r in self.records)

    def step(self, name: str) -> str | None:
        """The result of the main part of the step named `name` ('success', 'failure'), None when it did not run
        (act logs nothing for a step whose `if` is false; an action's pre/post parts are left out)."""
        results = [
            r["stepResult"]
            for r in self.records
            if r.get("step") == name and r.get("stage") == "Main" and r.get("stepResult")
        ]
        return results[-1] if results else None

    @property
    def summary(self) -> str:
        """The job summary: act echoes what a step appended to $GITHUB_STEP_SUMMARY."""
        return "\n".join(str(r["msg"]).removeprefix("  ⚙  Summary - ") for r in self.records if _is_summary(r))

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log.splitlines()[-lines:])


def _is_summary(record: dict) -> bool:
    return "Summary - " in str(record.get("msg", ""))[:20]


def act_state(base: Path) -> Path:
    """Per-session act state (workspaces, artifacts); the cache server lives in ACT_CACHE_DIR."""
    base.mkdir(parents=True, exist_ok=True)
    return base


def run_act(
    repo: Path,
    event: str,
    workflow: str,
    state: Path,
    *,
    job: str | None = None,
    payload: dict | None = None,
    variables: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    inputs: dict[str, str] | None = None,
    local_actions: dict[str, Path] | None = None,
    keep: tuple[str, ...] = (),
    path: Path | None = None,
    timeout: float = 1200,
) -> ActRun:
    """Run `.github/workflows/<workflow>` for `event` in `repo` with act; `keep`: workspace files to read back.

    local_actions maps `owner/repo@ref` to a folder holding a stand-in action (act --local-repository);
    `path`: a folder put first on the jobs' PATH (host mode: they inherit act's), e.g. a recorded stand-in CLI.
    """
    act = act_tool()
    run_dir = state / f"run-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    cache_dir = Path(os.environ.get("ACT_CACHE_DIR", ROOT / ".cache" / "act")).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    argv = [act, event, "-W", f".github/workflows/{workflow}", "--json"]
    argv += ["--artifact-server-port", str(free_port()), "--artifact-server-path", str(run_dir / "artifacts")]
    argv += ["--cache-server-path", str(cache_dir / "cache-server")]
    if job:
        argv += ["-j", job]
    if payload is not None:
        event_file = run_dir / "event.json"
        event_file.write_text(json.dumps(payload), encoding="utf-8")
        argv += ["-e", str(event_file)]
    for flag, values in (("--var", variables), ("-s", secrets), ("--env", env), ("--input", inputs)):
        for key, value in (values or {}).items():
            argv += [flag, f"{key}={value}"]
    for ref, folder in (local_actions or {}).items():
        argv += ["--local-repository", f"{ref}={folder}"]
    home = run_dir / "home"
    home.mkdir()
    environment = nested_ci_env(ACT_REPOSITORY=REPOSITORY, ACT_STATE=str(state), ACT_HOME=str(home))
    if path is not None:
        environment["PATH"] = f"{path}{os.pathsep}{environment['PATH']}"
    before = _workspaces(state)
    started = time.monotonic()
    with open(run_dir / "act.log", "wb") as out:
        code = subprocess.run(argv, cwd=repo, env=environment, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    seconds = time.monotonic() - started
    print(
        f"act {event} {workflow}{' -j ' + job if job else ''}: {seconds:.0f} s, exit {code.returncode}"
    )  # -s shows it
    records = _records(run_dir / "act.log")
    kept: dict[str, str] = {}
    for workspace in _workspaces(state) - before:  # this run's workspaces: read what was asked, then drop them
        for name in keep:
            path = workspace / "hostexecutor" / name
            if path.is_file():
                kept[name] = path.read_text(encoding="utf-8", errors="replace")
        shutil.rmtree(workspace, ignore_errors=True)
    return ActRun(code.returncode, seconds, records, kept)


def _workspaces(state: Path) -> set[Path]:
    folder = state / "actcache"
    return {p for p in folder.iterdir() if p.is_dir() and p.name != "tool_cache"} if folder.is_dir() else set()


def _records(log: Path) -> list[dict]:
    records = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = {"msg": line}
        records.append(record if isinstance(record, dict) else {"msg": line})
    return records


def artifact_files(state: Path) -> list[Path]:
    """Every file act's artifact server stored during this session's runs."""
    return sorted(p for p in state.glob("run-*/artifacts/**/*") if p.is_file())


@dataclass
class FakeGitHubState:
    """What the loopback GitHub API received, and what it answers with."""

    requests: list[tuple[str, str, dict | None, dict[str, str]]] = field(default_factory=list)
    comments: list[dict] = field(default_factory=list)
    issues: list[dict] = field(default_factory=list)
    pulls: list[dict] = field(default_factory=list)

    def sent(self, method: str, path: str | None = None) -> list[dict | None]:
        """Bodies of the `method` requests to `path` (after /repos/owner/name, no query), or to any path."""
        prefix = f"/repos/{REPOSITORY}"
        return [b for m, p, b, _ in self.requests if m == method and path in (None, p.removeprefix(prefix))]


@contextmanager
def fake_github() -> Iterator[tuple[FakeGitHubState, str]]:
    """A GitHub REST API on loopback (the few endpoints ci/github.py uses); records every request."""
    state = FakeGitHubState()

    class Handler(FakeHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((self.command, self.path.split("?")[0], body, dict(self.headers)))
            path = self.path.split("?")[0].removeprefix(f"/repos/{REPOSITORY}")
            if self.command == "GET":
                listed = {"/issues": state.issues, "/pulls": state.pulls}.get(path)
                if path.endswith("/comments"):
                    listed = state.comments
                return self.reply(200 if listed is not None else 404, listed if listed is not None else {})
            if self.command == "POST" and path.endswith("/comments"):
                state.comments.append(
                    {"id": 900 + len(state.comments), "user": {"login": "github-actions[bot]"}, **body}
                )
                return self.reply(201, state.comments[-1])
            if self.command == "POST" and path == "/issues":
                state.issues.append({"number": 50 + len(state.issues), "state": "open", **body})
                return self.reply(201, state.issues[-1])
            return self.reply(200, {"id": 1, "number": 1})

        do_GET = do_POST = do_PATCH = _handle

    with loopback_server(Handler) as url:
        yield state, url


RECORDER = r"""
import json, os, subprocess, sys
from pathlib import Path

name, inputs = os.environ["STANDIN_NAME"], json.loads(os.environ["STANDIN_INPUTS"])
record = {"inputs": inputs, "files": {}, "status": subprocess.run(
    ["git", "status", "--porcelain", "--untracked-files=all"], capture_output=True, text=True).stdout.splitlines()}
for entry in (inputs.get("add-paths") or "").split():
    found = [p for p in Path(entry).rglob("*") if p.is_file()] if Path(entry).is_dir() else [Path(entry)]
    record["files"].update({str(p): p.read_text(errors="replace") for p in found if p.is_file()})
if inputs.get("body-path"):
    record["body"] = Path(inputs["body-path"]).read_text()
Path(os.environ["STANDIN_RECORDS"], name + ".json").write_text(json.dumps(record, indent=1))
with open(os.environ["GITHUB_OUTPUT"], "a") as out:
    out.writelines(f"{k}={v}\n" for k, v in json.loads(os.environ["STANDIN_OUTPUTS"]).items())
if name in os.environ.get("STANDIN_FAIL", "").split(","):
    sys.exit(f"{name} (stand-in): failing as asked, like GitHub refusing the request")
"""


def standin_action(folder: Path, name: str, inputs: list[str], outputs: dict[str, str]) -> Path:
    """A local composite action in `folder` that records its inputs (and the files it would send) to
    $STANDIN_RECORDS/<name>.json, sets `outputs`, and fails when `name` is in $STANDIN_FAIL (act --env)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.py").write_text(RECORDER, encoding="utf-8")
    action = {
        "name": f"{name} (recorded stand-in)",
        "description": "records its inputs for the workflow tests",
        "inputs": {key: {"description": key, "required": False} for key in inputs},
        "outputs": {k: {"description": k, "value": "${{ steps.record.outputs." + k + " }}"} for k in outputs},
        "runs": {
            "using": "composite",
            "steps": [
                {
                    "id": "record",
                    "shell": "bash",
                    "env": {
                        "STANDIN_NAME": name,
                        "STANDIN_INPUTS": "${{ toJSON(inputs) }}",
                        "STANDIN_OUTPUTS": json.dumps(outputs),
                    },
                    "run": 'python3 "$GITHUB_ACTION_PATH/record.py"',
                }
            ],
        },
    }
    (folder / "action.yml").write_text(json.dumps(action, indent=1), encoding="utf-8")
    return folder


def pinned_ref(workflow: str, action: str) -> str:
    """`owner/repo@sha` of `action` as pinned in .github/workflows/<workflow> (what --local-repository maps)."""
    text = (ROOT / ".github" / "workflows" / workflow).read_text(encoding="utf-8")
    match = re.search(rf"uses:\s*({re.escape(action)})@([0-9a-f]{{40}})", text)
    if not match:
        raise AssertionError(f"{workflow} does not pin {action}")
    return f"{match.group(1)}@{match.group(2)}"


def recorded(records: Path, name: str) -> dict | None:
    path = records / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@contextmanager
def fake_handler_server(answer: Callable[[str, str, dict | None, dict], tuple[int, object]]) -> Iterator[str]:
    """A JSON API on loopback: `answer(method, path, body, headers)` returns (status, payload) for each request."""

    class Handler(FakeHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            self.reply(*answer(self.command, self.path, body, dict(self.headers)))

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    with loopback_server(Handler) as url:
        yield url
