"""The one exception type users see: a message that names the thing and the fix."""


class UserError(Exception):
    """Bad input (file, params, request): reported without a traceback, CLI exit code 2."""

    exit_code = 2


class GateRejected(Exception):
    """The metric gate rejected the model: CLI exit code 1."""

    exit_code = 1


class DriftDetected(Exception):
    """The drift check found drift above the thresholds: CLI exit code 1 (CT may retrain)."""

    exit_code = 1
