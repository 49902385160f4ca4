#!/bin/sh
# Install the Debian 12 packages conatfs needs to build, mount and test.
# Idempotent; run as root.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    build-essential pkg-config meson ninja-build \
    libglib2.0-dev libfuse3-dev fuse3 libsqlite3-dev sqlite3 \
    libnats-dev nats-server libjson-glib-dev \
    inotify-tools attr vim-tiny rsync scdoc man-db \
    python3 python3-pytest
# Interop tests use the Node.js `nats` client; install Node.js only if absent.
command -v node >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends nodejs npm

# The Node.js `nats` client used by the interop tests, pinned by the lock file.
cd "$(dirname "$0")/../tests/interop" && npm ci --no-audit --no-fund --loglevel=error
