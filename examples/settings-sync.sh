#!/bin/sh
# settings-sync.sh — a JSON settings key edited on one machine is reloaded on
# another as soon as it changes (inotifywait on the key's store).
#
#   settings-sync.sh MOUNT_A MOUNT_B
#
# B prints each version it reloads and exits 0 when it saw the last one.
set -eu
a=$1 b=$2 store=project-demo/settings
mkdir -p "$a/$store"
echo '{"theme":"dark","font":12}' > "$a/$store/ui.json"
n=0; until [ -f "$b/$store/ui.json" ] || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done

(   # machine B: the settings panel
    n=0
    until grep -q light "$b/$store/ui.json" || [ $n -ge 6 ]; do
        echo "B reloaded: $(cat "$b/$store/ui.json")"
        inotifywait -qq -t 5 -e close_write -e create "$b/$store" || true
        n=$((n + 1))
    done
    echo "B reloaded: $(cat "$b/$store/ui.json")"
    grep -q light "$b/$store/ui.json"
) &
panel=$!

echo '{"theme":"light","font":12}' > "$a/$store/ui.json"   # machine A edits
wait $panel
