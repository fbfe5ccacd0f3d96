"""`python -m mlops_template <command>`: the single entry point for make, DVC, CI and Docker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlops_template.core.config import DEFAULT_PARAMS, load_params
from mlops_template.core.errors import Reported, UserError

log = logging.getLogger("mlops_template")
COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], object], Callable[[argparse.ArgumentParser], None]]] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    """Register a sub-command; its function receives the parsed arguments."""

    def register(function: Callable[[argparse.Namespace], object]):
        COMMANDS[name] = (help, function, arguments)
        return function

    return register


def _sample_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, help="CSV to write (default: data.path)")
    parser.add_argument("--rows", type=int, help="row count (default: data.sample.rows)")
    parser.add_argument("--seed", type=int, help="seed (default: data.sample.seed)")
    parser.add_argument("--drift", type=float, help="0..1, shift the distributions (default: data.sample.drift)")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the output file exists")


@command("sample", "write the deterministic sample dataset (the embedded default data)", _sample_args)
def _sample(args: argparse.Namespace) -> None:
    from mlops_template.pipeline.sample import write_sample

    config = load_params(args.params).data
    output = args.output or config.path
    if args.if_missing and output.exists():
        log.info("sample: %s exists, keeping it", output)
        return
    drift = config.sample.drift if args.drift is None else args.drift
    rows = config.sample.rows if args.rows is None else args.rows
    if not 0.0 <= drift <= 1.0 or rows <= 0:
        raise UserError("--drift must be within 0..1 and --rows positive")
    path = write_sample(output, rows, config.sample.seed if args.seed is None else args.seed, drift)
    log.info("sample: %d rows (drift %.2f) -> %s", rows, drift, path)


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sample", action="store_true", help="write the embedded loan sample at data.path even if it is not its own"
    )
    parser.add_argument(
        "--outputs",
        action="store_true",
        help="with a remote, also fetch the pipeline outputs dvc.lock names and the run-cache (as far as the remote "
        "has them): `dvc repro` then checks them out instead of training",
    )


@command("data", "get data.path: `dvc pull` with a remote, else keep it, else the sample where it belongs", _data_args)
def _data(args: argparse.Namespace) -> None:
    from mlops_template.pipeline.rawdata import ensure

    ensure(load_params(args.params), sample=args.sample, outputs=args.outputs)


def _data_refresh_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record", type=Path, default=Path("reports/data-refresh.json"), help="rows and data.dvc hash before/after"
    )


@command("data-refresh", "CT: newest data from data.source (validated), `dvc add`, `dvc push`", _data_refresh_args)
def _data_refresh(args: argparse.Namespace) -> None:
    from mlops_template.pipeline.refresh import refresh

    done = refresh(load_params(args.params), args.record)
    log.info("data-refresh: %s rows %s -> %s, %s", done.path, done.rows_before, done.rows_after, done.md5_after)


@command("push", "`dvc push` data and pipeline outputs, with the run-cache, to the DVC remote (one line on failure)")
def _push(args: argparse.Namespace) -> None:
    from mlops_template.pipeline.remote import transfer

    transfer("push", run_cache=True)


@command("bundle-pull", "CD: `dvc pull` the gated bundle dvc.lock records (what CI judged and pushed); never trains")
def _bundle_pull(args: argparse.Namespace) -> None:
    from mlops_template.pipeline.remote import transfer

    transfer("pull", str(load_params(args.params).gate.bundle_dir))


def _data_access_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secrets",
        choices=["present", "absent"],
        default="present",
        help="absent: a fork or Dependabot pull request (no credentials for a DVC remote)",
    )


@command("data-access", "CI: can this run get the data? available=true|false to $GITHUB_OUTPUT", _data_access_args)
def _data_access(args: argparse.Namespace) -> None:
    from mlops_template.ci.data_access import report
    from mlops_template.pipeline.rawdata import access

    print(report(access(load_params(args.params), secrets=args.secrets == "present")))


@command("lock-check", "CI after `dvc repro`: dvc.lock and the tracked outputs are the committed ones; else exit 2")
def _lock_check(args: argparse.Namespace) -> None:
    from mlops_template.ci.lock_check import check

    print(check())


@command("prep", "stage prep: validate, clean and split the raw CSV")
def _prep(args: argparse.Namespace) -> None:
    from mlops_template.pipeline import prep
    from mlops_template.pipeline.models import load_training_params

    prep.run(load_training_params(args.params))


@command("train", "stage train: fit the model and write the candidate bundle")
def _train(args: argparse.Namespace) -> None:
    from mlops_template.pipeline import train
    from mlops_template.pipeline.models import load_training_params

    train.run(load_training_params(args.params))


@command("evaluate", "stage evaluate: metrics and plots on the test split")
def _evaluate(args: argparse.Namespace) -> None:
    from mlops_template.pipeline import evaluate
    from mlops_template.pipeline.models import load_training_params

    evaluate.run(load_training_params(args.params))


def _gate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        help="a metrics JSON file or a git ref (e.g. main) to compare against: the verdict then goes to "
        "reports (<gate report>-baseline.md/.json), never into the DVC-tracked bundle",
    )


@command("gate", "judge the metrics (thresholds; --baseline: also a baseline); exit 1 if REJECTED", _gate_args)
def _gate(args: argparse.Namespace) -> None:
    from mlops_template.pipeline import gate
    from mlops_template.pipeline.models import load_training_params

    # no environment fallback: the DVC stage must judge by thresholds alone, whatever the shell exports
    gate.run(load_training_params(args.params), baseline=args.baseline or None)


def _gate_production_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", default="main", help="git ref whose dvc.lock records the production bundle")
    parser.add_argument("--url", help="the production service (PRODUCTION_URL): must serve that bundle's version")
    parser.add_argument("--output", type=Path, default=Path("reports/production-metrics.json"))


@command(
    "gate-production",
    "CT gate: the production bundle and the new model scored on the same holdout (else stored metrics)",
    _gate_production_args,
)
def _gate_production(args: argparse.Namespace) -> None:
    from mlops_template.ci.challenge import run
    from mlops_template.pipeline.models import load_training_params

    run(load_training_params(args.params), args.baseline, args.url, args.output)


@command("metrics", "print the latest metrics as a markdown table")
def _metrics(args: argparse.Namespace) -> None:
    from mlops_template.pipeline.evaluate import metrics_table, read_metrics

    print(metrics_table(read_metrics(load_params(args.params).evaluate.metrics_path)))


# --- CI/CD: reports, GitHub, post-deploy checks, template rename ---------------------------------------------


def _report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", help="git ref to compare params and plots with (e.g. origin/main)")
    parser.add_argument("--output", type=Path, default=Path("reports/report.md"), help="markdown file to write")
    parser.add_argument("--run-url", default=os.environ.get("REPORT_RUN_URL"), help="CI run holding the HTML plots")
    parser.add_argument("--title", default="Model report", help="heading of the report")


@command("report", "markdown report: gate table, changed params, plots (Mermaid); also the job summary", _report_args)
def _report(args: argparse.Namespace) -> None:
    from mlops_template.ci import report

    report.run(load_params(args.params), args.baseline or None, args.output, args.run_url, args.title)


def _ci_summary_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--junit", type=Path, default=Path("reports/junit.xml"))
    parser.add_argument("--coverage", type=Path, default=Path("reports/coverage.xml"))
    parser.add_argument("--output", type=Path, default=Path("reports/test-summary.md"))


@command("ci-summary", "test results and coverage as markdown (and into the GitHub job summary)", _ci_summary_args)
def _ci_summary(args: argparse.Namespace) -> None:
    from mlops_template.ci import ci_summary

    print(ci_summary.run(args.junit, args.coverage, args.output))


def _comment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pr", type=int, required=True, help="pull request number")
    parser.add_argument("--body-file", type=Path, default=Path("reports/report.md"))
    parser.add_argument("--note", help="replace the report with this line (and the run's link): a run without one")


@command("github-comment", "create or update this tool's one comment on a pull request", _comment_args)
def _github_comment(args: argparse.Namespace) -> None:
    from mlops_template.ci import github
    from mlops_template.ci.report import MARKER

    # a run that produced no report must not leave an older run's verdict on the pull request
    text = _with_run_link(args.note) if args.note else _read_body(args.body_file)
    print(github.upsert_comment(github.GitHub.from_env(), args.pr, text, MARKER))


def _with_run_link(note: str) -> str:
    run = os.environ.get("REPORT_RUN_URL")
    return f"{note}\n\nRun: {run}" if run else note


def _issue_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--title", required=True)
    parser.add_argument("--label", required=True, help="the label that identifies this kind of issue")
    parser.add_argument("--body-file", type=Path, default=Path("reports/report.md"))
    parser.add_argument("--note", help="the cause, put above the report (the report is optional then)")


@command("github-issue", "open an issue, or update the open one with the same label", _issue_args)
def _github_issue(args: argparse.Namespace) -> None:
    from mlops_template.ci import github

    if args.note:  # the cause comes first; the report may be missing when the run failed before it
        report = args.body_file.read_text(encoding="utf-8") if args.body_file.is_file() else ""
        text = "\n\n".join(p for p in (_with_run_link(args.note), report) if p)
    else:
        text = _read_body(args.body_file)
    print(github.upsert_issue(github.GitHub.from_env(), args.title, text, args.label))


def _close_pr_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--branch", required=True, help="head branch of the pull requests to close (this repository)")
    parser.add_argument("--comment", required=True, help="why: posted on each pull request before closing it")


@command("github-close-pr", "comment on and close the open pull requests from a branch", _close_pr_args)
def _github_close_pr(args: argparse.Namespace) -> None:
    from mlops_template.ci import github

    print(" ".join(f"#{n}" for n in github.close_pull_requests(github.GitHub.from_env(), args.branch, args.comment)))


def _read_body(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"{path}: not found; run `make report` first")
    return path.read_text(encoding="utf-8")


def _smoke_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="base URL of the deployed service")
    parser.add_argument("--metadata", type=Path, help="bundle metadata.json with the example (default: GET /model)")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for /ready (default 120)")
    expect = "fail unless /model reports this {} (waits for it: the release just deployed must be the one answering)"
    parser.add_argument("--expect-model-version", default=os.environ.get("EXPECT_MODEL_VERSION"),
                        help=expect.format("model_version"))  # fmt: skip
    parser.add_argument("--expect-git-commit", default=os.environ.get("EXPECT_GIT_COMMIT"),
                        help=expect.format("git_commit"))  # fmt: skip


@command("smoke-test", "check a deployed service: /ready, /health, /predict with the bundle's example", _smoke_args)
def _smoke(args: argparse.Namespace) -> None:
    from mlops_template.ci.smoke import smoke_test

    expected = {"model_version": args.expect_model_version, "git_commit": args.expect_git_commit}
    # the token (a private Cloud Run service) comes from the environment only: never on a command line
    smoke_test(args.url, args.metadata, args.wait, expected, os.environ.get("SMOKE_TOKEN") or None)


def _fetch_metrics_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="base URL of the service (e.g. production)")
    parser.add_argument("--output", type=Path, default=Path("reports/production-metrics.json"))


@command(
    "fetch-metrics", "write the metrics of the model a service runs (GET /model) for the gate", _fetch_metrics_args
)
def _fetch_metrics(args: argparse.Namespace) -> None:
    from mlops_template.ci.smoke import fetch_metrics

    fetch_metrics(args.url, args.output)


def _rename_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, help="new project name, e.g. the repository name loan-model")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    parser.add_argument("--dry-run", action="store_true", help="count the files that would change")


@command("rename", "rename package, imports and project references (template cleanup)", _rename_args)
def _rename(args: argparse.Namespace) -> None:
    from mlops_template.ci.rename import rename

    rename(args.root, args.to, args.dry_run)


def _drift_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--current", type=Path, required=True, help="CSV batch of recent inputs (feature columns)")
    parser.add_argument("--bundle", type=Path, help="VALIDATED model bundle (default: gate.bundle_dir)")
    parser.add_argument("--output-dir", type=Path, help="report folder (default: monitoring.drift.output_dir)")


@command("drift", "compare a batch with the bundle's reference profile; report; exit 1 on drift", _drift_args)
def _drift(args: argparse.Namespace) -> None:
    from mlops_template.monitoring import report

    report.run(load_params(args.params), args.current, args.bundle, args.output_dir)


def _relay_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"), help="bind address (env HOST)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9095")), help="port (env PORT)")


@command(
    "alert-relay",
    "Alertmanager webhook -> GitHub repository_dispatch (env GITHUB_REPOSITORY, GITHUB_TOKEN, RELAY_TOKEN)",
    _relay_args,
)
def _alert_relay(args: argparse.Namespace) -> None:
    from mlops_template.ci.relay import Relay, RelaySettings, make_server

    settings = RelaySettings.from_env()
    server = make_server(Relay(settings), args.host, args.port)
    log.info("alert-relay: listening on %s:%d for %s", args.host, args.port, settings.repository)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _bundle_check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="bundle directory (default: gate.bundle_dir)")


@command(
    "bundle-check",
    "verify a bundle (checksums, library versions, gate verdict VALIDATED) and print its path; exit 2 if unusable",
    _bundle_check_args,
)
def _bundle_check(args: argparse.Namespace) -> None:
    from mlops_template.core.bundle import git_commit, load_bundle
    from mlops_template.core.provenance import LOCK, committed_at

    bundle = load_bundle(args.dir or load_params(args.params).gate.bundle_dir)
    log.info("bundle-check: %s model %s is %s", bundle.path, bundle.version, bundle.verdict)
    output = os.environ.get("GITHUB_OUTPUT")
    if output:  # CD builds the image with this GIT_COMMIT and hands both to the smoke test: it checks the
        # deployed service runs this very bundle, built from this commit (the bundle itself records no commit);
        # committed_at (MODEL_COMMITTED_AT): when dvc.lock's history first recorded the bundle, empty when unknown
        with open(output, "a", encoding="utf-8") as handle:
            handle.write(f"model_version={bundle.version}\ngit_commit={git_commit() or ''}\n"
                         f"committed_at={committed_at(bundle.path, args.params.parent / LOCK) or ''}\n")  # fmt: skip
    print(bundle.path)


def _buildpack_pull_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="DVC cache outside the slug (a per-build temporary folder)")


@command(
    "buildpack-pull",
    "Heroku build (bin/post_compile): dvc pull the gated bundle without git (DVC_EXECUTABLE), check it; exit 2 if not",
    _buildpack_pull_args,
)
def _buildpack_pull(args: argparse.Namespace) -> None:
    from mlops_template.ci.buildpack import pull

    print(pull(load_params(args.params), args.cache_dir).path)


@command("serve", "serve the model API with uvicorn (env: MODEL_DIR, HOST, PORT, WEB_CONCURRENCY; README)")
def _serve(args: argparse.Namespace) -> None:
    from mlops_template.serving.server import serve
    from mlops_template.serving.settings import Settings

    env = dict(os.environ)
    env.setdefault("PARAMS_FILE", str(args.params))
    if env.get("MODEL_URI", "").strip():
        from mlops_template.serving.model_uri import fetch_model

        # downloaded once, before the workers start: each of them then loads (and checks) the same folder
        env["MODEL_DIR"] = os.environ["MODEL_DIR"] = str(fetch_model(env["MODEL_URI"].strip()))
    settings = Settings.from_env(env)
    if settings.model_committed_at is None and not env.get("MODEL_URI", "").strip():
        from mlops_template.core.provenance import LOCK, committed_at

        # in a checkout (`make run`, `make serve`) the history of the dvc.lock next to params.yaml dates the bundle
        # (an image gets it as a build argument); set in the environment too: WEB_CONCURRENCY workers read it there
        found = committed_at(settings.model_dir, settings.params_file.parent / LOCK)
        if found:
            os.environ["MODEL_COMMITTED_AT"] = found
            settings = settings.model_copy(update={"model_committed_at": found})
    serve(settings)


def _ui_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("UI_HOST", "127.0.0.1"), help="address (env UI_HOST)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("UI_PORT", "8501")), help="port (env UI_PORT)")


@command("ui", "the Streamlit front end, a client of the service at API_URL (needs requirements-ui.txt)", _ui_args)
def _ui(args: argparse.Namespace) -> None:
    from mlops_template.ui.launch import launch

    load_params(args.params)  # a damaged params.yaml is one error line here, not a page that fails on upload
    os.environ.setdefault("PARAMS_FILE", str(args.params))  # data.read: uploads are read as `make predict` reads
    launch(args.host, args.port)


def _promote_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the deployed service: promote the bundle its GET /model reports")
    parser.add_argument("--bundle", type=Path, help="else this bundle folder (default: gate.bundle_dir)")
    parser.add_argument("--image", default=os.environ.get("DEPLOYED_IMAGE"), help="image digest, tagged on the version")


@command("promote", "MLflow registry: move the `champion` alias to the version of the deployed bundle", _promote_args)
def _promote(args: argparse.Namespace) -> None:
    from mlops_template.core.bundle import read_metadata
    from mlops_template.tracking.registry import promote
    from mlops_template.tracking.settings import require

    params = load_params(args.params)
    if args.url:
        from mlops_template.ci.smoke import _model_info

        model_version = _model_info(args.url.rstrip("/")).get("model_version")
    else:
        model_version = read_metadata(args.bundle or params.gate.bundle_dir).model_version
    if not model_version:
        raise UserError(f"no model_version in {args.url or args.bundle or params.gate.bundle_dir}; is it a bundle?")
    print(promote(require(params.tracking), model_version, args.image or None))


def _mlflow_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, required=True, help="new folder for the MLflow Model")
    parser.add_argument("--bundle", type=Path, help="gated bundle (default: gate.bundle_dir)")


@command("mlflow-model", "write the bundle as an MLflow Model (sklearn + pyfunc, bundle inside)", _mlflow_model_args)
def _mlflow_model(args: argparse.Namespace) -> None:
    from mlops_template.tracking.model import save

    if args.output.exists():
        raise UserError(f"{args.output}: already exists; MLflow writes a model into a new folder")
    print(save(args.bundle or load_params(args.params).gate.bundle_dir, args.output))


def _predict_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, required=True, help="CSV with the feature columns (others are copied)")
    parser.add_argument("--output", type=Path, required=True, help="CSV to write (atomically)")
    parser.add_argument("--rejects", type=Path, help="CSV of rejected rows: line number and reason")
    parser.add_argument("--model-dir", type=Path, help="bundle (default: MODEL_DIR, else gate.bundle_dir)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows per chunk (memory bound)")
    parser.add_argument(
        "--runtime", choices=["auto", "onnx", "sklearn"], default="auto", help="auto = ONNX when the bundle verified it"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


@command("predict", "score a CSV file in chunks with the gated bundle (batch predictions)", _predict_args)
def _predict(args: argparse.Namespace) -> None:
    import json

    from mlops_template.serving.batch import predict_file
    from mlops_template.serving.settings import default_model_dir

    if args.chunk_rows <= 0:
        raise UserError("--chunk-rows must be positive")
    model_dir = args.model_dir or (Path(os.environ["MODEL_DIR"]) if os.environ.get("MODEL_DIR") else None)
    summary = predict_file(
        args.input,
        args.output,
        model_dir or default_model_dir(args.params),
        args.rejects,
        args.chunk_rows,
        args.runtime,
        progress=not args.no_progress,
        read=load_params(args.params).data.read if args.params.is_file() else None,
    )
    log.info(
        "predict: %d rows, %d scored, %d rejected in %.1f s (%.0f rows/s, %s) -> %s",
        summary.rows,
        summary.scored,
        summary.rejected,
        summary.seconds,
        summary.rows_per_second,
        summary.runtime,
        args.output,
    )
    print(json.dumps(summary.as_dict()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlops_template", description=__doc__)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (help_text, function, arguments) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        arguments(child)
        child.set_defaults(run=function)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        args.run(args)
    except Reported as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)", file=sys.stderr)
        return 3
    return 0
