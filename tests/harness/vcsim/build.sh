#!/bin/sh
# Builds the vCenter simulator from Debian's govmomi source, offline, with our
# changes applied through `go build -overlay`: every *.patch here (the Fetch fix
# and the strict profile's hooks, one patch per source file) and every file in
# overlay/ (added to the simulator package). Fails loudly when a patch no
# longer applies to the installed source.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTPUT}
gocode=/usr/share/gocode/src/github.com/vmware/govmomi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
json=""
for p in "$here"/*.patch; do
    # The one file a patch changes, e.g. simulator/property_collector.go.
    target=$(sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p")
    if [ -z "$target" ] || [ "$(echo "$target" | wc -l)" -ne 1 ]; then
        echo "build.sh: $(basename "$p") must change exactly one file" >&2
        exit 1
    fi
    patched="$work/$(echo "$target" | tr / _)"
    [ -e "$patched" ] || cp "$gocode/$target" "$patched"
    if ! patch --quiet --forward --reject-file=- "$patched" "$p"; then
        echo "build.sh: $(basename "$p") no longer applies to $gocode/$target;" \
             "update the patch for this govmomi version" >&2
        exit 1
    fi
    case "$json" in *"\"$gocode/$target\""*) ;; *) json="$json\"$gocode/$target\":\"$patched\",";; esac
done
for f in "$here"/overlay/*.go; do
    json="$json\"$gocode/simulator/$(basename "$f")\":\"$f\","
done
printf '{"Replace":{%s}}\n' "${json%,}" > "$work/overlay.json"
mkdir -p "$(dirname "$out")"
cd "$here"
GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="${GOCACHE:-$work/cache}" \
    go build -overlay "$work/overlay.json" -o "$out" .
