/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * geo.h - the country database of the hijacked-account signals (issue
 * 29): one MaxMind-format (MMDB) country database, opened and checked
 * once, then asked for the country of a client address. It owns the
 * opened database (libmaxminddb's mapping of the file) and nothing else;
 * which file, when to reopen it and what to count are the caller's.
 *
 * A bad file is refused by geo_open (at `rateguard -t` and at a reload),
 * never at lookup time: geo_open walks every search-tree node a lookup
 * can reach and reads, for every data record the tree points to, the two
 * values geo_country reads (country.iso_code, registered_country.iso_code).
 * So once a database is open no lookup on it can fail, as long as the
 * file is not rewritten in place: replace it by renaming a new file over
 * it (geoipupdate does) and reload. An in-place rewrite changes what the
 * mapping shows; a lookup error is then counted (geo_errors), and a file
 * made shorter under the mapping kills the process with SIGBUS.
 *
 * What the checks cannot see: a damaged byte inside a value that still
 * decodes (a country code that became another valid code, a key name
 * that no longer reads "country", which makes that record countryless).
 * Such a record gives another answer or none, never a crash; t/17-geo.c
 * flips every byte of a test database's data section one at a time and
 * measures it.
 *
 * Use after fork is fine (the mapping is shared, read only); the error
 * counter is then per process.
 */
#ifndef RG_GEO_H
#define RG_GEO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct geo;   /* opaque: one opened country database */

/* Open and check a MaxMind-format country database. NULL with the reason
 * in err, which starts with the path:
 *   "PATH: cannot open: No such file or directory" (the errno's text; a
 *       directory is "Is a directory"),
 *   "PATH: not a MaxMind database (...)" (empty, or no valid metadata: a
 *       truncated file says this too, its metadata being at the end),
 *   "PATH: database type 'GeoLite2-ASN' has no country data" (the
 *       metadata's database_type must contain "Country" or "City", any
 *       case; also when no record of the file has a country code),
 *   "PATH: damaged: ..." (search tree or data section inconsistent).
 * The caller frees the result with geo_close. */
struct geo *geo_open(const char *path, char *err, size_t errsize);

/* The ISO 3166-1 alpha-2 country of the address (country.iso_code, else
 * registered_country.iso_code), upper case and NUL-terminated, into
 * code[3]: true when found. An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * is looked up as the IPv4 address. False for no entry, no country, an
 * error of the lookup (counted, see geo_errors), an IPv6 address in an
 * IPv4-only database, or a family other than AF_INET/AF_INET6. No
 * allocation, no I/O. The database is not changed (const); the error
 * counter, kept beside it, is. */
bool geo_country(const struct geo *g, const struct sockaddr *sa, char code[3]);

/* Lookups that failed with a libmaxminddb error (not "not found") since
 * geo_open, in this process: 0 unless the file changed under the mapping. */
unsigned long geo_errors(const struct geo *g);

/* What the database is, for logs and `-t`, into buf:
 * "GeoLite2-Country 2026-11-30 (IPv6, 1234 nodes)" (the build date, UTC). */
void geo_describe(const struct geo *g, char *buf, size_t size);

/* Unmap and free; NULL is fine. */
void geo_close(struct geo *g);

#endif
