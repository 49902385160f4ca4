#!/bin/sh
# chat.sh — a chat room in shell over the channel SCOPE/@chat.
#
#   chat.sh MOUNT NICK [SCOPE]
#
# Type lines to send them; every line in the room (yours too) is printed.
# End with Ctrl-D.
set -eu
mnt=$1 nick=$2 scope=${3:-hub}
room="$mnt/$scope/@chat"
mkdir -p "$mnt/$scope"
touch "$room"                              # join: subscribe to the channel
tail -n +1 -f -s 0.2 "$room" &             # print the room
follower=$!
trap 'kill $follower 2>/dev/null' EXIT
while IFS= read -r line; do
    printf '%s: %s\n' "$nick" "$line" >> "$room"
done
