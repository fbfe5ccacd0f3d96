"""The few GitHub REST calls CI needs: one PR comment updated in place, one issue reopened/updated in place.

Reads GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL (all set by Actions); GITHUB_COMMENT_AUTHOR when the
token is not the job's own (default github-actions[bot]). Standard library only.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from mlops_template.core.errors import UserError

log = logging.getLogger(__name__)
MAX_BODY = 65_000  # GitHub rejects comment/issue bodies over 65,536 characters
PAGE = 100
ACTIONS_BOT = "github-actions[bot]"  # the author of what `github.token` writes (GITHUB_COMMENT_AUTHOR for another)


class GitHub:
    """The REST client: every failure (HTTP status, network, timeout, a non-JSON answer) is one UserError."""

    def __init__(self, token: str, repository: str, api: str = "https://api.github.com", timeout: float = 30):
        if not token:
            raise UserError("GITHUB_TOKEN is empty; in Actions pass `env: GITHUB_TOKEN: ${{ github.token }}`")
        if repository.count("/") != 1:
            raise UserError(f"GITHUB_REPOSITORY must be owner/name, got {repository!r}")
        self.token, self.repository, self.api, self.timeout = token, repository, api.rstrip("/"), timeout

    @classmethod
    def from_env(cls) -> GitHub:
        return cls(
            os.environ.get("GITHUB_TOKEN", ""),
            os.environ.get("GITHUB_REPOSITORY", ""),
            os.environ.get("GITHUB_API_URL", "https://api.github.com"),
        )

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.api}/repos/{self.repository}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
                "User-Agent": "mlops-template-ci",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            hint = " (a pull request from a fork gets a read-only token)" if exc.code in (401, 403) else ""
            raise UserError(f"GitHub API {method} {path}: HTTP {exc.code}{hint}: {detail}") from None
        except urllib.error.URLError as exc:
            raise UserError(f"GitHub API {method} {path}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # a timeout or a dropped connection while answering
            raise UserError(f"GitHub API {method} {path}: {exc or type(exc).__name__}") from None
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise UserError(f"GitHub API {method} {path}: the answer is not JSON: {payload[:100]!r}") from None

    def paged(self, path: str) -> list[dict]:
        items: list[dict] = []
        page = 1
        while True:
            sep = "&" if "?" in path else "?"
            batch = self.call("GET", f"{path}{sep}per_page={PAGE}&page={page}")
            items += batch
            if len(batch) < PAGE:
                return items
            page += 1


def _body(text: str, marker: str) -> str:
    body = text if marker in text else f"{marker}\n{text}"
    return body if len(body) <= MAX_BODY else body[: MAX_BODY - 40] + "\n\n… (truncated; see the job summary)"


def upsert_comment(gh: GitHub, number: int, text: str, marker: str) -> str:
    """Update the PR's comment carrying `marker` written by this token's bot, or create it; returns 'created' or
    'updated'. Someone else's comment that quotes the marker is left alone (editing it would be a 403)."""
    body = _body(text, marker)
    author = os.environ.get("GITHUB_COMMENT_AUTHOR") or ACTIONS_BOT
    mine = [
        c
        for c in gh.paged(f"/issues/{number}/comments")
        if marker in (c.get("body") or "") and (c.get("user") or {}).get("login") == author
    ]
    if mine:
        gh.call("PATCH", f"/issues/comments/{mine[0]['id']}", {"body": body})
        log.info("github: updated comment %s on #%d", mine[0]["id"], number)
        return "updated"
    gh.call("POST", f"/issues/{number}/comments", {"body": body})
    log.info("github: commented on #%d", number)
    return "created"


def upsert_issue(gh: GitHub, title: str, text: str, label: str) -> str:
    """Comment on the open issue labelled `label` (and refresh its body), or open one; returns the action."""
    body = _body(text, f"<!-- {label} -->")
    open_issues = [i for i in gh.paged(f"/issues?state=open&labels={label}") if "pull_request" not in i]
    if open_issues:
        number = open_issues[0]["number"]
        gh.call("PATCH", f"/issues/{number}", {"body": body})
        gh.call(
            "POST",
            f"/issues/{number}/comments",
            {"body": "The check failed again; the description now has the latest report."},
        )
        log.info("github: updated issue #%d", number)
        return "updated"
    created = gh.call("POST", "/issues", {"title": title, "body": body, "labels": [label]})
    log.info("github: opened issue #%s", created.get("number"))
    return "created"


def close_pull_requests(gh: GitHub, branch: str, text: str) -> list[int]:
    """Comment on and close the open pull requests from `branch` of this repository; returns their numbers."""
    owner = gh.repository.split("/")[0]
    numbers = [p["number"] for p in gh.paged(f"/pulls?state=open&head={owner}:{branch}")]
    for number in numbers:
        gh.call("POST", f"/issues/{number}/comments", {"body": text[:MAX_BODY]})
        gh.call("PATCH", f"/pulls/{number}", {"state": "closed"})
        log.info("github: closed pull request #%d", number)
    return numbers
