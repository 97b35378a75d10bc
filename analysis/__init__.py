"""Analysis: reads stored measurements and derives verdicts, timelines, events, reports and exports.

Analysis never performs network I/O; it reads the store (probe.store) and writes files.
"""
