"""The exceptions a person sees: one line that names the thing and the fix, and the CLI's exit code."""


class Reported(Exception):
    """An outcome the CLI reports as one line (no traceback) and exits with `exit_code`."""

    exit_code = 1


class UserError(Reported):
    """Bad input (file, params, request): reported without a traceback, CLI exit code 2."""

    exit_code = 2


class GateRejected(Reported):
    """The metric gate rejected the model: CLI exit code 1."""


class DriftDetected(Reported):
    """The drift check found drift above the thresholds: CLI exit code 1 (CT may retrain)."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (pandas' and scikit-learn's span several): the CLI reports one line."""
    return " ".join(str(exc).split())
