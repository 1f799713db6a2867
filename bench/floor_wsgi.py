"""The server's own floor: a WSGI app that answers bare's body without Django, for gunicorn alone.

What gunicorn, the kernel's loopback and the load generator cost on this machine before any Django
code runs: no endpoint served through the same gunicorn configuration can beat this throughput or
this latency. bench/read_path.py runs it beside bare so a latency target can be read against it.
"""

import json

# About the size of a small context answer, so the comparison is not flattered by a tiny body.
BARE_BODY = {
    "session_id": "bench-bare",
    "mode": "planning",
    "status": "active",
    "summary": "The user wants a constant answer; nothing is read from the database.",
    "goal": "",
    "plan": ["one", "two", "three"],
    "progress": ["one"],
    "version": 10,
}

BODY = json.dumps(BARE_BODY).encode()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
