"""OONI's data format: read OONI measurement documents (the archive's JSONL.gz, the API's single
JSON documents), parse their df-xxx structures into typed records, import them as runs, compare
our verdicts with OONI's own, and export our measurements as OONI documents."""
