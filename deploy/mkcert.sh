#!/bin/sh
# Mint the certificates for a Loadwatch broker with mutual TLS, with openssl only.
#
#   mkcert.sh [-d DIR] [--days N] ca                     a new CA (refuses to replace one)
#   mkcert.sh [-d DIR] [--days N] server [NAME...]       the broker's certificate; SANs are
#                                                        localhost, 127.0.0.1, this host's
#                                                        name and every NAME (a DNS name or
#                                                        an IP address)
#   mkcert.sh [-d DIR] [--days N] gateway SITE GATEWAY   a gateway's client certificate
#   mkcert.sh [-d DIR] [--days N] utility NAME           a utility (reader) client certificate
#
# DIR defaults to ./pki. Files written there:
#   ca.crt ca.key                              keep ca.key off the broker and the gateways
#   server.crt server.key                      for the broker (deploy/mosquitto/)
#   gateways/SITE/GATEWAY.crt .key             copy to the gateway's /etc/loadwatch/
#   utilities/NAME.crt .key                    for the utility's subscribers
#
# How identities map to topics (deploy/mosquitto/acl): the broker takes the client
# certificate's CN as the MQTT username (use_identity_as_username). A gateway's CN is
# "SITE/GATEWAY", exactly the two topic levels of its prefix loadwatch/v1/SITE/GATEWAY, so
# the ACL line `pattern readwrite loadwatch/v1/%u/#` confines each gateway to its own
# prefix; gateway ids only need to be unique within a site, as in the agent's config. A
# utility's CN has no "/" and is listed by name in the ACL.
#
# Keys are ECDSA P-256 (fast on small gateways, supported by Mosquitto and Python's ssl).
set -eu

DIR=./pki
DAYS=825
umask 077

die() { echo "mkcert.sh: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        -d|--dir) [ $# -ge 2 ] || usage; DIR=$2; shift 2 ;;
        --days) [ $# -ge 2 ] || usage; DAYS=$2; shift 2 ;;
        -h|--help) usage ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || usage
WHAT=$1; shift

command -v openssl >/dev/null 2>&1 || die "openssl is not installed (apt-get install openssl)"
mkdir -p "$DIR"

# Topic levels and file names: the agent's own id rule (agent/config.py ID_RE).
check_id() {
    case "$2" in
        ''|[!A-Za-z0-9]*|*[!A-Za-z0-9_.-]*) die "$1 '$2' must be letters, digits, '_', '.', '-'" ;;
    esac
}

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign CN OUTBASE EXTENSIONS: key + CSR + certificate signed by the CA.
sign() {
    cn=$1; out=$2; ext=$3
    [ -f "$DIR/ca.crt" ] && [ -f "$DIR/ca.key" ] || die "no CA in $DIR: run 'mkcert.sh -d $DIR ca' first"
    mkdir -p "$(dirname "$out")"
    newkey "$out.key"
    extfile=$(mktemp); trap 'rm -f "$extfile" "$out.csr"' EXIT
    printf '%s\n' "$ext" >"$extfile"
    # A "/" inside a subject value is escaped for openssl's -subj syntax.
    subj=$(printf '%s' "$cn" | sed 's,/,\\/,g')
    openssl req -new -key "$out.key" -subj "/CN=$subj" -out "$out.csr"
    openssl x509 -req -in "$out.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
        -CAcreateserial -days "$DAYS" -sha256 -extfile "$extfile" -out "$out.crt" 2>/dev/null
    rm -f "$extfile" "$out.csr"; trap - EXIT
    chmod 0644 "$out.crt"; chmod 0600 "$out.key"
    echo "wrote $out.crt and $out.key (CN=$cn)"
}

case "$WHAT" in
    ca)
        [ ! -e "$DIR/ca.key" ] || die "$DIR/ca.key exists: refusing to replace the CA (every certificate it signed would stop working)"
        newkey "$DIR/ca.key"
        openssl req -x509 -new -key "$DIR/ca.key" -subj "/CN=Loadwatch CA" -days "$((DAYS * 4))" \
            -sha256 -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$DIR/ca.crt"
        chmod 0644 "$DIR/ca.crt"
        echo "wrote $DIR/ca.crt and $DIR/ca.key (keep ca.key offline)"
        ;;
    server)
        sans="DNS:localhost,IP:127.0.0.1"
        host=$(hostname 2>/dev/null || true)
        [ -z "$host" ] || [ "$host" = localhost ] || sans="$sans,DNS:$host"
        for name in "$@"; do
            case "$name" in
                *[!0-9.]*) case "$name" in *:*) sans="$sans,IP:$name" ;; *) sans="$sans,DNS:$name" ;; esac ;;
                *) sans="$sans,IP:$name" ;;
            esac
        done
        sign "${1:-${host:-localhost}}" "$DIR/server" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans"
        ;;
    gateway)
        [ $# -eq 2 ] || die "usage: mkcert.sh gateway SITE GATEWAY"
        check_id site "$1"; check_id gateway "$2"
        sign "$1/$2" "$DIR/gateways/$1/$2" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
        ;;
    utility)
        [ $# -eq 1 ] || die "usage: mkcert.sh utility NAME"
        check_id utility "$1"
        sign "$1" "$DIR/utilities/$1" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
        ;;
    *) usage ;;
esac
