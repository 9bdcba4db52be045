"""Stopping on request: a signal handler calls `request_stop`; the pipeline calls
`raise_if_stop_requested` after each chunk's transaction, so SIGINT/SIGTERM never cut a write in half.
The session is then marked `interrupted` and the process exits 128 + the signal (130, 143). The request is
process-wide: a worker running several videos at once (`--streams`) stops each after its own chunk."""

from __future__ import annotations


class ProcessingInterrupted(Exception):
    """Processing stopped on request (a signal) between chunks; the session is marked `interrupted`."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"interrupted by signal {signal_number}")
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number  # 130 for SIGINT, 143 for SIGTERM


# Set by a signal handler (request_stop); checked by the pipeline after each chunk's transaction.
_stop_signal: int | None = None


def request_stop(signal_number: int) -> None:
    """Ask the running `process` call to stop after its current chunk (safe in a signal handler)."""
    global _stop_signal
    _stop_signal = signal_number


def clear_stop_request() -> None:
    global _stop_signal
    _stop_signal = None


def stop_requested() -> int | None:
    """The signal a stop was requested with, or None (process-wide: every video in flight stops)."""
    return _stop_signal


def raise_if_stop_requested() -> None:
    if _stop_signal is not None:
        raise ProcessingInterrupted(_stop_signal)
