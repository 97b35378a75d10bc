"""The control test helper (server.py, run on an uncensored host) and its client (client.py, used
by `probe run`), speaking the JSON protocol in protocol.py. The helper measures the same targets
with the same runner and checks from its own vantage, so that a failure seen by the probe can be
told apart from a site that is down everywhere."""
