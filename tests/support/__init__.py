"""Helpers shared by the tests: fake chat models, trace builders, the OTLP receiver, the OpenAI-compatible server."""
