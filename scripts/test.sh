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
status=0
meson test -C "$BUILD" --print-errorlogs "$@" || status=$?
# One plain closing line: registered tests (unit programs, e2e files) passed/failed.
/usr/bin/python3 - "$BUILD/meson-logs/testlog.json" <<'EOF'
import json, sys
passed = failed = 0
with open(sys.argv[1]) as log:
    for line in log:
        result = json.loads(line).get("result")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result != "SKIP":
            failed += 1
print(f"{passed} passed, {failed} failed")
EOF
exit $status
