"""Seeing a running cluster: Prometheus metrics, health endpoints, live workers.

Dramatiq runs several worker processes per ``dramatiq`` command. Each records its
metrics into files in one folder per run (``prometheus_client``'s multiprocess mode);
one extra process, started by Dramatiq beside the workers (a middleware "fork", as
Dramatiq's own Prometheus middleware does), serves ``/metrics``, ``/livez`` and
``/readyz`` on ``SPANE_METRICS_PORT`` from that folder and from the database.
"""
