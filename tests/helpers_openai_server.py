"""Moved to tests/support/openai_server.py: this alias only keeps branches written before the move working."""

from support.openai_server import *  # noqa: F403
