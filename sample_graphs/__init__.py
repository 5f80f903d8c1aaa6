"""Sample LangChain/LangGraph apps to run under ``lftrace run`` (offline by default; see ``_models.py``)."""
