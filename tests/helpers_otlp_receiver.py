"""Moved to tests/support/ (otlp_receiver.py, traces.py): this alias only keeps branches written before the move
working."""

from support.otlp_receiver import *  # noqa: F403
from support.traces import BASE_NS, new_id, sample_trace  # noqa: F401
