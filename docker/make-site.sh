#!/bin/sh
# The broker's accounts for docker/compose.yaml (its "site" service): the ACL and the password
# file Mosquitto reads, and the credentials (one password per account) the other services log
# in with, all generated from the poserun config (docs/operations.md#per-device-access).
# Passwords already in the credentials file are kept, so a restart changes nothing.
#   CONFIG   the poserun config naming the athletes and their gateways (/club/club.yaml)
#   SITE     the directory to fill (/site, a volume Mosquitto mounts at /mosquitto/config/site)
#   OWNER    who must read acl and passwd: the uid Mosquitto runs as (1883 in eclipse-mosquitto:2)
set -eu
CONFIG="${CONFIG:-/club/club.yaml}"
SITE="${SITE:-/site}"
OWNER="${OWNER-1883:1883}"
mkdir -p "$SITE"
poserun access acl -c "$CONFIG" -o "$SITE/acl"
poserun access passwd -c "$CONFIG" -o "$SITE/passwd" --credentials "$SITE/credentials.json"
chmod 0600 "$SITE/acl" "$SITE/passwd" "$SITE/credentials.json"
if [ -n "$OWNER" ]; then
  chown "$OWNER" "$SITE/acl" "$SITE/passwd"
fi
