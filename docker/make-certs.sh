#!/bin/sh
# A site CA and the broker's TLS certificate, made with openssl (docs/operations.md#tls).
#
#   docker/make-certs.sh DIR HOSTNAME [IP...]
#
# writes DIR/ca.crt (give it to every client: broker.ca_file, the devices), DIR/ca.key (it signs
# certificates: keep it offline), DIR/broker.crt and DIR/broker.key (mosquitto's certfile and
# keyfile). The certificate names HOSTNAME and each IP, the names clients dial. Run again, with
# ca.key back in DIR, to re-issue the broker's certificate (825 days) with the same CA, so
# clients keep trusting it.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 DIR HOSTNAME [IP...]" >&2
    exit 2
fi
dir=$1
host=$2
shift 2
san="DNS:$host"
for ip in "$@"; do
    san="$san,IP:$ip"
done
mkdir -p "$dir"
umask 077
if [ -f "$dir/ca.crt" ] && [ ! -f "$dir/ca.key" ]; then  # never a new CA by mistake: clients trust the old one
    echo "$0: $dir/ca.crt is there but not $dir/ca.key: put the CA's key back for the re-issue" \
        "(or remove ca.crt to start a new CA, which every client must then be given)" >&2
    exit 2
fi
if [ ! -f "$dir/ca.key" ]; then  # the site CA: EC P-256 (ESP-IDF's mbedTLS takes it), 10 years
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 3650 \
        -subj "/CN=poserun site CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "/CN=$host" \
    -keyout "$dir/broker.key" -out "$dir/broker.csr"
printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" > "$dir/broker.ext"
openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -sha256 \
    -days 825 -extfile "$dir/broker.ext" -out "$dir/broker.crt"
rm -f "$dir/broker.csr" "$dir/broker.ext"
chmod 644 "$dir/ca.crt" "$dir/broker.crt"
echo "$dir: ca.crt, broker.crt and broker.key for $san (ca.key signs: keep it offline)"
