#!/bin/bash
# Remove Loadwatch from a gateway.
#
#   uninstall.sh [--purge] [--root DIR] [--prefix DIR]
#
# Stops and disables the service and removes the software (/opt/loadwatch) and the unit.
# The config (/etc/loadwatch, with its certificates and secrets), the learned state and
# unsent messages (/var/lib/loadwatch) and the loadwatch user are kept, so a reinstall
# carries on where it stopped; --purge removes them too (the outbox's unsent alerts are
# lost). Paths and --root work as in install.sh (LOADWATCH_ROOT, LOADWATCH_PREFIX,
# LOADWATCH_ETC, LOADWATCH_STATE, LOADWATCH_UNIT_DIR, LOADWATCH_USER).
set -euo pipefail

ROOT=${LOADWATCH_ROOT:-}
PREFIX=${LOADWATCH_PREFIX:-/opt/loadwatch}
ETC=${LOADWATCH_ETC:-/etc/loadwatch}
STATE=${LOADWATCH_STATE:-/var/lib/loadwatch}
UNIT_DIR=${LOADWATCH_UNIT_DIR:-/etc/systemd/system}
SVC_USER=${LOADWATCH_USER:-loadwatch}
PURGE=0

say() { echo "loadwatch-uninstall: $*"; }
die() { echo "loadwatch-uninstall: error: $*" >&2; exit "${2:-1}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1; shift ;;
        --root) ROOT=${2:?}; shift 2 ;;
        --prefix) PREFIX=${2:?}; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
        *) die "unknown option $1 (see --help)" 2 ;;
    esac
done
[ -z "$ROOT" ] || ROOT=$(cd "$ROOT" && pwd) || die "--root $ROOT does not exist" 2
[ "$ROOT" != / ] || ROOT=""
[ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || die "run as root (sudo $0 ...)" 2
R() { printf '%s%s' "$ROOT" "$1"; }

# Refuse paths that would make rm -rf dangerous (an empty or root variable).
for p in "$PREFIX" "$ETC" "$STATE"; do
    case "$p" in /?*/?*) ;; *) die "refusing to remove suspicious path '$p'" 2 ;; esac
done

if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    # stop waits for the agent to save its state and flush the outbox (TimeoutStopSec).
    systemctl disable --now loadwatch.service 2>/dev/null || true
    say "stopped and disabled loadwatch.service"
else
    say "systemd is not running here (or --root): skipping systemctl"
fi
if [ -e "$(R "$UNIT_DIR")/loadwatch.service" ]; then
    rm -f "$(R "$UNIT_DIR")/loadwatch.service"; say "removed $UNIT_DIR/loadwatch.service"
    if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
if [ -e "$(R "$PREFIX")" ]; then rm -rf "$(R "$PREFIX")"; say "removed $PREFIX"; fi

if [ "$PURGE" = 0 ]; then
    say "kept $ETC (config, certificates, secrets), $STATE (state, unsent messages) and user $SVC_USER"
    say "remove them too with: $0 --purge"
    exit 0
fi
for p in "$ETC" "$STATE"; do
    if [ -e "$(R "$p")" ]; then rm -rf "$(R "$p")"; say "removed $p"; fi
done
if [ -f "$(R /etc/passwd)" ] && awk -F: -v n="$SVC_USER" '$1 == n { f = 1 } END { exit !f }' "$(R /etc/passwd)"; then
    P=(); [ -z "$ROOT" ] || P=(--prefix "$ROOT")
    userdel "${P[@]}" "$SVC_USER"; say "removed user $SVC_USER"
    # userdel drops the user's own group unless USERGROUPS_ENAB is off.
    if awk -F: -v n="$SVC_USER" '$1 == n { f = 1 } END { exit !f }' "$(R /etc/group)"; then
        groupdel "${P[@]}" "$SVC_USER" || true
    fi
fi
say "Loadwatch is purged"
