"""httpbin (PyPI ``httpbin``) served by werkzeug's threaded WSGI server on 127.0.0.1.

Run as a process by ``tests/test_conformance.py``: it prints the port it listens on,
then serves until killed. In a process of its own, so that the server's threads never
compete with a test's event loop for the interpreter, and a hang in one cannot stop the
other.
"""

from __future__ import annotations

import logging
import sys
import warnings

from werkzeug.serving import make_server


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # httpbin says when flasgger is missing: not needed
        logging.disable(logging.WARNING)
        from httpbin import app
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
