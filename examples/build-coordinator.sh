#!/bin/sh
# build-coordinator.sh — one machine claims a build by writing a key, the
# others wait with inotifywait until its status key says "done".
#
#   build-coordinator.sh MOUNT_A MOUNT_B
#
# A builds; B waits (no polling of the value: it sleeps in inotifywait).
set -eu
a=$1 b=$2 store=project-demo/builds
mkdir -p "$a/$store"
n=0; until [ -d "$b/$store" ] || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done

(   # machine B: wait until the build is done
    n=0
    until [ "$(cat "$b/$store/status" 2>/dev/null)" = done ] || [ $n -ge 6 ]; do
        inotifywait -qq -t 5 -e close_write -e create -e moved_to "$b/$store" || true
        n=$((n + 1))
    done
    echo "B saw: claimed by $(cat "$b/$store/claim"), $(cat "$b/$store/result")"
    [ "$(cat "$b/$store/status")" = done ]
) &
waiter=$!

# machine A: claim, build, report
echo machine-a > "$a/$store/claim"
echo building > "$a/$store/status"
echo "ok: 42 tests passed" > "$a/$store/result"
echo done > "$a/$store/status"
wait $waiter
