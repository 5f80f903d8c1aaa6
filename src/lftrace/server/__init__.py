"""``lftrace serve``: a local Langfuse-compatible server over the trace store.

* ``ingest_otlp``   OTLP/HTTP traces (protobuf or JSON, gzip) -> Trace/Observation
* ``ingest_legacy`` the legacy ``/api/public/ingestion`` batch events -> Trace/Observation
* ``api``           the Langfuse public read API (shapes from ``Trace.to_dict()``)
* ``web``           the read-only web view at ``/``
* ``app``           the Starlette app: auth, size limits, routes; ``run`` starts uvicorn

Nothing here is imported by the CLI until ``lftrace serve`` runs (starlette/uvicorn are imported lazily).
"""
