"""ct.yml run for real with act (tests/act_support.py) on a throwaway repository: a scheduled retrain on new
data that passes the gate, a `retrain` repository_dispatch whose pull request cannot be opened, and a
workflow_dispatch whose new data gives a worse model.

New data: main's params.yaml names a CSV on an HTTP server on loopback as data.source; each scenario serves new
rows there (other seed and rows: a new, similar dataset; a small batch: a worse model); the CT run fetches them, records
a new data.dvc, retrains and gates. No DVC remote: the first run finds no production bundle and gates against
main's committed metrics; the test then merges its pull request (as a person would), so the next runs find main's
bundle in the DVC cache CT saved and score it and the new model on the same holdout.
The actions that only talk to github.com (create-pull-request, create-github-app-token) are local stand-ins
(act --local-repository) that record their inputs and the files they would commit; the issue and the
pull-request closing go to a fake GitHub API on loopback.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from mlops_template.ci.report import MARKER
from mlops_template.pipeline.sample import write_sample
from tests.act_support import (
    REPOSITORY,
    ActRun,
    artifact_files,
    commit,
    fake_github,
    pinned_ref,
    recorded,
    run_act,
    standin_action,
    throwaway_repo,
)
from tests.conftest import loopback_server

PR_STEP = "Open or update the retraining pull request"
ISSUE_STEP = "Open or update the retraining issue"
CLOSE_STEP = "Close the older retraining pull request (the new model was rejected)"
TOKEN = "test-token"
APP_TOKEN = "ghs_app_token_from_the_stand_in"
PR_INPUTS = ["token", "branch", "delete-branch", "commit-message", "title", "body-path", "labels", "add-paths", "base"]

pytestmark = pytest.mark.workflows


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("ct-workflow")
    repo = throwaway_repo(base / "repo")
    actions = {
        pinned_ref("ct.yml", "peter-evans/create-pull-request"): standin_action(
            base / "create-pull-request",
            "create-pull-request",
            PR_INPUTS,
            {"pull-request-number": "12", "pull-request-operation": "created"},
        ),
        pinned_ref("ct.yml", "actions/create-github-app-token"): standin_action(
            base / "create-github-app-token",
            "create-github-app-token",
            ["client-id", "private-key", "permission-contents", "permission-pull-requests"],
            {"token": APP_TOKEN},
        ),
    }
    served = base / "served"
    served.mkdir()
    handler = functools.partial(QuietFiles, directory=str(served))
    with fake_github() as (api, url), loopback_server(handler) as source:
        params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
        params["data"]["source"] = {"url": f"{source}/loans.csv"}
        commit(repo, "data.source", {"params.yaml": yaml.safe_dump(params, sort_keys=False)}, branch="main")
        api.pulls.append({"number": 12, "state": "open", "head": {"ref": "ct/retrain"}})
        yield {"repo": repo, "base": base, "state": base / "act", "api": api, "url": url, "actions": actions,
               "served": served, "served_url": source}  # fmt: skip


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def ct_run(ct: dict, name: str, event: str, payload: dict, sample: dict, **act: dict) -> tuple[ActRun, Path]:
    """New rows at data.source (sample settings), then CT for `event`; returns the run and its records folder."""
    write_sample(ct["served"] / "loans.csv", sample["rows"], sample["seed"], sample.get("drift", 0.0))
    records = ct["base"] / f"records-{name}"
    records.mkdir()
    env = {"GITHUB_API_URL": ct["url"], "STANDIN_RECORDS": str(records), **act.pop("env", {})}
    secrets = {"GITHUB_TOKEN": TOKEN, **act.pop("secrets", {})}
    run = run_act(ct["repo"], event, "ct.yml", ct["state"], payload=payload, env=env, secrets=secrets,
                  local_actions=ct["actions"], **act)  # fmt: skip
    return run, records


@pytest.fixture(scope="module")
def scheduled(ct: dict) -> tuple[ActRun, Path]:
    return ct_run(ct, "schedule", "schedule", {"schedule": "0 22 * * 1"}, {"rows": 12000, "seed": 7})


@pytest.fixture(scope="module")
def dispatched(ct: dict, scheduled: tuple) -> tuple[ActRun, Path]:
    """The scheduled run's pull request merged; then repository_dispatch `retrain` with a GitHub App configured;
    GitHub refuses to open the pull request."""
    merged = recorded(scheduled[1], "create-pull-request")
    assert merged is not None, scheduled[0].tail()
    commit(ct["repo"], "CT: retrain on the newest data", merged["files"], branch="main")
    return ct_run(
        ct,
        "dispatch",
        "repository_dispatch",
        {"action": "retrain", "client_payload": {"alert": "ModelLiveAccuracyLow"}},
        {"rows": 11000, "seed": 8},
        variables={"CT_APP_ID": "123456"},
        secrets={"CT_APP_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----test"},
        env={"STANDIN_FAIL": "create-pull-request"},
    )


@pytest.fixture(scope="module")
def rejected(ct: dict, dispatched: tuple) -> tuple[ActRun, Path]:
    """workflow_dispatch on a small new batch: the retrained model passes the thresholds but is worse than main's
    on the same holdout. (Shifted data would not do: main's model does as badly on the shifted holdout.)"""
    return ct_run(ct, "rejected", "workflow_dispatch", {}, {"rows": 1500, "seed": 42})


def test_scheduled_retrain_on_new_data_proposes_a_pull_request(ct: dict, scheduled: tuple) -> None:
    run, records = scheduled
    assert run.returncode == 0, run.tail()
    assert run.step("Gate against the production model") == "success"
    assert run.step(PR_STEP) == "success"
    assert run.step(ISSUE_STEP) is None
    pr = recorded(records, "create-pull-request")
    assert pr is not None, run.tail()
    inputs = pr["inputs"]
    assert inputs["branch"] == "ct/retrain"
    assert inputs["title"] == "CT: retrained model passed the gate"
    assert inputs["labels"] == "retrain"
    assert inputs["delete-branch"] == "true"
    assert inputs["token"] == TOKEN  # no App, no CT_TOKEN: the job's token
    assert inputs["commit-message"].startswith("CT: retrain on the newest data (run ")
    paths = ["dvc.lock", "data.dvc", "reports/metrics.json", "reports/gate.md", "reports/plots"]
    assert inputs["add-paths"].split() == paths
    # the body is this run's report; the commit would carry the new data's record and the new metrics
    assert pr["body"].startswith(MARKER)
    assert "Metric gate: **VALIDATED**" in pr["body"]
    # no production bundle yet (no DVC remote, nothing cached): against main's committed metrics, and says why
    assert "Baseline: origin/main's committed metrics: stored metrics" in pr["body"]
    assert "`dvc get . artifacts/model --rev origin/main` failed" in pr["body"]
    # the report counts the rows before (the sample main's data.dvc records) and after (what data.source served)
    refreshed = f"Data refreshed from `{ct['served_url']}/loans.csv`: **12000 rows** in `data/loans.csv`"
    assert f"{refreshed} (before: 10000)" in pr["body"]
    assert "plots-html" in pr["body"]
    changed = {line[3:] for line in pr["status"]}
    assert {"data.dvc", "dvc.lock", "reports/metrics.json"} <= changed
    template_data = (ct["repo"] / "data.dvc").read_text(encoding="utf-8")
    assert pr["files"]["data.dvc"] != template_data
    assert "Metric gate: **VALIDATED**" in run.summary
    # the report links the plots-html artifact: CT uploads it
    assert any("plots-html" in str(p) for p in artifact_files(ct["state"]))
    assert not ct["api"].sent("POST") and not ct["api"].sent("PATCH")


def test_refused_pull_request_opens_the_issue_and_fails(ct: dict, dispatched: tuple) -> None:
    run, records = dispatched
    assert run.returncode != 0
    app = recorded(records, "create-github-app-token")
    assert app is not None, run.tail()
    assert app["inputs"]["client-id"] == "123456"
    assert app["inputs"]["private-key"] == "-----BEGIN PRIVATE KEY-----test"
    assert recorded(records, "create-pull-request")["inputs"]["token"] == APP_TOKEN
    assert run.step(PR_STEP) == "failure"
    assert run.step(CLOSE_STEP) is None  # the model passed: its pull request is not closed
    assert run.step(ISSUE_STEP) == "success"
    issues = ct["api"].sent("POST", "/issues")
    assert len(issues) == 1
    issue = issues[0]
    assert issue["labels"] == ["retrain-rejected"]
    assert "opening the pull request failed" in issue["body"]
    assert "Allow GitHub Actions to create and approve pull requests" in issue["body"]
    assert "Metric gate: **VALIDATED**" in issue["body"]
    # main holds the scheduled run's model now (its pull request merged): found in the DVC cache CT restored,
    # scored with the new model on the same holdout (20% of the 11000 new rows)
    assert re.search(
        r"Baseline: the production model [0-9a-f]{12} \(gated bundle at origin/main\) scored on the same 2200 "
        "holdout rows as the new model",
        issue["body"],
    ), issue["body"][:3000]
    assert "**11000 rows** in `data/loans.csv` (before: 12000)" in issue["body"]
    assert f"/{REPOSITORY}/actions/runs/" in issue["body"]


def test_rejected_model_updates_the_issue_and_closes_the_old_pull_request(ct: dict, rejected: tuple) -> None:
    run, records = rejected
    assert run.returncode != 0
    assert run.step("Gate against the production model") == "failure"
    assert run.step(PR_STEP) is None
    assert recorded(records, "create-pull-request") is None
    assert run.step(CLOSE_STEP) == "success"
    api = ct["api"]
    assert api.sent("PATCH", "/pulls/12") == [{"state": "closed"}]
    assert "newer retraining was rejected" in api.sent("POST", "/issues/12/comments")[0]["body"]
    # the issue opened by the previous run is updated, not duplicated
    assert len(api.sent("POST", "/issues")) == 1
    updated = api.sent("PATCH", "/issues/50")
    assert updated and "rejected by the gate" in updated[-1]["body"]
    assert "Metric gate: **REJECTED**" in updated[-1]["body"]
    body = updated[-1]["body"]
    assert "scored on the same 300 holdout rows as the new model" in body
    # rejected by the comparison, not by a threshold: the failed rows are metrics worse than production's
    failed = [[cell.strip() for cell in line.split("|")[1:6]] for line in body.splitlines() if "| ❌ fail |" in line]
    assert failed, body[:3000]
    for metric, value, bound, baseline, delta in failed:
        limit = float(bound[2:])
        assert (float(value) >= limit) if bound.startswith("≥") else (float(value) <= limit), metric
        assert baseline and delta, metric  # behind the production model's score on the same rows
