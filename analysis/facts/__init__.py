"""Per-layer facts of one target in one run: the typed records of its measurements (and the
controls) reduced to what the verdict rules (analysis.rules) read.

attempts.py   a target's measurements split by layer and A/B kind, with their typed records
run.py        what is read across the whole run (IPv6 health, control sites' speed, A/B halves)
dns.py, tcp.py, tls.py, http.py, protocol.py   one fact builder per layer
target.py     the Facts of one target, assembled from the layers' facts
"""
