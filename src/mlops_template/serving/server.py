"""Run the app under uvicorn: uvloop + httptools, JSON logs, graceful shutdown on SIGTERM."""

from __future__ import annotations

import logging

from mlops_template.serving.logs import configure
from mlops_template.serving.settings import Settings

log = logging.getLogger("mlops_template.serving")


def serve(settings: Settings) -> None:
    """Load the bundle first (a UserError here is the one-line start-up failure), then listen."""
    import uvicorn

    from mlops_template.serving.app import create_app, freeze_startup_heap

    configure(settings.log_level)
    log.info("starting", extra={"settings": settings.public()})
    app = create_app(settings)  # fails before binding the port when the bundle cannot be served
    freeze_startup_heap()
    target: object = app
    if settings.workers > 1:
        # each worker process loads its own copy from the same environment; the check above already passed
        target = "mlops_template.serving.app:app_from_env"
    uvicorn.run(
        target,
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,  # keep our JSON handler
        access_log=False,  # RequestContext writes one line per request, with the request id
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout,
        proxy_headers=True,
    )
