#!/bin/bash
# Build the offline install bundle for Loadwatch, on a machine with internet access.
#
#   deploy/build-bundle.sh [--python-version X.Y] [--platform TAG] [--out DIR]
#                          [--source DIR] [--python PY] [--find-links DIR] [--offline]
#                          [--no-build-isolation]
#
# Writes DIR/loadwatch-<version>-py<X.Y>-<arch>.tar.gz (DIR defaults to ./dist) holding:
#   wheels/         Loadwatch and every runtime dependency as wheels, plus pip itself (so a
#                   gateway needs neither internet nor Debian's python3-venv/python3-pip)
#   install.sh uninstall.sh
#   systemd/loadwatch.service
#   config/loadwatch.example.toml
#   mosquitto/      broker example (TLS listener, client certificates, ACL) and mkcert.sh
#   MANIFEST        version, target Python and platform, build time, wheel checksums
#   SHA256SUMS      checksums of every file (install.sh checks them)
#
# --python-version and --platform choose the gateway's interpreter and architecture (pip
# tags, e.g. 3.11 and manylinux2014_aarch64 for a Raspberry Pi 4 on 64-bit Raspberry Pi OS
# bookworm); by default the bundle is for this machine's python3 and architecture. Only
# binary wheels are accepted, so nothing is ever compiled on a gateway.
# --find-links adds a folder of wheels to look in; with --offline nothing else is used.
# --no-build-isolation builds Loadwatch's wheel with the setuptools and wheel that PY
# already has (faster, and needs no index for them) instead of a fresh build environment.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$HERE/.." && pwd)
OUT=./dist
PYVER=""
PLATFORM=""
PYTHON=""
FIND_LINKS=()
OFFLINE=0
ISOLATION=()

die() { echo "build-bundle.sh: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) PYVER=${2:?}; shift 2 ;;
        --platform) PLATFORM=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --source) SOURCE=$(cd "${2:?}" && pwd); shift 2 ;;
        --python) PYTHON=${2:?}; shift 2 ;;
        --find-links) FIND_LINKS+=(--find-links "$(cd "${2:?}" && pwd)"); shift 2 ;;
        --offline) OFFLINE=1; shift ;;
        --no-build-isolation) ISOLATION=(--no-build-isolation); shift ;;
        -h|--help) usage ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

# The interpreter that runs pip here: the project's venv if there is one (it has a recent
# pip), else python3. It does not have to match the gateway's Python.
if [ -z "$PYTHON" ]; then
    if [ -x "$SOURCE/.venv/bin/python" ]; then PYTHON=$SOURCE/.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (apt-get install python3-pip)"
[ -n "$PYVER" ] || PYVER=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$PYVER" in [0-9].[0-9]|[0-9].[0-9][0-9]) ;; *) die "--python-version wants X.Y, not $PYVER" ;; esac
if [ -n "$PLATFORM" ]; then
    ARCH=$(printf '%s' "$PLATFORM" | sed -E 's/^(many|musl)linux[0-9_]*_//; s/^linux_//')
else
    ARCH=$(uname -m)
fi
[ "$OFFLINE" = 0 ] || [ ${#FIND_LINKS[@]} -gt 0 ] || die "--offline needs --find-links DIR"
[ -f "$SOURCE/setup.cfg" ] || die "$SOURCE is not the Loadwatch source tree (no setup.cfg)"
[ ${#ISOLATION[@]} = 0 ] || "$PYTHON" -c 'import setuptools, wheel' >/dev/null 2>&1 ||
    die "--no-build-isolation builds with $PYTHON's own setuptools and wheel, and it has no wheel package: pip install wheel into it, or drop the option"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PIP=("$PYTHON" -m pip --disable-pip-version-check)
PIP_SRC=("${FIND_LINKS[@]}")
[ "$OFFLINE" = 0 ] || PIP_SRC+=(--no-index)

# 1. Loadwatch's own wheel, built from a clean copy so the source tree gets no build/ or
#    egg-info litter and nothing from a developer's venv or caches slips in.
echo "building the Loadwatch wheel from $SOURCE"
mkdir -p "$WORK/src" "$WORK/wheels"
tar -C "$SOURCE" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude=.hypothesis --exclude=./tests --exclude=./bench . |
    tar -C "$WORK/src" -xf -
# (setuptools' chatter is kept in a log and shown only when the build fails)
"${PIP[@]}" wheel -q --no-deps "${ISOLATION[@]}" "${PIP_SRC[@]}" -w "$WORK/wheels" "$WORK/src" \
    >"$WORK/wheel.log" 2>&1 || true
WHEEL=$(ls "$WORK"/wheels/loadwatch-*.whl 2>/dev/null | head -1) || true  # none: say why below
[ -n "$WHEEL" ] || { cat "$WORK/wheel.log" >&2; die "building the Loadwatch wheel failed"; }
VERSION=$(basename "$WHEEL" | cut -d- -f2)

# 2. Its requirements with the environment markers evaluated for the *gateway's* Python
#    (pip download would evaluate them for this machine's, and e.g. drop tomli for 3.10).
mapfile -t REQS < <("$PYTHON" - "$WHEEL" "$PYVER" <<'EOF'
import sys, zipfile
from email.parser import Parser
from pip._vendor.packaging.requirements import Requirement

wheel, pyver = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
env = {"python_version": pyver, "python_full_version": pyver + ".0",
       "implementation_name": "cpython", "platform_python_implementation": "CPython",
       "sys_platform": "linux", "os_name": "posix", "platform_system": "Linux", "extra": ""}
for line in msg.get_all("Requires-Dist") or []:
    req = Requirement(line)
    if req.marker is None or req.marker.evaluate(env):
        req.marker = None
        print(str(req))
EOF
)
echo "dependencies for Python $PYVER: ${REQS[*]}"

# 3. Binary wheels of the dependencies and of pip for the target interpreter/platform.
TARGET=(--only-binary=:all: --python-version "$PYVER" --implementation cp)
[ -z "$PLATFORM" ] || TARGET+=(--platform "$PLATFORM")
"${PIP[@]}" download -q "${PIP_SRC[@]}" "${TARGET[@]}" -d "$WORK/wheels" "${REQS[@]}" pip 2>&1 |
    grep -v "is ignored: it is neither a file nor a directory" >&2 || true
for req in "${REQS[@]}" pip; do
    name=$(printf '%s' "$req" | sed -E 's/[^A-Za-z0-9_.-].*$//; s/[-.]/_/g')
    ls "$WORK"/wheels/ | cut -d- -f1 | tr 'A-Z.' 'a-z_' | grep -qx "$(printf '%s' "$name" | tr 'A-Z' 'a-z')" ||
        die "no wheel of $req for Python $PYVER ${PLATFORM:-$(uname -m)} (see pip's message above)"
done

# 4. Prove the wheels alone are enough: resolve the install for the target, offline.
if ! "${PIP[@]}" install -q --dry-run --ignore-installed --no-index --find-links "$WORK/wheels" \
        "${TARGET[@]}" --target "$WORK/dry-run" "loadwatch==$VERSION" >"$WORK/dry-run.log" 2>&1; then
    cat "$WORK/dry-run.log" >&2
    die "the wheels do not install offline for Python $PYVER (see above)"
fi

# 5. Lay out the bundle.
NAME=loadwatch-$VERSION-py$PYVER-$ARCH
B=$WORK/$NAME
mkdir -p "$B/systemd" "$B/config" "$B/mosquitto"
mv "$WORK/wheels" "$B/wheels"
# The deploy files of the tree being bundled (--source), so a release ships its own.
D=$SOURCE/deploy
[ -f "$D/install.sh" ] || D=$HERE
install -m 0755 "$D/install.sh" "$D/uninstall.sh" "$B/"
install -m 0644 "$D/systemd/loadwatch.service" "$B/systemd/"
install -m 0644 "$D/loadwatch.example.toml" "$B/config/"
install -m 0644 "$D"/mosquitto/* "$B/mosquitto/"
install -m 0755 "$D/mkcert.sh" "$B/mosquitto/"
{
    echo "name=loadwatch"
    echo "version=$VERSION"
    echo "python=$PYVER"
    echo "platform=${PLATFORM:-local-$ARCH}"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "wheel=$(basename "$WHEEL")"
    (cd "$B/wheels" && sha256sum -- *.whl | sed 's/^/sha256=/')
} >"$B/MANIFEST"
(cd "$B" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)

mkdir -p "$OUT"
ARCHIVE=$(cd "$OUT" && pwd)/$NAME.tar.gz
tar -C "$WORK" --owner=0 --group=0 --numeric-owner -czf "$ARCHIVE" "$NAME"
SIZE=$(stat -c %s "$ARCHIVE")
echo "bundle: $ARCHIVE ($SIZE bytes, $(( (SIZE + 1023) / 1024 )) KiB)"
echo "wheels: $(cd "$B/wheels" && ls | tr '\n' ' ')"
