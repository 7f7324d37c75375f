#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# gen-migrations.sh - embed sql/NNN_name.sql files into a C source so that
# `rateguard migrate` needs no files at run time. Usage: gen-migrations.sh FILE...
set -eu
echo '/* Generated from the sql/ migrations by src/gen-migrations.sh; do not edit. */'
echo '#include "migrate.h"'
echo 'const struct migration migrations[] = {'
for f in "$@"; do
    base=$(basename "$f" .sql)
    version=$(echo "$base" | sed 's/^0*\([0-9][0-9]*\)_.*/\1/')
    case "$version" in *[!0-9]*|'') echo "bad migration name: $f" >&2; exit 1;; esac
    printf '    {%s, "%s",\n' "$version" "$base"
    # Each line becomes a C string line; backslashes and quotes escaped.
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/     "/' -e 's/$/\\n"/' "$f"
    echo '    },'
done
echo '};'
echo 'const unsigned migrations_count = sizeof(migrations) / sizeof(migrations[0]);'
