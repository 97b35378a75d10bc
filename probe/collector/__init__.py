"""Uploads from probes to a collector: the batch document (batch), the server (server), the
collector's fast path from upload entries to stored rows (rows) and the probe's uploader with its
outbox in the store (uploader)."""
