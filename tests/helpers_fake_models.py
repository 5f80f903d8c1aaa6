"""Moved to tests/support/fake_models.py: this alias only keeps branches written before the move working."""

from support.fake_models import *  # noqa: F403
