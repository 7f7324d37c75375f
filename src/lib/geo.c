/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * geo.c - the country database (issue 29): opens a MaxMind-format (MMDB)
 * file with libmaxminddb, checks it whole at open, and answers the
 * country of an address. Owns the struct geo: libmaxminddb's MMDB_s (the
 * file's read-only mapping) and the counter of failed lookups.
 *
 * The check at open is what makes the hot path safe to leave unchecked:
 * libmaxminddb has no public verifier (mmdbverify is not part of the
 * library), so geo_open walks the search tree from its root the way a
 * lookup does, depth first, to the end of every branch, and requires each
 * record it meets to be a node within the tree (and within the address
 * length: 32 or 128 bits), empty, or a data record inside the data
 * section; every data record met is then read with the same two paths
 * geo_country reads (checked once per record: a bitmap of offsets). A
 * lookup only ever follows that tree and reads those paths, so after a
 * successful geo_open it cannot meet an error on an unchanged file.
 */
#include "geo.h"
#include "util.h"

#include <maxminddb.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct geo {
    MMDB_s db;
    /* Beside the database, not in it: geo_country counts through a const
     * struct geo. Per process after fork. */
    unsigned long *errors;
};

/* The two values geo_country reads from a data record. */
static const char *const country_path[] = {"country", "iso_code", NULL};
static const char *const registered_path[] = {"registered_country", "iso_code", NULL};

/* The MMDB file format's fixed parts (libmaxminddb does not export them):
 * the 16 zero bytes between the search tree and the data section, and the
 * marker that starts the metadata at the end of the file. */
#define SEPARATOR_SIZE 16
#define METADATA_MARKER_SIZE 14      /* "\xab\xcd\xef" "MaxMind.com" */

/* Not a libmaxminddb status: a country code that is not two letters. */
#define GEO_BAD_CODE (-1)

enum code_result { CODE_NONE, CODE_FOUND, CODE_ERROR };

static bool is_letter(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* The code at path in the data record at offset: CODE_FOUND (code set,
 * upper case), CODE_NONE when the record has no such value, CODE_ERROR with
 * *status (a libmaxminddb status or GEO_BAD_CODE). A missing key is
 * LOOKUP_PATH_DOES_NOT_MATCH_DATA for libmaxminddb 1.7 and "no data" for
 * later versions: both mean none. MMDB_aget_value, unlike MMDB_get_value,
 * allocates nothing. */
static enum code_result path_code(const MMDB_s *db, uint32_t offset, const char *const *path,
                                  char code[3], int *status)
{
    MMDB_entry_s entry = {.mmdb = db, .offset = offset};
    MMDB_entry_data_s data;
    int st = MMDB_aget_value(&entry, &data, path);

    if (st == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR || (st == MMDB_SUCCESS && !data.has_data))
        return CODE_NONE;
    if (st != MMDB_SUCCESS) {
        *status = st;
        return CODE_ERROR;
    }
    if (data.type != MMDB_DATA_TYPE_UTF8_STRING || data.data_size != 2 ||
        !is_letter(data.utf8_string[0]) || !is_letter(data.utf8_string[1])) {
        *status = GEO_BAD_CODE;
        return CODE_ERROR;
    }
    code[0] = (char)(data.utf8_string[0] & ~0x20);      /* ASCII upper case */
    code[1] = (char)(data.utf8_string[1] & ~0x20);
    code[2] = '\0';
    return CODE_FOUND;
}

static const char *status_text(int status)
{
    return status == GEO_BAD_CODE ? "a country code that is not two letters" : MMDB_strerror(status);
}

bool geo_country(const struct geo *g, const struct sockaddr *sa, char code[3])
{
    struct sockaddr_in v4;
    int status = MMDB_SUCCESS;
    enum code_result found;

    code[0] = '\0';
    if (!g || !sa)
        return false;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memset(&v4, 0, sizeof(v4));
            v4.sin_family = AF_INET;
            memcpy(&v4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
            sa = (const struct sockaddr *)&v4;
        } else if (g->db.metadata.ip_version == 4) {
            return false;       /* not an error: such a database has no IPv6 */
        }
    } else if (sa->sa_family != AF_INET) {
        return false;
    }

    MMDB_lookup_result_s res = MMDB_lookup_sockaddr(&g->db, sa, &status);
    if (status != MMDB_SUCCESS)
        goto failed;
    if (!res.found_entry)
        return false;
    found = path_code(&g->db, res.entry.offset, country_path, code, &status);
    if (found == CODE_NONE)
        found = path_code(&g->db, res.entry.offset, registered_path, code, &status);
    if (found == CODE_FOUND)
        return true;
    if (found == CODE_NONE)
        return false;
failed:
    if (*g->errors != ULONG_MAX)
        (*g->errors)++;
    code[0] = '\0';
    return false;
}

unsigned long geo_errors(const struct geo *g)
{
    return g ? *g->errors : 0;
}

__attribute__((format(printf, 3, 4)))
static void say(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    if (!err || errsize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

/* The state of the check at open. */
struct walk {
    const MMDB_s *db;
    uint32_t node_count;
    unsigned bits;              /* 32 or 128: a lookup's depth */
    uint32_t data_limit;        /* data offsets below it lie before the metadata */
    uint8_t *deepest;           /* per node: 1 + the deepest depth it was checked at, 0 never */
    uint8_t *seen;              /* bitmap of the data offsets checked */
    unsigned long countries;    /* data records with a country code */
    char *err;
    size_t errsize;
    const char *path;
};

/* Check the data record at offset once: both paths must read cleanly. */
static bool check_data(struct walk *w, uint32_t node, uint32_t offset)
{
    char code[3];
    int status = MMDB_SUCCESS;
    bool any = false;

    if (w->seen[offset / 8] & (1u << (offset % 8)))
        return true;
    w->seen[offset / 8] |= (uint8_t)(1u << (offset % 8));
    for (int i = 0; i < 2; i++) {
        enum code_result r = path_code(w->db, offset, i == 0 ? country_path : registered_path, code, &status);
        if (r == CODE_ERROR) {
            say(w->err, w->errsize, "%s: damaged: the data record at offset %u (from node %u): %s",
                w->path, (unsigned)offset, (unsigned)node, status_text(status));
            return false;
        }
        any = any || r == CODE_FOUND;
    }
    if (any)
        w->countries++;
    return true;
}

/* Check one record of node (met at depth, so its target is at depth + 1);
 * a node record is pushed onto the stack. */
static bool check_record(struct walk *w, uint32_t node, uint64_t record, unsigned depth,
                         uint32_t *stack, uint8_t *depths, size_t *sp, size_t stack_size)
{
    if (record == 0) {
        say(w->err, w->errsize, "%s: damaged: search tree node %u points back to the root", w->path,
            (unsigned)node);
        return false;
    }
    if (record < w->node_count) {
        if (depth + 1 >= w->bits) {
            say(w->err, w->errsize, "%s: damaged: the search tree is deeper than %u bits (node %u)",
                w->path, w->bits, (unsigned)node);
            return false;
        }
        if (*sp == stack_size) {    /* cannot happen: at most two entries per level */
            say(w->err, w->errsize, "%s: damaged: search tree walk overflow", w->path);
            return false;
        }
        stack[*sp] = (uint32_t)record;
        depths[(*sp)++] = (uint8_t)(depth + 1);
        return true;
    }
    if (record == w->node_count)
        return true;            /* empty: no data for that network */
    if (record < (uint64_t)w->node_count + SEPARATOR_SIZE ||
        record - w->node_count - SEPARATOR_SIZE >= w->data_limit) {
        say(w->err, w->errsize, "%s: damaged: search tree node %u points outside the data section (%llu)",
            w->path, (unsigned)node, (unsigned long long)record);
        return false;
    }
    return check_data(w, node, (uint32_t)(record - w->node_count - SEPARATOR_SIZE));
}

/* Walk every node a lookup can reach, depth first. A node met again at
 * a depth no deeper than before was checked already (its subtree fits);
 * deeper, it is checked again, so a shared subtree (the IPv4 aliases)
 * costs a few passes and a cycle ends at the depth limit. */
static bool check_tree(struct walk *w)
{
    enum { STACK = 2 * (128 + 2) };
    uint32_t stack[STACK];
    uint8_t depths[STACK];
    size_t sp = 0;

    stack[sp] = 0;
    depths[sp++] = 0;
    while (sp > 0) {
        uint32_t node = stack[--sp];
        unsigned depth = depths[sp];
        MMDB_search_node_s n;
        int status;

        if (w->deepest[node] > depth)
            continue;
        w->deepest[node] = (uint8_t)(depth + 1);
        status = MMDB_read_node(w->db, node, &n);
        if (status != MMDB_SUCCESS) {
            say(w->err, w->errsize, "%s: damaged: search tree node %u: %s", w->path, (unsigned)node,
                MMDB_strerror(status));
            return false;
        }
        if (!check_record(w, node, n.left_record, depth, stack, depths, &sp, STACK) ||
            !check_record(w, node, n.right_record, depth, stack, depths, &sp, STACK))
            return false;
    }
    return true;
}

/* The layout libmaxminddb derived from the metadata, checked again with
 * 64-bit arithmetic (1.7 computes the tree's size in 32 bits), then the
 * separator, the type and the whole tree. */
static bool check_database(const MMDB_s *db, const char *path, char *err, size_t errsize)
{
    const char *type = db->metadata.database_type ? db->metadata.database_type : "";
    uint64_t tree_size = (uint64_t)db->metadata.node_count * db->full_record_byte_size;
    const uint8_t *metadata_start = db->metadata_section - METADATA_MARKER_SIZE;
    struct walk w = {.db = db, .node_count = db->metadata.node_count, .err = err, .errsize = errsize, .path = path};
    char shown[80];
    bool ok;

    log_safe_copy(shown, sizeof(shown), type, 64);
    if (!strcasestr(type, "country") && !strcasestr(type, "city")) {
        say(err, errsize, "%s: database type '%s' has no country data", path, shown);
        return false;
    }
    if (db->file_size < 0 || tree_size + SEPARATOR_SIZE > (uint64_t)db->file_size ||
        db->data_section != db->file_content + tree_size + SEPARATOR_SIZE ||
        metadata_start < db->data_section || db->metadata_section > db->file_content + db->file_size) {
        say(err, errsize, "%s: damaged: the search tree (%u nodes of %u bytes) does not fit the file (%lld bytes)",
            path, (unsigned)db->metadata.node_count, (unsigned)db->full_record_byte_size,
            (long long)db->file_size);
        return false;
    }
    for (size_t i = 0; i < SEPARATOR_SIZE; i++) {
        if (db->data_section[-SEPARATOR_SIZE + (ptrdiff_t)i] != 0) {
            say(err, errsize, "%s: damaged: no 16 zero bytes after the search tree (%u nodes)", path,
                (unsigned)db->metadata.node_count);
            return false;
        }
    }

    w.bits = db->metadata.ip_version == 4 ? 32 : 128;
    w.data_limit = (uint32_t)(metadata_start - db->data_section);
    w.deepest = xcalloc(db->metadata.node_count, 1);
    w.seen = xcalloc((size_t)w.data_limit / 8 + 1, 1);
    ok = check_tree(&w);
    free(w.deepest);
    free(w.seen);
    if (ok && w.countries == 0) {
        say(err, errsize, "%s: database type '%s' has no country data (no record has a country code)", path,
            shown);
        return false;
    }
    return ok;
}

struct geo *geo_open(const char *path, char *err, size_t errsize)
{
    struct stat st;
    struct geo *g;
    int fd, status;

    /* Opened here first for the errno (libmaxminddb reports one status
     * for every reason) and to tell a directory or an empty file. */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        say(err, errsize, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    close(fd);
    if (S_ISDIR(st.st_mode)) {
        say(err, errsize, "%s: cannot open: %s", path, strerror(EISDIR));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        say(err, errsize, "%s: cannot open: not a regular file", path);
        return NULL;
    }
    if (st.st_size == 0) {
        say(err, errsize, "%s: not a MaxMind database (empty file)", path);
        return NULL;
    }

    g = xcalloc(1, sizeof(*g));
    errno = 0;
    status = MMDB_open(path, MMDB_MODE_MMAP, &g->db);
    if (status != MMDB_SUCCESS) {
        int saved = errno;
        if ((status == MMDB_FILE_OPEN_ERROR || status == MMDB_IO_ERROR) && saved != 0)
            say(err, errsize, "%s: cannot open: %s", path, strerror(saved));
        else if (status == MMDB_FILE_OPEN_ERROR || status == MMDB_IO_ERROR || status == MMDB_OUT_OF_MEMORY_ERROR)
            say(err, errsize, "%s: cannot open: %s", path, MMDB_strerror(status));
        else if (status == MMDB_INVALID_METADATA_ERROR || status == MMDB_UNKNOWN_DATABASE_FORMAT_ERROR)
            say(err, errsize, "%s: not a MaxMind database (%s)", path, MMDB_strerror(status));
        else if (status == MMDB_CORRUPT_SEARCH_TREE_ERROR)
            say(err, errsize, "%s: damaged: %s", path, MMDB_strerror(status));
        else    /* the metadata's marker is there, its values are not */
            say(err, errsize, "%s: damaged: unreadable metadata (%s)", path, MMDB_strerror(status));
        free(g);
        return NULL;
    }
    if (!check_database(&g->db, path, err, errsize)) {
        MMDB_close(&g->db);
        free(g);
        return NULL;
    }
    g->errors = xcalloc(1, sizeof(*g->errors));
    return g;
}

void geo_describe(const struct geo *g, char *buf, size_t size)
{
    char type[80], date[32];
    time_t when;
    struct tm tm;

    if (!g) {
        snprintf(buf, size, "no country database");
        return;
    }
    log_safe_copy(type, sizeof(type), g->db.metadata.database_type ? g->db.metadata.database_type : "", 64);
    when = (time_t)g->db.metadata.build_epoch;
    if (g->db.metadata.build_epoch <= (uint64_t)INT64_MAX && gmtime_r(&when, &tm))
        strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    else
        snprintf(date, sizeof(date), "epoch %llu", (unsigned long long)g->db.metadata.build_epoch);
    snprintf(buf, size, "%s %s (IPv%u, %u nodes)", type, date, (unsigned)g->db.metadata.ip_version,
             (unsigned)g->db.metadata.node_count);
}

void geo_close(struct geo *g)
{
    if (!g)
        return;
    MMDB_close(&g->db);
    free(g->errors);
    free(g);
}
