#!/bin/bash
# Install or upgrade Loadwatch on a gateway from an offline bundle (no network needed).
#
#   install.sh [--bundle FILE] [--config FILE] [--upgrade] [--start-check SECONDS]
#              [--root DIR] [--prefix DIR] [--force-python]
#
#   --bundle FILE   the bundle from deploy/build-bundle.sh (default: the unpacked bundle
#                   this script sits in)
#   --config FILE   install FILE as /etc/loadwatch/loadwatch.toml, after the new version
#                   has validated it (the old one is kept as loadwatch.toml.bak)
#   --upgrade       switch an installed gateway to the bundle's version: installed side by
#                   side, config and state kept, rolled back if the new version rejects the
#                   config or does not stay up after its first start
#   --start-check S how long a (re)started service must stay up to count as started
#                   (default 15 s with systemd). Without systemd the agent is started in the
#                   foreground for S seconds instead, only when this option is given.
#   --root DIR      install under DIR instead of / (tests, image staging); also LOADWATCH_ROOT
#   --prefix DIR    software location (default /opt/loadwatch); also LOADWATCH_PREFIX
#   --force-python  install although the bundle was built for another Python version
#
# Other paths: LOADWATCH_ETC (/etc/loadwatch), LOADWATCH_STATE (/var/lib/loadwatch),
# LOADWATCH_UNIT_DIR (/etc/systemd/system), LOADWATCH_USER (loadwatch), LOADWATCH_PYTHON
# (python3). All are paths on the target system; --root is prepended to each.
#
# Layout:
#   /opt/loadwatch/releases/<version>-<build>/   one virtual environment per release
#   /opt/loadwatch/current -> releases/...       what the service runs
#   /opt/loadwatch/previous -> releases/...      the release before the last upgrade
#   /etc/loadwatch/loadwatch.toml                0640 root:loadwatch
#   /etc/loadwatch/secrets/                      0750 root:loadwatch, files 0640 (keys, passwords)
#   /var/lib/loadwatch/                          0750 loadwatch:loadwatch (outbox, state)
#
# Idempotent: running it again with the same bundle and config changes nothing.
# Exit codes: 0 done, 1 failed (an upgrade that failed has been rolled back), 2 bad usage.
set -euo pipefail
umask 022

ROOT=${LOADWATCH_ROOT:-}
PREFIX=${LOADWATCH_PREFIX:-/opt/loadwatch}
ETC=${LOADWATCH_ETC:-/etc/loadwatch}
STATE=${LOADWATCH_STATE:-/var/lib/loadwatch}
UNIT_DIR=${LOADWATCH_UNIT_DIR:-/etc/systemd/system}
SVC_USER=${LOADWATCH_USER:-loadwatch}
PYTHON=${LOADWATCH_PYTHON:-python3}
BUNDLE=""
CONFIG=""
UPGRADE=0
START_CHECK=""
FORCE_PYTHON=0

say() { echo "loadwatch-install: $*"; }
die() { echo "loadwatch-install: error: $*" >&2; exit "${2:-1}"; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) BUNDLE=${2:?--bundle needs a file}; shift 2 ;;
        --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
        --upgrade) UPGRADE=1; shift ;;
        --start-check) START_CHECK=${2:?--start-check needs seconds}; shift 2 ;;
        --root) ROOT=${2:?}; shift 2 ;;
        --prefix) PREFIX=${2:?}; shift 2 ;;
        --force-python) FORCE_PYTHON=1; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
done
case "$START_CHECK" in ''|[0-9]|[0-9][0-9]|[0-9][0-9][0-9]) ;; *) die "--start-check wants whole seconds" 2 ;; esac
[ -z "$ROOT" ] || ROOT=$(cd "$ROOT" && pwd) || die "--root $ROOT does not exist" 2
[ "$ROOT" != / ] || ROOT=""
[ -z "$CONFIG" ] || [ -f "$CONFIG" ] || die "config $CONFIG does not exist" 2
[ -z "$CONFIG" ] || CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")
IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1
[ "$IS_ROOT" = 1 ] || [ -n "$ROOT" ] || die "run as root (sudo $0 ...)" 2

# pip must see nothing but the bundle: no index, no proxy, no user or site pip.conf, no
# PIP_* settings of the machine (a gateway image may carry a mirror that is unreachable).
while read -r var; do unset "$var"; done < <(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p')
export PIP_CONFIG_FILE=/dev/null PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

R() { printf '%s%s' "$ROOT" "$1"; }   # a target path, as seen from here

# ----------------------------------------------------------------- the bundle
WORK=$(mktemp -d)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
if [ -n "$BUNDLE" ]; then
    [ -f "$BUNDLE" ] || die "bundle $BUNDLE does not exist" 2
    tar -C "$WORK" -xzf "$BUNDLE" || die "$BUNDLE is not a readable .tar.gz bundle"
    B=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'loadwatch-*' | head -1)
else
    B=$(cd "$(dirname "$0")" && pwd)
fi
[ -n "$B" ] && [ -f "$B/MANIFEST" ] && [ -d "$B/wheels" ] ||
    die "no bundle: pass --bundle loadwatch-<version>-....tar.gz (made by build-bundle.sh)" 2
(cd "$B" && sha256sum --quiet --strict -c SHA256SUMS) ||
    die "bundle checksums do not match: the copy is damaged, copy it again"
manifest() { sed -n "s/^$1=//p" "$B/MANIFEST" | head -1; }
VERSION=$(manifest version)
BUNDLE_PY=$(manifest python)
# A release is a version plus the exact wheel it was built from, so a rebuilt bundle of
# the same version installs beside the old one instead of over the running service.
BUILD=$(sed -n "s/^sha256=\([0-9a-f]*\)  $(manifest wheel)\$/\1/p" "$B/MANIFEST" | cut -c1-8)
[ -n "$VERSION" ] && [ -n "$BUILD" ] || die "bundle MANIFEST is incomplete"
RELEASE=$VERSION-$BUILD
PIP_WHEEL=$(ls "$B"/wheels/pip-*.whl 2>/dev/null | head -1) || true  # none: say so below
[ -n "$PIP_WHEEL" ] || die "bundle has no pip wheel"

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: apt-get install python3 (3.10 or newer)"
HAVE_PY=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$HAVE_PY" != "$BUNDLE_PY" ]; then
    [ "$FORCE_PYTHON" = 1 ] || die "bundle is for Python $BUNDLE_PY, this gateway has $HAVE_PY: build one with deploy/build-bundle.sh --python-version $HAVE_PY (or pass --force-python)"
    say "warning: bundle built for Python $BUNDLE_PY, installing for $HAVE_PY (--force-python)"
fi

PREFIX_R=$(R "$PREFIX")
CUR_LINK=$PREFIX_R/current
CURRENT=""; [ -L "$CUR_LINK" ] && CURRENT=$(basename "$(readlink "$CUR_LINK")")
if [ -n "$CURRENT" ] && [ "$CURRENT" != "$RELEASE" ] && [ "$UPGRADE" = 0 ]; then
    die "Loadwatch $CURRENT is installed; to switch to $RELEASE run again with --upgrade" 2
fi
[ -n "$CURRENT" ] || [ "$UPGRADE" = 0 ] || say "nothing installed yet: --upgrade installs afresh"

# ----------------------------------------------------------------- service user
# With --root the user is created in DIR/etc/passwd (useradd --prefix) when that file
# exists; a bare test root without one gets no user and no ownership changes.
CHANGED=0
note() { say "$*"; CHANGED=1; }
lookup() { [ -f "$(R "/etc/$1")" ] && awk -F: -v n="$2" '$1 == n { print $3; exit }' "$(R "/etc/$1")"; }
P=(); [ -z "$ROOT" ] || P=(--prefix "$ROOT")
OWN=1
if [ "$IS_ROOT" = 0 ] || [ ! -f "$(R /etc/passwd)" ]; then
    OWN=0
    say "no $(R /etc/passwd) (or not root): skipping the service user and file ownership"
else
    if [ -z "$(lookup group dialout)" ]; then
        groupadd "${P[@]}" --system dialout; note "created group dialout"
    fi
    if [ -z "$(lookup passwd "$SVC_USER")" ]; then
        useradd "${P[@]}" --system --user-group --groups dialout --home-dir "$STATE" \
            --no-create-home --shell /usr/sbin/nologin --comment "Loadwatch agent" "$SVC_USER"
        note "created system user $SVC_USER (groups: $SVC_USER, dialout)"
    elif ! awk -F: -v u="$SVC_USER" '$1 == "dialout" { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) f = 1 } END { exit !f }' "$(R /etc/group)"; then
        usermod "${P[@]}" -a -G dialout "$SVC_USER"; note "added $SVC_USER to group dialout"
    fi
    SVC_UID=$(lookup passwd "$SVC_USER"); SVC_GID=$(lookup group "$SVC_USER")
    [ -n "$SVC_UID" ] && [ -n "$SVC_GID" ] || die "user or group $SVC_USER is missing after useradd"
fi

# ensure_dir PATH MODE OWNER(uid:gid, "svc" or "root") -- only touches what differs.
own_of() { case "$1" in svc) echo "$SVC_UID:$SVC_GID" ;; root) echo "0:${SVC_GID:-0}" ;; *) echo "0:0" ;; esac; }
fix() {  # fix PATH MODE OWNER
    local p=$1 mode=$2 want
    if [ "$(stat -c %a "$p")" != "${mode#0}" ]; then chmod "$mode" "$p"; note "mode $mode on $p"; fi
    [ "$OWN" = 1 ] || return 0
    want=$(own_of "$3")
    if [ "$(stat -c %u:%g "$p")" != "$want" ]; then chown -h "$want" "$p"; note "owner $want on $p"; fi
}
ensure_dir() {
    if [ ! -d "$1" ]; then
        mkdir -p "$1"; fix "$1" "$2" "$3" >/dev/null; note "created $1 ($2 $(stat -c %U:%G "$1"))"
    fi
    fix "$1" "$2" "$3"
}
# put SRC DEST MODE OWNER: copy only when the content differs.
put() {
    if [ ! -f "$2" ] || ! cmp -s "$1" "$2"; then
        cp "$1" "$2.tmp.$$" && fix "$2.tmp.$$" "$3" "$4" >/dev/null && mv -f "$2.tmp.$$" "$2"
        note "wrote $2"
    fi
    fix "$2" "$3" "$4"
}

ETC_R=$(R "$ETC"); STATE_R=$(R "$STATE"); PREFIX_R=$(R "$PREFIX"); UNIT_R=$(R "$UNIT_DIR")
ensure_dir "$ETC_R" 0750 root
ensure_dir "$ETC_R/secrets" 0750 root
while IFS= read -r -d '' f; do fix "$f" 0640 root; done < <(find "$ETC_R/secrets" -mindepth 1 -maxdepth 1 -type f -print0)
ensure_dir "$STATE_R" 0750 svc
ensure_dir "$PREFIX_R/releases" 0755 system

# ----------------------------------------------------------------- the release
REL=$PREFIX_R/releases/$RELEASE
STAMP=$(cd "$B/wheels" && sha256sum -- *.whl)
NEW_RELEASE=0
if [ -f "$REL/.loadwatch-release" ] && [ "$(cat "$REL/.loadwatch-release")" = "$STAMP" ]; then
    :
else
    [ ! -e "$REL" ] || rm -rf "$REL"   # an interrupted earlier attempt
    say "installing Loadwatch $VERSION (build $BUILD) into $REL"
    "$PYTHON" -m venv --without-pip "$REL" || { rm -rf "$REL"; die "could not create a virtual environment with $PYTHON"; }
    if ! "$REL/bin/python" "$PIP_WHEEL/pip" install --quiet --no-index --no-cache-dir \
            --find-links "$B/wheels" --only-binary=:all: --no-warn-script-location \
            "loadwatch==$VERSION"; then
        rm -rf "$REL"; die "installing the wheels failed (nothing was changed)"
    fi
    printf '%s\n' "$STAMP" >"$REL/.loadwatch-release"
    NEW_RELEASE=1; CHANGED=1
fi

discard_new() { if [ "$NEW_RELEASE" = 1 ]; then rm -rf "$REL"; fi; }

# ----------------------------------------------------------------- config
CONF=$ETC_R/loadwatch.toml
# check_config RELEASE_DIR FILE: validate as the service would see it (as the service user
# on a real system, so an unreadable key file is found now, not at 3 a.m.).
check_config() {
    local as=()
    if [ -z "$ROOT" ] && [ "$IS_ROOT" = 1 ] && command -v runuser >/dev/null 2>&1; then
        as=(runuser -u "$SVC_USER" --)
    fi
    # From /, so the service user never trips over an unreadable working directory.
    (cd / && "${as[@]}" "$1/bin/loadwatch" check-config "$2")
}
put "$B/config/loadwatch.example.toml" "$ETC_R/loadwatch.toml.example" 0640 root
STAGED=""
if [ -n "$CONFIG" ]; then
    if [ -f "$CONF" ] && cmp -s "$CONFIG" "$CONF"; then
        : # already in place
    else
        # Staged next to the real one, so relative paths in it resolve the same way.
        STAGED=$ETC_R/.loadwatch.toml.new
        cp "$CONFIG" "$STAGED"; fix "$STAGED" 0640 root >/dev/null
    fi
fi
TO_CHECK=${STAGED:-$CONF}
if [ ! -f "$TO_CHECK" ]; then
    discard_new
    [ -n "$CURRENT" ] || ln -sfn "releases/$RELEASE" "$CUR_LINK"
    say "Loadwatch $VERSION is installed, but there is no config yet:"
    say "  cp $ETC/loadwatch.toml.example /root/loadwatch.toml; edit it; then run"
    say "  $0 --bundle <bundle> --config /root/loadwatch.toml"
    exit 0
fi
say "checking $TO_CHECK with Loadwatch $VERSION"
if ! check_config "$REL" "$TO_CHECK"; then
    [ -z "$STAGED" ] || rm -f "$STAGED"
    discard_new
    if [ -n "$CURRENT" ] && [ "$CURRENT" != "$RELEASE" ]; then
        die "Loadwatch $VERSION rejects the config (above): upgrade refused, $CURRENT stays in place and keeps running"
    fi
    die "the config is not valid (above): fix it and run again"
fi
if [ -n "$STAGED" ]; then
    if [ -f "$CONF" ]; then cp -p "$CONF" "$CONF.bak"; fi
    mv -f "$STAGED" "$CONF"; note "installed config $CONF"
fi
fix "$CONF" 0640 root

# ----------------------------------------------------------------- systemd unit
UNIT_SRC=$WORK/loadwatch.service
sed -e "s,/opt/loadwatch,$PREFIX,g" -e "s,/etc/loadwatch,$ETC,g" \
    -e "s,/var/lib/loadwatch,$STATE,g" -e "s,^User=loadwatch,User=$SVC_USER," \
    -e "s,^Group=loadwatch,Group=$SVC_USER," "$B/systemd/loadwatch.service" >"$UNIT_SRC"
ensure_dir "$UNIT_R" 0755 system
UNIT_OLD=$WORK/loadwatch.service.old   # for a rollback
[ ! -f "$UNIT_R/loadwatch.service" ] || cp -p "$UNIT_R/loadwatch.service" "$UNIT_OLD"
UNIT_CHANGED=$CHANGED; CHANGED=0
put "$UNIT_SRC" "$UNIT_R/loadwatch.service" 0644 system
UNIT_WRITTEN=$CHANGED; CHANGED=$((UNIT_CHANGED | CHANGED))

# ----------------------------------------------------------------- switch and start
systemd_up() { [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# started: 0 when the (re)started agent stays up for the check window.
started() {
    local secs=$1 t=0 state sub restarts
    if systemd_up; then
        systemctl restart loadwatch.service || return 1
        while [ "$t" -lt "$secs" ]; do
            sleep 1; t=$((t + 1))
            state=$(systemctl show -p ActiveState --value loadwatch.service)
            sub=$(systemctl show -p SubState --value loadwatch.service)
            restarts=$(systemctl show -p NRestarts --value loadwatch.service)
            # A crash shows as auto-restart (RestartSec) before NRestarts counts it.
            if [ "$state" = failed ] || [ "$sub" = auto-restart ] || [ "${restarts:-0}" != 0 ]; then
                return 1
            fi
        done
        [ "$(systemctl show -p ActiveState --value loadwatch.service)" = active ]
    else
        # No service manager: run the agent in the foreground for the window, as the
        # service user. Still running at the end (timeout's 124) means it started.
        local as=() rc=0
        if [ -z "$ROOT" ] && [ "$IS_ROOT" = 1 ]; then as=(runuser -u "$SVC_USER" --); fi
        say "no systemd: starting the agent in the foreground for ${secs}s"
        (cd / && timeout -s TERM -k 10 "$secs" "${as[@]}" "$(R "$PREFIX")/current/bin/loadwatch" \
            run --config "$CONF") || rc=$?
        [ "$rc" = 124 ]
    fi
}

switch_to() {  # atomic: a new symlink renamed over the old one
    ln -sfn "releases/$1" "$PREFIX_R/.current.new" && mv -T -f "$PREFIX_R/.current.new" "$CUR_LINK"
}

SWITCHED=0
OLD_PREVIOUS=""; [ -L "$PREFIX_R/previous" ] && OLD_PREVIOUS=$(readlink "$PREFIX_R/previous")
# rollback: back to the release that ran before, with its config, unit and "previous" link.
rollback() {
    switch_to "$CURRENT"
    [ ! -f "$CONF.bak" ] || [ -z "$STAGED" ] || cp -p "$CONF.bak" "$CONF"
    if [ -n "$OLD_PREVIOUS" ]; then
        ln -sfn "$OLD_PREVIOUS" "$PREFIX_R/.previous.new" && mv -T -f "$PREFIX_R/.previous.new" "$PREFIX_R/previous"
    else
        rm -f "$PREFIX_R/previous"
    fi
    if [ "$UNIT_WRITTEN" = 1 ]; then
        if [ -f "$UNIT_OLD" ]; then cp -p "$UNIT_OLD" "$UNIT_R/loadwatch.service"; else rm -f "$UNIT_R/loadwatch.service"; fi
        if systemd_up; then systemctl daemon-reload || true; fi
    fi
    rm -rf "$REL"
}
if [ "$CURRENT" != "$RELEASE" ]; then
    if [ -n "$CURRENT" ]; then ln -sfn "releases/$CURRENT" "$PREFIX_R/.previous.new" && mv -T -f "$PREFIX_R/.previous.new" "$PREFIX_R/previous"; fi
    switch_to "$RELEASE"; SWITCHED=1; CHANGED=1
    say "current -> releases/$RELEASE"
fi

if systemd_up; then
    [ "$UNIT_WRITTEN" = 0 ] || systemctl daemon-reload
    systemctl is-enabled --quiet loadwatch.service || { systemctl enable --quiet loadwatch.service; note "enabled loadwatch.service"; }
    if [ "$CHANGED" = 1 ] || ! systemctl is-active --quiet loadwatch.service; then
        WINDOW=${START_CHECK:-15}
        say "starting loadwatch.service (must stay up ${WINDOW}s)"
        if ! started "$WINDOW"; then
            journalctl -u loadwatch.service -n 30 --no-pager >&2 || true
            if [ "$SWITCHED" = 1 ] && [ -n "$CURRENT" ]; then
                rollback
                systemctl restart loadwatch.service || true
                die "Loadwatch $VERSION did not stay up (log above): rolled back to $CURRENT"
            fi
            die "loadwatch.service did not stay up (log above): see journalctl -u loadwatch"
        fi
        say "loadwatch.service is running"
    fi
else
    [ -n "$ROOT" ] && why="installing under --root $ROOT" || why="systemd is not running here"
    say "$why: skipping systemctl (on the gateway: systemctl enable --now loadwatch)"
    if [ -n "$START_CHECK" ] && [ "$CHANGED" = 1 ]; then
        if ! started "$START_CHECK"; then
            if [ "$SWITCHED" = 1 ] && [ -n "$CURRENT" ]; then
                rollback
                die "Loadwatch $VERSION did not stay up for ${START_CHECK}s: rolled back to $CURRENT"
            fi
            die "Loadwatch did not stay up for ${START_CHECK}s"
        fi
        say "the agent stayed up for ${START_CHECK}s"
    fi
fi

# Keep the running release and the one before it; older ones only take space.
for d in "$PREFIX_R"/releases/*; do
    [ -d "$d" ] || continue
    name=$(basename "$d")
    prev=""; [ -L "$PREFIX_R/previous" ] && prev=$(basename "$(readlink "$PREFIX_R/previous")")
    if [ "$name" != "$RELEASE" ] && [ "$name" != "$prev" ]; then rm -rf "$d"; note "removed old release $name"; fi
done

if [ "$CHANGED" = 0 ]; then
    say "Loadwatch $RELEASE is installed and up to date: nothing changed"
else
    say "Loadwatch $RELEASE is installed"
fi
