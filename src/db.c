/*
 * db.c - MariaDB Connector/C connection set-up shared by every process
 * that talks to the database.
 */
#include "db.h"
#include "config.h"

#include <stdio.h>
#include <string.h>

MYSQL *db_connect(const struct rg_config *cfg, char *err, size_t errsize)
{
    MYSQL *db = mysql_init(NULL);
    unsigned int timeout = (unsigned int)cfg->database.connect_timeout;
    const char *socket = cfg->database.socket[0] ? cfg->database.socket : NULL;

    if (db == NULL) {
        snprintf(err, errsize, "mysql_init: out of memory");
        return NULL;
    }
    mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    /* Reads and writes get a bound too, so a hung server cannot hang us. */
    unsigned int io_timeout = timeout * 6;
    mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
    mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");

    if (mysql_real_connect(db, socket ? "localhost" : cfg->database.host, cfg->database.user,
                           cfg->database.password, cfg->database.name,
                           (unsigned int)cfg->database.port, socket, 0) == NULL) {
        snprintf(err, errsize, "connect to database '%s' as '%s' at %s: %s", cfg->database.name,
                 cfg->database.user, socket ? socket : cfg->database.host, mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    return db;
}

bool db_exec(MYSQL *db, const char *sql, char *err, size_t errsize)
{
    if (mysql_real_query(db, sql, strlen(sql)) != 0) {
        snprintf(err, errsize, "%.200s: %s", sql, mysql_error(db));
        return false;
    }
    /* A statement may still hand back a result set; drain it. */
    MYSQL_RES *res = mysql_store_result(db);
    if (res)
        mysql_free_result(res);
    return true;
}
