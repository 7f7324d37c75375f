/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 17-geo.c - the country database (geo.c, issue 29) against test
 * databases written by t/make-country-db (Debian's
 * libmaxmind-db-writer-perl): IPv4, IPv6 and IPv4-mapped lookups give
 * the exact codes (registered_country when there is no country, upper
 * case), addresses in no range and other families give false; geo_open
 * accepts the country and city types and refuses, with the reason, a
 * missing file, a directory, an empty file, random bytes, a truncated
 * database, an ASN database, a "Country" database without a country, and
 * an unreadable file; every byte of a valid database flipped in turn is
 * either refused or opens to lookups that answer sanely without error
 * (measured and shown per section). Runs from the source tree's top, as
 * t/run-suite does (it calls perl t/make-country-db).
 */
#include "geo.h"
#include "netaddr.h"
#include "tap.h"

#include <maxminddb.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAKE_DB "t/make-country-db"

static char dir[] = "/tmp/rg-geo-XXXXXX";

/* DIR/name, in one of a few rotating buffers. */
static const char *in_dir(const char *name)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

/* perl t/make-country-db ARGS writing DIR/name; true when it succeeded. */
static bool make_db(const char *name, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "perl %s %s %s", MAKE_DB, in_dir(name), args);
    int rc = system(cmd);
    if (rc != 0)
        diag("'%s' failed (status %d)", cmd, rc);
    return rc == 0;
}

/* The country of a numeric address, "" when geo_country says false. */
static const char *country(const struct geo *g, const char *text)
{
    static char code[3];
    struct sockaddr_storage ss;
    if (!sockaddr_parse_host(text, &ss)) {
        diag("cannot parse %s", text);
        return "?";
    }
    if (!geo_country(g, (struct sockaddr *)&ss, code))
        return "";
    return code;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        !(buf = malloc((size_t)n + 1)) || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        diag("cannot read %s: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
        n = 0;
    }
    if (f)
        fclose(f);
    *len = (size_t)n;
    return buf;
}

static bool spew(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    bool done = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        done = false;
    if (!done)
        diag("cannot write %s: %s", path, strerror(errno));
    return done;
}

/* geo_open refuses path with exactly the reason want. */
static void refused(const char *path, const char *want, const char *what)
{
    char err[512] = "";
    struct geo *g = geo_open(path, err, sizeof(err));
    ok(g == NULL, "refused: %s", what);
    if (is_str(err, want, "refused: %s: the reason", what))
        diag("%s", err);
    geo_close(g);
}

static void test_lookups(void)
{
    char err[512] = "", desc[256];
    struct geo *g;

    if (!make_db("countries.mmdb", "--epoch 1795996800"
                 " 192.0.2.0/24=DE 198.51.100.0/24=FR 2001:db8::/32=NL"
                 " 203.0.113.0/25=registered:JP 203.0.113.128/25=none 198.18.0.0/15=se")) {
        ok(false, "make-country-db wrote the test database");
        return;
    }
    g = geo_open(in_dir("countries.mmdb"), err, sizeof(err));
    if (!ok(g != NULL, "a GeoLite2-Country database opens")) {
        diag("%s", err);
        return;
    }
    static const struct {
        const char *addr, *want, *what;
    } cases[] = {
        {"192.0.2.7", "DE", "IPv4"},
        {"192.0.2.255", "DE", "IPv4, last of its /24"},
        {"198.51.100.1", "FR", "IPv4, another range"},
        {"2001:db8::5", "NL", "IPv6"},
        {"2001:db8:ffff:ffff::1", "NL", "IPv6, end of its /32"},
        {"::ffff:192.0.2.7", "DE", "IPv4-mapped IPv6 is the IPv4's"},
        {"::ffff:198.51.100.9", "FR", "IPv4-mapped IPv6, another range"},
        {"2002:c000:207::1", "DE", "6to4 (aliased by the database, as MaxMind's are)"},
        {"203.0.113.1", "JP", "registered_country when there is no country"},
        {"203.0.113.200", "", "a record with no country: false"},
        {"198.18.0.1", "SE", "a lower-case code is given upper case"},
        {"10.0.0.1", "", "IPv4 in no range: false"},
        {"192.0.3.1", "", "IPv4 next to a range: false"},
        {"2001:db9::1", "", "IPv6 in no range: false"},
        {"::ffff:10.0.0.1", "", "IPv4-mapped in no range: false"},
        {"::1", "", "IPv6 loopback: false"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        is_str(country(g, cases[i].addr), cases[i].want, "%s (%s)", cases[i].what, cases[i].addr);

    char code[3] = "xx";
    struct sockaddr_storage un = {.ss_family = AF_UNIX};
    ok(!geo_country(g, (struct sockaddr *)&un, code) && code[0] == '\0', "AF_UNIX: false");
    struct sockaddr_storage unspec = {.ss_family = AF_UNSPEC};
    ok(!geo_country(g, (struct sockaddr *)&unspec, code), "AF_UNSPEC: false");
    ok(!geo_country(NULL, (struct sockaddr *)&un, code), "no database: false");
    is_long((long)geo_errors(g), 0, "no lookup error counted");

    geo_describe(g, desc, sizeof(desc));
    ok(strncmp(desc, "GeoLite2-Country 2026-11-30 (IPv6, ", 35) == 0 && strstr(desc, " nodes)"),
       "geo_describe: type, build date, IP version, nodes (%s)", desc);

    /* The cost of one lookup (shown, not judged: the machine varies). */
    struct sockaddr_storage a4, a6;
    sockaddr_parse_host("192.0.2.7", &a4);
    sockaddr_parse_host("2001:db8::5", &a6);
    enum { N = 200000 };
    struct timespec t0, t1;
    unsigned found = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++)
        found += geo_country(g, (struct sockaddr *)(i & 1 ? &a6 : &a4), code);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    is_long(found, N, "%d lookups all found", N);
    diag("geo_country: %.0f ns per call on this test database",
         ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N);
    geo_close(g);
    geo_close(NULL);
}

/* An IPv4-only database: IPv4 and IPv4-mapped found, IPv6 false and not
 * an error. */
static void test_ipv4_only(void)
{
    char err[512] = "", desc[256];
    struct geo *g;

    if (!make_db("v4.mmdb", "--ip-version 4 --epoch 1795996800 192.0.2.0/24=DE")) {
        ok(false, "make-country-db wrote the IPv4-only database");
        return;
    }
    g = geo_open(in_dir("v4.mmdb"), err, sizeof(err));
    if (!ok(g != NULL, "an IPv4-only database opens")) {
        diag("%s", err);
        return;
    }
    is_str(country(g, "192.0.2.7"), "DE", "IPv4-only: IPv4");
    is_str(country(g, "::ffff:192.0.2.7"), "DE", "IPv4-only: IPv4-mapped");
    is_str(country(g, "2001:db8::1"), "", "IPv4-only: IPv6 is false");
    is_long((long)geo_errors(g), 0, "IPv4-only: IPv6 is not counted as an error");
    geo_describe(g, desc, sizeof(desc));
    ok(strncmp(desc, "GeoLite2-Country 2026-11-30 (IPv4, ", 35) == 0, "IPv4-only: described (%s)", desc);
    geo_close(g);
}

/* The types taken for country data and those refused. */
static void test_types(void)
{
    static const struct {
        const char *type;
        bool accepted;
    } cases[] = {
        {"GeoLite2-Country", true}, {"DBIP-Country-Lite", true}, {"GeoIP2-City", true},
        {"geolite2-country", true}, {"GeoIP2-Anonymous-IP", false}, {"My-IP-Data", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char args[256], err[512] = "", want[512];
        snprintf(args, sizeof(args), "--type '%s' 192.0.2.0/24=DE", cases[i].type);
        if (!make_db("type.mmdb", args)) {
            ok(false, "make-country-db --type %s", cases[i].type);
            continue;
        }
        struct geo *g = geo_open(in_dir("type.mmdb"), err, sizeof(err));
        if (cases[i].accepted) {
            ok(g != NULL && strcmp(country(g, "192.0.2.1"), "DE") == 0, "type '%s' taken", cases[i].type);
            if (!g)
                diag("%s", err);
        } else {
            snprintf(want, sizeof(want), "%s: database type '%s' has no country data", in_dir("type.mmdb"),
                     cases[i].type);
            ok(g == NULL, "type '%s' refused", cases[i].type);
            is_str(err, want, "type '%s' refused: the reason", cases[i].type);
        }
        geo_close(g);
    }

    char want[512];
    if (make_db("asn.mmdb", "--type GeoLite2-ASN 192.0.2.0/24=AS64496 2001:db8::/32=AS64497")) {
        snprintf(want, sizeof(want), "%s: database type 'GeoLite2-ASN' has no country data", in_dir("asn.mmdb"));
        refused(in_dir("asn.mmdb"), want, "an ASN database");
    }
    if (make_db("asn-as-country.mmdb", "192.0.2.0/24=AS64496 203.0.113.0/24=none")) {
        snprintf(want, sizeof(want),
                 "%s: database type 'GeoLite2-Country' has no country data (no record has a country code)",
                 in_dir("asn-as-country.mmdb"));
        refused(in_dir("asn-as-country.mmdb"), want, "a 'Country' database whose records have no country");
    }
}

/* Files that are no country database at all, or a cut one. */
static void test_bad_files(void)
{
    char want[512];
    const char *p;

    p = in_dir("missing.mmdb");
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", p);
    refused(p, want, "a missing file");

    p = in_dir("a-directory");
    mkdir(p, 0755);
    snprintf(want, sizeof(want), "%s: cannot open: Is a directory", p);
    refused(p, want, "a directory");

    p = in_dir("empty.mmdb");
    spew(p, "", 0);
    snprintf(want, sizeof(want), "%s: not a MaxMind database (empty file)", p);
    refused(p, want, "an empty file");

    unsigned char noise[65536];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof(noise); i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        noise[i] = (unsigned char)x;
    }
    p = in_dir("random.mmdb");
    spew(p, noise, sizeof(noise));
    snprintf(want, sizeof(want), "%s: not a MaxMind database (%s)", p, MMDB_strerror(MMDB_INVALID_METADATA_ERROR));
    refused(p, want, "64 KiB of random bytes");

    size_t len;
    unsigned char *db = slurp(in_dir("countries.mmdb"), &len);
    if (db) {
        p = in_dir("half.mmdb");
        spew(p, db, len / 2);
        snprintf(want, sizeof(want), "%s: not a MaxMind database (%s)", p,
                 MMDB_strerror(MMDB_INVALID_METADATA_ERROR));
        refused(p, want, "a valid database truncated to half (its metadata is at the end)");
        free(db);
    }

    p = in_dir("unreadable.mmdb");
    if (geteuid() == 0) {
        ok(true, "# SKIP an unreadable file: running as root, who reads any file");
    } else if (make_db("unreadable.mmdb", "192.0.2.0/24=DE") && chmod(p, 0) == 0) {
        snprintf(want, sizeof(want), "%s: cannot open: Permission denied", p);
        refused(p, want, "an unreadable file");
    }
}

/* Every byte of a valid database flipped (XOR 0xff), one at a time:
 * refused with a reason, or opened with sane answers and no lookup error.
 * Counted per section of the file. */
static void test_flips(void)
{
    static const char *const probes[] = {
        "192.0.2.7", "198.51.100.1", "2001:db8::5", "203.0.113.1", "203.0.113.200",
        "10.0.0.1", "::ffff:192.0.2.7", "2001:db9::1", "198.18.0.1",
    };
    enum { NPROBES = sizeof(probes) / sizeof(probes[0]) };
    enum { TREE, SEPARATOR, DATA, METADATA, SECTIONS };
    static const char *const section_name[SECTIONS] = {"search tree", "separator", "data section", "metadata"};
    unsigned refused_n[SECTIONS] = {0}, same[SECTIONS] = {0}, changed[SECTIONS] = {0}, total[SECTIONS] = {0};
    unsigned bad_reason = 0, bad_answer = 0, errors = 0;
    char want[NPROBES][3];
    char err[512];
    size_t len;
    MMDB_s mmdb;
    const char *orig = in_dir("countries.mmdb");
    unsigned char *db = slurp(orig, &len);

    if (!db || MMDB_open(orig, MMDB_MODE_MMAP, &mmdb) != MMDB_SUCCESS) {
        ok(false, "the valid database reads");
        free(db);
        return;
    }
    size_t data_start = (size_t)(mmdb.data_section - mmdb.file_content);
    size_t meta_start = (size_t)(mmdb.metadata_section - mmdb.file_content) - 14;     /* its marker */
    MMDB_close(&mmdb);

    struct geo *g = geo_open(orig, err, sizeof(err));
    for (int i = 0; i < NPROBES; i++)
        snprintf(want[i], sizeof(want[i]), "%s", g ? country(g, probes[i]) : "?");
    geo_close(g);

    const char *p = in_dir("flipped.mmdb");
    size_t plen = strlen(p);
    for (size_t at = 0; at < len; at++) {
        int s = at < data_start - 16 ? TREE : at < data_start ? SEPARATOR : at < meta_start ? DATA : METADATA;
        total[s]++;
        db[at] ^= 0xff;
        bool written = spew(p, db, len);
        db[at] ^= 0xff;
        if (!written)
            break;
        err[0] = '\0';
        g = geo_open(p, err, sizeof(err));
        if (!g) {
            refused_n[s]++;
            if (strncmp(err, p, plen) != 0 ||
                (strncmp(err + plen, ": damaged: ", 11) != 0 &&
                 strncmp(err + plen, ": not a MaxMind database (", 26) != 0 &&
                 strncmp(err + plen, ": database type '", 17) != 0)) {
                if (bad_reason++ < 5)
                    diag("byte %zu: reason '%s'", at, err);
            }
            continue;
        }
        bool differs = false;
        for (int i = 0; i < NPROBES; i++) {
            const char *c = country(g, probes[i]);
            if (c[0] && !(strlen(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z')) {
                if (bad_answer++ < 5)
                    diag("byte %zu: %s gave '%s'", at, probes[i], c);
            }
            differs = differs || strcmp(c, want[i]) != 0;
        }
        if (geo_errors(g) != 0 && errors++ < 5)
            diag("byte %zu: %lu lookup errors after a successful open", at, geo_errors(g));
        if (differs)
            changed[s]++;
        else
            same[s]++;
        geo_close(g);
    }
    free(db);

    for (int s = 0; s < SECTIONS; s++)
        diag("flips in the %-12s: %4u bytes, %4u refused, %4u opened with the same answers, %4u with others",
             section_name[s], total[s], refused_n[s], same[s], changed[s]);
    is_long(bad_reason, 0, "flips: every refusal gives one of geo_open's reasons");
    is_long(bad_answer, 0, "flips: every lookup of an opened database gives false or two letters");
    is_long(errors, 0, "flips: no lookup error once a database opened");
    is_long(refused_n[SEPARATOR], total[SEPARATOR], "flips: every byte of the separator refused");
    ok(refused_n[TREE] > 0 && refused_n[DATA] > 0 && refused_n[METADATA] > 0,
       "flips: some refused in the tree, the data and the metadata");
}

/* The first three bytes of the data section damaged together (the
 * writer puts a shared value there, which the records point to): refused
 * as damaged data, the reason naming the record that reads it. */
static void test_few_flips(void)
{
    size_t len;
    MMDB_s mmdb;
    const char *orig = in_dir("countries.mmdb");
    unsigned char *db = slurp(orig, &len);

    if (!db || MMDB_open(orig, MMDB_MODE_MMAP, &mmdb) != MMDB_SUCCESS) {
        ok(false, "the valid database reads");
        free(db);
        return;
    }
    size_t data_start = (size_t)(mmdb.data_section - mmdb.file_content);
    MMDB_close(&mmdb);
    for (size_t i = 0; i < 3; i++)
        db[data_start + i] ^= 0xff;
    const char *p = in_dir("few-flips.mmdb");
    spew(p, db, len);
    free(db);

    char err[512] = "", want[256];
    struct geo *g = geo_open(p, err, sizeof(err));
    snprintf(want, sizeof(want), "%s: damaged: the data record at offset ", p);
    ok(g == NULL, "three bytes flipped at the start of the data section: refused");
    ok(strncmp(err, want, strlen(want)) == 0, "and the reason names the record (%s)", err);
    geo_close(g);
}

int main(void)
{
    if (access(MAKE_DB, X_OK) != 0) {
        ok(false, "%s: %s (run from the source tree's top, as t/run-suite does)", MAKE_DB, strerror(errno));
        return done_testing();
    }
    if (mkdtemp(dir) == NULL) {
        ok(false, "mkdtemp: %s", strerror(errno));
        return done_testing();
    }
    test_lookups();
    test_ipv4_only();
    test_types();
    test_bad_files();
    test_flips();
    test_few_flips();

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        diag("cleanup of %s failed", dir);
    return done_testing();
}
