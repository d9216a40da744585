"""Start a rendered project's local stack (tests/stack/services.py) for the benchmarks.

Usage: python stack_up.py PROJECT ROOT, with PROJECT's Python. Prints one JSON line
(the endpoints and the start-up seconds) once every service is ready, then keeps the
stack up until its standard input closes, and stops it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path


def main() -> None:
    project, root = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(project / "tests"))
    from stack.services import LocalStack

    root.mkdir(parents=True, exist_ok=True)
    # No receiver: the benchmark does not look at alerts.
    stack = LocalStack(root, with_feature_store=True, alert_webhook_url="http://127.0.0.1:9/")
    try:
        started_in = stack.start()
        endpoints = asdict(stack.endpoints)
        endpoints["databases"] = {
            name: stack.endpoints.database(name) for name in ("feast", "monitoring")
        }
        print(json.dumps({"started_in": started_in, **endpoints}), flush=True)
        sys.stdin.read()
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
