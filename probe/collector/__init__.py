"""Uploads from probes to a collector: the batch document (batch), the server (server) and the
probe's uploader with its outbox in the store (uploader)."""
