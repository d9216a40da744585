#!/bin/sh
# The official image builds Redis with protected mode off by default (its Dockerfile
# patches config.c), so clients on the compose network connect without a password.
# Debian's build keeps it on and resets other containers' connections: match upstream.
set -e
if [ "${1:-}" = "redis-server" ]; then
  shift
  set -- redis-server "$@" --protected-mode no
fi
exec "$@"
