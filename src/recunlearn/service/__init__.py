"""Deletion service: durable request ledger, worker, model versions, audit, HTTP API."""
