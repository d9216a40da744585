#!/usr/bin/env python3
"""Run container HEALTHCHECKs for podman on a machine without systemd.

podman schedules health checks with systemd timers; without systemd nothing runs them,
and `docker compose up --wait` or `depends_on: service_healthy` never settle. This loop
runs `podman healthcheck run` for every running container that has a check: at once
when the container appears, every min(interval, 1 s) during its start period (failures
there do not count, as with Docker's start_interval), then at its interval. (With a
Docker engine none of this runs.)

It also repairs ["CMD", ...] checks whose arguments hold spaces: podman's Docker API
splits them on spaces when compose creates the container (podman issue 26519, fixed
upstream in December 2025). Given compose's resolved configuration (JSON from
`docker compose config --format json`), such a check is re-set with
`podman update --health-cmd` as the equivalent shell command.

usage: healthcheck_driver.py PODMAN [COMPOSE_CONFIG_JSON ...]
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

# Containers that have a health check, in any state.
HEALTH_FILTERS = [f"--filter=health={state}" for state in ("starting", "healthy", "unhealthy")]


def wanted_checks(paths: list[str]) -> dict[str, list[str]]:
    """Service name -> its ["CMD", ...] check, for checks that podman would split."""
    wanted = {}
    for path in paths:
        config = json.loads(Path(path).read_text())
        for name, service in config.get("services", {}).items():
            test = (service.get("healthcheck") or {}).get("test") or []
            if test[:1] == ["CMD"] and any(any(c.isspace() for c in a) for a in test[1:]):
                wanted[name] = test
    return wanted


def seconds(nanoseconds: int | None, default: float) -> float:
    return (nanoseconds or 0) / 1e9 or default


def main(argv: list[str]) -> None:
    podman = shlex.split(argv[0])
    wanted = wanted_checks(argv[1:])
    # container id -> (first seen, interval, start period, last probe)
    state: dict[str, tuple[float, float, float, float | None]] = {}
    running: dict[str, subprocess.Popen[bytes]] = {}
    while True:
        try:
            listing = subprocess.run(
                [*podman, "ps", "--no-trunc", "--format", "{{.ID}} {{.Status}}", *HEALTH_FILTERS],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout.splitlines()
        except subprocess.TimeoutExpired:  # the storage lock is held by a long build
            continue
        status = {line.split(" ", 1)[0]: line for line in listing if line}
        now = time.monotonic()
        for cid, line in status.items():
            if cid in running and running[cid].poll() is None:
                continue
            if cid not in state:
                info = json.loads(
                    subprocess.run(
                        [*podman, "inspect", cid], capture_output=True, text=True, check=False
                    ).stdout
                    or "[{}]"
                )[0]
                config = info.get("Config") or {}
                check = config.get("Healthcheck") or {}
                service = (config.get("Labels") or {}).get("com.docker.compose.service")
                if service in wanted and check.get("Test") != wanted[service]:
                    subprocess.run(
                        [*podman, "update", "--health-cmd", shlex.join(wanted[service][1:]), cid],
                        capture_output=True,
                        check=False,
                    )
                    print(
                        f"{time.strftime('%X')} repaired the health check of {service}", flush=True
                    )
                state[cid] = (
                    now,
                    seconds(check.get("Interval"), 30),
                    seconds(check.get("StartPeriod"), 0),
                    None,
                )
            first, interval, start_period, last = state[cid]
            settling = now - first < start_period and "(healthy)" not in line
            step = min(interval, 1.0) if settling else interval
            if last is None or now - last >= step:
                running[cid] = subprocess.Popen(
                    [*podman, "healthcheck", "run", cid],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                state[cid] = (first, interval, start_period, now)
        for cid in list(state):
            if cid not in status:
                state.pop(cid)
                running.pop(cid, None)
        time.sleep(0.5)


if __name__ == "__main__":
    main(sys.argv[1:])
