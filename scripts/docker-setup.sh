#!/usr/bin/env bash
# A Docker engine for the docker provider, on a machine with no registry access.
#
#   eval "$(bash scripts/docker-setup.sh)"
#
# Idempotent, and fast once done:
#   1. starts dockerd (own data root and socket) unless it already answers;
#   2. imports a Debian bookworm base image with Python and a venv (debootstrap;
#      no registry pull) unless it exists;
#   3. fills a wheel cache with everything the server images install, so
#      `pip install` inside `docker build` needs no network, and installs those
#      wheels into a "deps" image the server images build FROM, so a server
#      image build is a copy and an editable install of the project (both
#      skipped while pyproject.toml, constraints.txt and the extras are unchanged).
# On stdout it prints the exports the docker provider reads; progress goes to stderr.
#
# Overridable: GYM_OPENENV_DOCKER_ROOT (state dir), GYM_OPENENV_DOCKER_EXTRAS
# (extras to pre-build wheels for), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "docker-setup: $*" >&2; }

ROOT="${GYM_OPENENV_DOCKER_ROOT:-/var/lib/gym-openenv-docker}"
SOCK="$ROOT/docker.sock"
BASE_IMAGE="gym-openenv/base:bookworm"
WHEELS="$ROOT/wheels"
EXTRAS="${GYM_OPENENV_DOCKER_EXTRAS:-atari}"
export DOCKER_HOST="unix://$SOCK"
mkdir -p "$ROOT"

# 1. the engine
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (data root $ROOT/data)"
  # setsid: the daemon outlives this script and the shell that ran it.
  setsid dockerd --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" \
    --host "$DOCKER_HOST" >"$ROOT/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.25
  done
  docker info >/dev/null 2>&1 || { tail -n 30 "$ROOT/dockerd.log" >&2; log "dockerd did not start"; exit 1; }
fi

# 2. the base image: Debian's python3 in a venv on PATH (pip works without
#    --break-system-packages; Dockerfiles call `python3 -m pip`).
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  mirror="${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d "$ROOT/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap bookworm from $mirror (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip bookworm "$rootfs" "$mirror" >"$ROOT/debootstrap.log" 2>&1 \
    || { tail -n 30 "$ROOT/debootstrap.log" >&2; exit 1; }
  chroot "$rootfs" python3 -m venv /opt/venv
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi

# 3. wheels for the project's dependencies (the project itself is installed from the context).
stamp="$(cat pyproject.toml constraints.txt <(echo "$EXTRAS") | sha256sum | cut -c1-16)"
if [ "$(cat "$WHEELS/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "building wheels for extras [$EXTRAS] into $WHEELS"
  mkdir -p "$WHEELS"
  requirements="$(python3 - "$EXTRAS" <<'EOF'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = [e for e in sys.argv[1].split(",") if e]
reqs = list(project["dependencies"]) + ["setuptools>=68", "wheel"]
for extra in extras:
    reqs += project["optional-dependencies"][extra]
print("\n".join(reqs))
EOF
)"
  echo "$requirements" >"$WHEELS/requirements.txt"
  python3 -m pip wheel -q -c constraints.txt -w "$WHEELS" -r "$WHEELS/requirements.txt" >"$ROOT/wheels.log" 2>&1 \
    || { tail -n 30 "$ROOT/wheels.log" >&2; exit 1; }
  echo "$stamp" >"$WHEELS/.stamp"
fi
DEPS_IMAGE="gym-openenv/deps:$stamp"
if ! docker image inspect "$DEPS_IMAGE" >/dev/null 2>&1; then
  log "installing the wheels into $DEPS_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -t "$DEPS_IMAGE" -f - "$WHEELS" >"$ROOT/deps-build.log" 2>&1 <<EOF || { tail -n 30 "$ROOT/deps-build.log" >&2; exit 1; }
FROM $BASE_IMAGE
COPY . /tmp/wheels
RUN python3 -m pip install --no-cache-dir --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt && rm -rf /tmp/wheels
EOF
  # Older deps images go, unless server images still build on them (then docker keeps them).
  for old in $(docker images gym-openenv/deps --format '{{.Repository}}:{{.Tag}}' | grep -vx "$DEPS_IMAGE"); do
    docker rmi "$old" >/dev/null 2>&1 || log "keeping $old (in use)"
  done
fi

echo "export DOCKER_HOST=$DOCKER_HOST"
echo "export OPENENV_DOCKER_BASE_IMAGE=$DEPS_IMAGE"
echo "export OPENENV_DOCKER_WHEELS=$WHEELS"
# The deps image has every dependency and setuptools: the editable install needs no build isolation.
echo "export OPENENV_DOCKER_PIP_ARGS='--no-index --find-links /app/.docker-wheels --no-build-isolation'"
