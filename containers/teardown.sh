#!/bin/sh
# Stop what setup-engine.sh and the health-check driver started (by PID) and drop the mount
# namespace. Images, build cache and volumes stay under $CTR_ROOT for the next run.
CTR_ROOT=${CTR_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/container-engine}
for f in "$CTR_ROOT/healthcheck-driver.pid" "$CTR_ROOT/podman-service.pid"; do
  [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
  rm -f "$f"
done
[ -x "$CTR_ROOT/podman5" ] && "$CTR_ROOT/podman5" stop -a -t 10 >/dev/null 2>&1
umount "$CTR_ROOT/ns/mnt" 2>/dev/null
umount "$CTR_ROOT/ns" 2>/dev/null
true
