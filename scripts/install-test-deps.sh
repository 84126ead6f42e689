#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine, as root:
# system packages (Chromium, bubblewrap, Docker engine and a local registry,
# debootstrap) and the
# package with every extra. torch stays at the CPU build via constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation bubblewrap docker.io debootstrap docker-registry openssl >/dev/null
fi
python -m pip install -q -c constraints.txt -e ".[all,dev]"
# The notebooks run on a "python3" kernel; make sure one is registered.
python -m ipykernel install --user --name python3 >/dev/null
# dockerd with its own data root, a locally built base image and wheels for offline
# image builds (minutes the first time, about a second after); the Docker tests ask
# the same script for its settings.
if [ "$(id -u)" -eq 0 ] && command -v dockerd >/dev/null; then
  bash scripts/docker-setup.sh >/dev/null
fi
