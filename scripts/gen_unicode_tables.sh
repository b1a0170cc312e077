#!/bin/sh
# Regenerates common/unicode_tables.h from the Unicode Character Database.
#   scripts/gen_unicode_tables.sh [UCD_DIR]     (default /usr/share/unicode: apt-get install unicode-data)
set -e
cd "$(dirname "$0")/.."
ucd=${1:-/usr/share/unicode}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -Wall -Wextra -o "$tmp/gen" scripts/gen_unicode_tables.c
"$tmp/gen" "$ucd" > "$tmp/unicode_tables.h"
mv "$tmp/unicode_tables.h" common/unicode_tables.h
echo "wrote common/unicode_tables.h ($(wc -c < common/unicode_tables.h) bytes)"
