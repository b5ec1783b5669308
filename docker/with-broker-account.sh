#!/bin/sh
# Runs a command logged in to the broker as ACCOUNT, with the password make-site.sh generated:
#   with-broker-account.sh ACCOUNT COMMAND [ARG...]
# (sets POSERUN__BROKER__USERNAME and POSERUN__BROKER__PASSWORD; CREDENTIALS names the file,
# default /site/credentials.json).
set -eu
account="$1"
shift
POSERUN__BROKER__USERNAME="$account"
POSERUN__BROKER__PASSWORD="$(python3 - "${CREDENTIALS:-/site/credentials.json}" "$account" <<'PY'
import json, sys
accounts = json.load(open(sys.argv[1]))["accounts"]
print(next(a["password"] for a in accounts if a["user"] == sys.argv[2]))
PY
)"
export POSERUN__BROKER__USERNAME POSERUN__BROKER__PASSWORD
exec "$@"
