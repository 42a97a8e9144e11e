"""The README's quick start: start the sample API on 127.0.0.1, fetch ids.txt through it, stop it.

    python sample_inputs/demo.py                 # JSON Lines on stdout
    python sample_inputs/demo.py -f csv --fields index,status,body

Extra arguments are passed to fetchmany. Needs no internet: everything is local.
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "sample_api.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        if not base.startswith("http://127.0.0.1:"):
            print("demo: the sample API did not start", file=sys.stderr)
            return 1
        command = [
            sys.executable,
            "-m",
            "fetchmany",
            os.path.join(HERE, "ids.txt"),
            "--template",
            f"{base}/posts?id={{}}",
            *sys.argv[1:],
        ]
        return subprocess.call(command)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
