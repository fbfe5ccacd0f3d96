"""The GitHub REST calls against a loopback fake that records and checks what is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mlops_template.ci import github
from mlops_template.ci.report import MARKER
from mlops_template.core.errors import UserError
from tests.conftest import FakeHandler, loopback_server

BOT = "github-actions[bot]"


class FakeGitHub:
    def __init__(self) -> None:
        self.comments: list[dict] = [{"id": 1, "body": "someone else's comment", "user": {"login": "alice"}}]
        self.issues: list[dict] = []
        self.requests: list[tuple[str, str, dict | None]] = []
        self.deny = False


@pytest.fixture
def fake() -> Iterator[tuple[FakeGitHub, str]]:
    state = FakeGitHub()

    class Handler(FakeHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            assert self.headers["Authorization"] == "Bearer t0ken"
            assert self.headers["Accept"] == "application/vnd.github+json"
            state.requests.append((self.command, self.path, body))
            if state.deny and self.command != "GET":
                return self.reply(403, {"message": "Resource not accessible by integration"})
            path = self.path.split("?")[0].removeprefix("/repos/o/r")
            if self.command == "GET" and path == "/issues/7/comments":
                return self.reply(200, state.comments)
            if self.command == "POST" and path == "/issues/7/comments":
                state.comments.append({"id": len(state.comments) + 1, "body": body["body"], "user": {"login": BOT}})
                return self.reply(201, state.comments[-1])
            if self.command == "PATCH" and path.startswith("/issues/comments/"):
                comment = next(c for c in state.comments if c["id"] == int(path.rsplit("/", 1)[1]))
                if comment["user"]["login"] != BOT:  # what GitHub answers for someone else's comment
                    return self.reply(403, {"message": "Resource not accessible by integration"})
                comment["body"] = body["body"]
                return self.reply(200, comment)
            if self.command == "GET" and path == "/issues":
                return self.reply(200, [i for i in state.issues if i["state"] == "open"])
            if self.command == "POST" and path == "/issues":
                assert set(body) == {"title", "body", "labels"}
                state.issues.append({"number": 40 + len(state.issues), "state": "open", **body})
                return self.reply(201, state.issues[-1])
            if path.startswith("/issues/4"):
                return self.reply(200, {})
            return self.reply(404, {"message": "Not Found"})

        do_GET = do_POST = do_PATCH = _handle

    with loopback_server(Handler) as url:
        yield state, url


def test_the_report_comment_is_created_once_then_updated_in_place(fake: tuple[FakeGitHub, str]) -> None:
    state, api = fake
    gh = github.GitHub("t0ken", "o/r", api)
    assert github.upsert_comment(gh, 7, f"{MARKER}\nfirst", MARKER) == "created"
    assert github.upsert_comment(gh, 7, f"{MARKER}\nsecond", MARKER) == "updated"
    mine = [c for c in state.comments if MARKER in c["body"]]
    assert len(mine) == 1
    assert mine[0]["body"].endswith("second")
    assert state.comments[0]["body"] == "someone else's comment"


def test_a_comment_of_someone_else_quoting_the_marker_is_left_alone(fake: tuple[FakeGitHub, str]) -> None:
    state, api = fake
    state.comments.append({"id": 2, "body": f"> {MARKER}\n> quoted report, and my reply", "user": {"login": "bob"}})
    gh = github.GitHub("t0ken", "o/r", api)
    assert github.upsert_comment(gh, 7, f"{MARKER}\nfirst", MARKER) == "created"
    assert github.upsert_comment(gh, 7, f"{MARKER}\nsecond", MARKER) == "updated"
    assert state.comments[1]["body"].endswith("and my reply")
    assert [c["body"] for c in state.comments if c["user"]["login"] == BOT] == [f"{MARKER}\nsecond"]


def test_long_bodies_are_truncated_under_githubs_limit(fake: tuple[FakeGitHub, str]) -> None:
    state, api = fake
    github.upsert_comment(github.GitHub("t0ken", "o/r", api), 7, "x" * 100_000, MARKER)
    body = state.comments[-1]["body"]
    assert len(body) <= github.MAX_BODY
    assert body.startswith(MARKER)
    assert "truncated" in body


def test_the_failure_issue_is_opened_once_then_updated(fake: tuple[FakeGitHub, str]) -> None:
    state, api = fake
    gh = github.GitHub("t0ken", "o/r", api)
    assert github.upsert_issue(gh, "Retraining rejected", "report 1", "retrain-rejected") == "created"
    assert github.upsert_issue(gh, "Retraining rejected", "report 2", "retrain-rejected") == "updated"
    assert len(state.issues) == 1
    assert state.issues[0]["labels"] == ["retrain-rejected"]
    patched = [body for method, path, body in state.requests if method == "PATCH"]
    assert patched
    assert patched[-1]["body"].endswith("report 2")


def test_a_read_only_token_gives_a_clear_error(fake: tuple[FakeGitHub, str]) -> None:
    state, api = fake
    state.deny = True
    with pytest.raises(UserError, match=r"HTTP 403.*fork"):
        github.upsert_comment(github.GitHub("t0ken", "o/r", api), 7, "body", MARKER)


def test_missing_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="GITHUB_TOKEN"):
        github.GitHub("", "o/r")
    with pytest.raises(UserError, match="owner/name"):
        github.GitHub("t", "just-a-name")


def test_a_run_without_a_verdict_replaces_the_older_report_on_the_pull_request(
    fake: tuple[FakeGitHub, str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ci.yml's step after a run that failed before the gate: `make pr-comment NOTE=...` (the CLI, no report file)
    must overwrite the comment that still shows an earlier push's VALIDATED."""
    from mlops_template.cli import main

    state, api = fake
    github.upsert_comment(github.GitHub("t0ken", "o/r", api), 7, f"{MARKER}\nMetric gate: **VALIDATED**", MARKER)
    monkeypatch.chdir(tmp_path)  # no reports/report.md here, as on the runner after a failed `dvc repro`
    env = {"GITHUB_TOKEN": "t0ken", "GITHUB_REPOSITORY": "o/r", "GITHUB_API_URL": api, "REPORT_RUN_URL": "https://r/1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["github-comment", "--pr", "7", "--note", "**No verdict for abc123**: the run failed"]) == 0
    mine = [c["body"] for c in state.comments if c["user"]["login"] == BOT]
    assert mine == [f"{MARKER}\n**No verdict for abc123**: the run failed\n\nRun: https://r/1"]
