#!/bin/sh
# A container engine on a Debian machine without one (run as root): podman 5.4 and buildah 1.39
# from a Debian 13 tree (mmdebstrap), in a persistent mount namespace whose root is that tree,
# serving the Docker API on a unix socket for `docker compose` and the Docker SDK. Idempotent:
# a warm run only checks that each part is there. See README.md for why each step exists.
#   CTR_ROOT   where everything lives (default ~/.cache/container-engine)
#   CTR_SHARE  host directories the engine must see at the same path (build contexts and
#              bind-mount sources), space-separated (default: the current directory)
set -eu
CTR_ROOT=${CTR_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/container-engine}
CTR_SHARE=${CTR_SHARE:-$PWD}
R=$CTR_ROOT/trixie-podman
NS=$CTR_ROOT/ns
SOCK=$CTR_ROOT/sock/podman.sock
mkdir -p "$CTR_ROOT/sock" "$CTR_ROOT/share" "$CTR_ROOT/docker-config/cli-plugins"

command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
command -v docker >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-cli >/dev/null 2>&1 \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null

# The engine's tree: Debian 13 (podman 5.4.2, buildah 1.39.3, runc, netavark, and Debian's
# docker compose v2.26.1, whose static binary also runs on the Debian 12 host).
if [ ! -x "$R/usr/bin/podman" ]; then
  rm -rf "$R"
  mmdebstrap --quiet --variant=minbase --format=directory \
    --include=podman,buildah,runc,conmon,netavark,aardvark-dns,iptables,nftables,fuse-overlayfs,ca-certificates,catatonit,procps,iproute2,docker-compose \
    trixie "$R"
fi
install -m 755 "$R/usr/libexec/docker/cli-plugins/docker-compose" "$CTR_ROOT/docker-config/cli-plugins/docker-compose"
cp /etc/resolv.conf "$R/etc/resolv.conf"
cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$R" update-ca-certificates >/dev/null 2>&1
# runc: crun rejects this kernel's hybrid cgroups. Ulimits within the hard limits: podman's
# defaults need CAP_SYS_RESOURCE, which a container host like this one may not grant.
cat > "$R/etc/containers/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF

# A namespace made for other directories cannot see these (after pivot_root the host's
# tree is gone from it), and bind mounts from them would come up empty: start over. The
# same when a shared directory was deleted and made again since: the namespace still
# holds the old one, so compare what both sides see by device and inode.
if [ -e "$NS/mnt" ] && nsenter --mount="$NS/mnt" true 2>/dev/null; then
  for d in $CTR_SHARE; do
    [ "$(stat -c %d:%i "$d")" = "$(nsenter --mount="$NS/mnt" stat -c %d:%i "$d" 2>/dev/null)" ] \
      || { CTR_ROOT=$CTR_ROOT sh "$(dirname "$0")/teardown.sh"; break; }
  done
fi

# The mount namespace: pivot_root into the tree (under a plain chroot, `podman exec` and
# health checks ran in the host's root instead of the container's).
if ! { [ -e "$NS/mnt" ] && nsenter --mount="$NS/mnt" true 2>/dev/null; }; then
  mkdir -p "$NS"
  mountpoint -q "$NS" || { mount --bind "$NS" "$NS"; mount --make-private "$NS"; }
  touch "$NS/mnt"
  mkdir -p "$R/.oldroot" "$R$CTR_ROOT/sock" "$R$CTR_ROOT/share"
  for d in $CTR_SHARE; do mkdir -p "$R$d"; done
  unshare --mount="$NS/mnt" --propagation private sh -ec "
    mount --bind '$R' '$R'
    mount -t proc proc '$R/proc'
    mount --rbind /sys '$R/sys'
    mount --rbind /dev '$R/dev'
    mount -t tmpfs -o mode=755 tmpfs '$R/run'
    mount --bind '$CTR_ROOT/sock' '$R$CTR_ROOT/sock'
    mount --bind '$CTR_ROOT/share' '$R$CTR_ROOT/share'
    for d in $CTR_SHARE; do mount --bind \"\$d\" '$R'\"\$d\"; done
    cd '$R'; pivot_root . .oldroot; umount -l /.oldroot
  "
fi
cat > "$CTR_ROOT/podman5" <<WRAP
#!/bin/sh
# podman 5.4 from the Debian 13 tree, inside the namespace made by setup-engine.sh.
export PODMAN_IGNORE_CGROUPSV1_WARNING=1
exec nsenter --mount=$NS/mnt /bin/sh -c 'cd "\$0" 2>/dev/null || cd /; exec /usr/bin/podman "\$@"' "\$PWD" "\$@"
WRAP
chmod 755 "$CTR_ROOT/podman5"

# The Docker-compatible API. No systemd: started here, stopped by PID (teardown.sh).
if ! curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
  nohup "$CTR_ROOT/podman5" system service --time=0 "unix://$SOCK" > "$CTR_ROOT/podman-service.log" 2>&1 &
  echo $! > "$CTR_ROOT/podman-service.pid"
  i=0
  until curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -le 100 ] || { echo "the API socket did not answer" >&2; exit 1; }
    sleep 0.2
  done
fi
cat > "$CTR_ROOT/env.sh" <<ENV
export DOCKER_HOST=unix://$SOCK
export DOCKER_CONFIG=$CTR_ROOT/docker-config
# compose uses the API's classic /build (buildah behind it): no buildx, no BuildKit image.
export COMPOSE_BAKE=false DOCKER_BUILDKIT=0
export PODMAN=$CTR_ROOT/podman5
ENV
echo "engine ready: . $CTR_ROOT/env.sh"
