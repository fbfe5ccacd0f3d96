"""MLOps template: a tabular model from a CSV to a monitored production API."""

__version__ = "0.1.0"
