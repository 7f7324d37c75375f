#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# src/deps.sh PACKAGE... - what `make deps` and `make deps-build` run: as
# root, installs the Debian packages of the list that are missing; as a
# normal user, prints the apt-get line to run instead (exit 1).
#
# Another apt-get or dpkg at work (apt-daily and unattended-upgrades on a
# fresh machine) is waited for, up to APT_LOCK_TIMEOUT seconds (300):
# apt-get install waits for dpkg's lock by itself with DPkg::Lock::Timeout,
# but apt-get update's lists lock and the download cache's lock fail at once
# (apt 2.6), so a run that failed on a lock is retried until the deadline.
set -u
timeout=${APT_LOCK_TIMEOUT:-300}
lockopt="-o DPkg::Lock::Timeout=$timeout"

missing=
for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages; run as root:"
    echo "  apt-get $lockopt update && apt-get $lockopt install -y --no-install-recommends$missing"
    exit 1
fi

# apt-get ARGS... with the lock wait, retried while it fails on a lock.
apt_get() {
    deadline=$(($(date +%s) + timeout))
    err=$(mktemp) || exit 1
    while :; do
        DEBIAN_FRONTEND=noninteractive apt-get $lockopt "$@" 2>"$err"
        rc=$?
        if [ $rc = 0 ] || ! grep -q 'Could not get lock' "$err" || [ "$(date +%s)" -ge $deadline ]; then
            cat "$err" >&2
            rm -f "$err"
            return $rc
        fi
        echo "deps: $(grep -m 1 'Could not get lock' "$err" | sed 's/^E: //'); waiting for it"
        sleep 5
    done
}

echo "deps: installing$missing"
case " $missing " in
*" postfix "*) echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections ;;
esac
apt_get update -qq && apt_get install -y -qq --no-install-recommends $missing
