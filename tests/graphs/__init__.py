"""Real LangGraph graphs written the way LangGraph's how-to guides write them, for `lftrace run`/`test` tests."""
