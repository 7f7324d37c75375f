/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * migrate.h - schema migrations. The numbered files in sql/ are compiled
 * into the binary (src/gen-migrations.sh); `rateguard migrate` applies
 * those not yet recorded in the `rateguard_schema` table, in order.
 */
#ifndef RG_MIGRATE_H
#define RG_MIGRATE_H

#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>

struct migration {
    unsigned version;
    const char *name;   /* file name without .sql */
    const char *sql;    /* statements, each ending with ';' at end of line */
};

extern const struct migration migrations[];
extern const unsigned migrations_count;

/* Apply every missing migration. Safe to run twice and concurrently (a
 * named lock serialises runs). Prints one line per applied migration to
 * the log. Returns false with a reason in err. */
bool migrate_apply(MYSQL *db, unsigned *applied, char *err, size_t errsize);

/* Highest migration version recorded in the database, 0 when none. */
bool migrate_current_version(MYSQL *db, unsigned *version, char *err, size_t errsize);

#endif
