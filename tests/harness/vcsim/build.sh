#!/bin/sh
# Builds the vCenter simulator from Debian's govmomi source, offline, with
# our fix to PropertyCollector.Fetch applied through `go build -overlay`.
# Fails loudly when the patch no longer applies to the installed source.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTPUT}
src=/usr/share/gocode/src/github.com/vmware/govmomi/simulator/property_collector.go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! patch --quiet --forward --reject-file=- -o "$work/property_collector.go" "$src" \
        "$here/fetch-empty-property.patch"; then
    echo "build.sh: fetch-empty-property.patch no longer applies to $src;" \
         "update the patch for this govmomi version" >&2
    exit 1
fi
printf '{"Replace":{"%s":"%s"}}\n' "$src" "$work/property_collector.go" > "$work/overlay.json"
mkdir -p "$(dirname "$out")"
cd "$here"
GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="${GOCACHE:-$work/cache}" \
    go build -overlay "$work/overlay.json" -o "$out" .
