"""A bounded, thread-safe window of the most recent inputs and model outputs, for live drift.

Memory is fixed at construction: one ring buffer of `size` slots per profiled feature and output
(float64 raw values for numbers, int32 bucket codes for categories), whatever the traffic.
`drift()` computes the same report as the batch command on the rows currently in the window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.core.config import DriftConfig
from mlops_template.monitoring.drift import Observed, compare
from mlops_template.monitoring.profile import Entry, bucket_index, n_buckets


class DriftWindow:
    """The last `size` rows seen (features and outputs), in fixed-size ring buffers."""

    def __init__(self, profile: Mapping[str, Any], size: int) -> None:
        if size < 1:
            raise ValueError("window size must be positive")
        self.profile = profile
        self.size = size
        self._entries: dict[str, tuple[str, Entry]] = {}
        self._buffers: dict[str, np.ndarray] = {}
        for group in ("features", "outputs"):
            for name, entry in profile[group].items():
                key = f"{group}:{name}"
                self._entries[key] = (group, entry)
                numeric = entry["type"] == "numeric"
                self._buffers[key] = np.full(size, np.nan) if numeric else np.zeros(size, dtype=np.int32)
        self._next = 0  # slot the next row goes to
        self._filled = 0
        self._seen = 0
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, Any]] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers (constant for the life of the window)."""
        return sum(buffer.nbytes for buffer in self._buffers.values())

    @property
    def seen(self) -> int:
        """Rows added since start (including those the window has dropped)."""
        return self._seen

    def __len__(self) -> int:
        return self._filled

    def _encode(self, key: str, values: Sequence[Any]) -> np.ndarray:
        _, entry = self._entries[key]
        if entry["type"] == "numeric":
            return _to_float(values)
        return bucket_index(entry, values)

    def add(self, features: Mapping[str, Sequence[Any]], outputs: Mapping[str, Sequence[Any]]) -> None:
        """Add rows: `features` maps each profiled feature to its column, `outputs` each profiled output.

        Encoding costs a numpy round-trip per column: callers add many rows at once (the service queues
        its requests' rows, see `serving.live.Live.record`).
        """
        columns = {f"features:{n}": features[n] for n in self.profile["features"]}
        columns |= {f"outputs:{n}": outputs[n] for n in self.profile["outputs"]}
        lengths = {len(c) for c in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns of different lengths {sorted(lengths)}")
        rows = lengths.pop()
        if rows == 0:
            return
        kept = min(rows, self.size)  # older rows of a batch bigger than the window would be overwritten anyway
        encoded = {key: self._encode(key, values[-kept:]) for key, values in columns.items()}
        with self._lock:
            slots = (self._next + np.arange(kept)) % self.size
            for key, values in encoded.items():
                self._buffers[key][slots] = values
            self._next = (self._next + kept) % self.size
            self._filled = min(self._filled + kept, self.size)
            self._seen += rows

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of the filled part of every buffer (taken under the lock, computed on outside it)."""
        with self._lock:
            return {key: buffer[: self._filled].copy() for key, buffer in self._buffers.items()}

    def cached_drift(self, config: DriftConfig, now: float | None = None) -> dict[str, Any]:
        """`drift()` recomputed at most every `config.refresh_seconds` (a report costs ~0.1 s of CPU)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            cached = self._cache
        if cached is None or now - cached[0] >= config.refresh_seconds:
            cached = (now, self.drift(config))
            with self._lock:
                self._cache = cached
        return cached[1]

    def drift(self, config: DriftConfig) -> dict[str, Any]:
        """The drift report of the rows in the window (same statistics as the batch command)."""
        data = self.snapshot()
        observed: dict[str, dict[str, Observed]] = {"features": {}, "outputs": {}}
        for key, values in data.items():
            group, entry = self._entries[key]
            name = key.split(":", 1)[1]
            if entry["type"] == "numeric":
                counts = np.bincount(bucket_index(entry, values), minlength=n_buckets(entry))
                observed[group][name] = Observed(counts, values[~np.isnan(values)])
            else:
                observed[group][name] = Observed(np.bincount(values, minlength=n_buckets(entry)))
        report = compare(self.profile, observed["features"], observed["outputs"], config)
        return {**report, "window_size": self.size, "rows_seen": self._seen}


def _to_float(values: Sequence[Any]) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)  # numbers and None (-> NaN): the common, fast case
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
