#!/bin/sh
# cursor-feed.sh — a shared cursor feed: mount A publishes cursor positions
# in one file on the channel @cursors:FILE, mount B follows them with tail -f
# (as conat scopes cursors per file; the file path is name-encoded).
#
#   cursor-feed.sh MOUNT_A MOUNT_B [SCOPE] [FILE]
#
# Prints what B received; exits 0 once all three positions arrived.
set -eu
a=$1 b=$2 scope=${3:-project-demo} file=${4:-doc%2Fmain.tex}
chan="@cursors:$file"
mkdir -p "$a/$scope"
n=0; until [ -d "$b/$scope" ] || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
touch "$b/$scope/$chan"                  # B subscribes to the channel
out=$(mktemp)
tail -n +1 -f -s 0.1 "$b/$scope/$chan" > "$out" &
follower=$!
for line in 3 7 12; do
    echo "{\"user\":\"alice\",\"line\":$line}" >> "$a/$scope/$chan"
done
n=0; until [ "$(wc -l < "$out")" -ge 3 ] || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
kill $follower
cat "$out"
lines=$(wc -l < "$out"); rm -f "$out"
[ "$lines" -ge 3 ]
