#!/bin/sh
# Build conatfs with warnings as errors and run every test.  The README's
# test command; .ci/run calls it after installing the dependencies.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if [ -d "$BUILD" ]; then
    meson setup --reconfigure -Dwerror=true "$BUILD" >/dev/null
else
    meson setup -Dwerror=true "$BUILD"
fi
ninja -C "$BUILD"
meson test -C "$BUILD" --print-errorlogs "$@"
