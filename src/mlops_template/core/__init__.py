"""Shared foundations: params.yaml, errors, atomic files, the model bundle and its contract."""
