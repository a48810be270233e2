/* store-backend.h — runs the store's tests against each backend: SQLite always, PostgreSQL
 * when AI2IN_TEST_DATABASE names a database the tests may wipe (scripts/test-postgres.sh
 * starts a throwaway one and sets it; `make unit` runs under it when it can). Included by the
 * test_store*.c files only. */
#pragma once

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store.h"

/* The backend under test: NULL for SQLite (in the test's directory), else the URL. */
static const char *test_database;

static const char *test_postgres_url(void) {
        const char *url = getenv("AI2IN_TEST_DATABASE");

        return url && *url ? url : NULL;
}

/* Empties the PostgreSQL database: the next store_open migrates it from nothing. */
_unused_ static int test_postgres_reset(void) {
        PGconn *c = PQconnectdb(test_postgres_url());
        PGresult *res;
        int r = -1;

        if (PQstatus(c) == CONNECTION_OK) {
                res = PQexec(c, "SET client_min_messages = warning;"
                                "DROP TABLE IF EXISTS sandboxes, api_keys, teams, nodes, schema_version CASCADE");
                r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
                if (r < 0)
                        fprintf(stderr, "cannot reset the test database: %s", PQresultErrorMessage(res));
                PQclear(res);
        } else
                fprintf(stderr, "cannot reach the test database: %s", PQerrorMessage(c));
        PQfinish(c);
        return r;
}

/* One integer answer of sql in the PostgreSQL database (-1 on failure). */
_unused_ static long long test_postgres_scalar(const char *sql) {
        PGconn *c = PQconnectdb(test_postgres_url());
        PGresult *res = PQexec(c, sql);
        long long v = -1;

        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
                v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        PQfinish(c);
        return v;
}

/* Says why PostgreSQL is not tested, once per binary. */
_unused_ static void test_postgres_skipped(const char *name) {
        fprintf(stderr, "%s: PostgreSQL backend not tested: AI2IN_TEST_DATABASE is unset (scripts/test-postgres.sh sets it)\n", name);
}
