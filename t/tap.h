/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * tap.h - a tiny Test Anything Protocol producer for the C unit tests
 * (in the spirit of c-tap-harness). Header-only: each t/NN-name.c is one
 * test program that prove runs. Use plan_lazy() + done_testing().
 */
#ifndef RG_TAP_H
#define RG_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_run, tap_failed;

static void tap_vresult(bool pass, const char *fmt, va_list ap)
{
    printf("%sok %d - ", pass ? "" : "not ", ++tap_run);
    vprintf(fmt, ap);
    printf("\n");
    if (!pass)
        tap_failed++;
    fflush(stdout);
}

__attribute__((format(printf, 2, 3)))
__attribute__((unused)) static bool ok(bool pass, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    return pass;
}

__attribute__((format(printf, 3, 4)))
__attribute__((unused)) static bool is_long(long got, long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vresult(got == want, fmt, ap);
    va_end(ap);
    if (got != want)
        printf("#   got:  %ld\n#   want: %ld\n", got, want);
    return got == want;
}

__attribute__((format(printf, 3, 4)))
__attribute__((unused)) static bool is_str(const char *got, const char *want, const char *fmt, ...)
{
    bool pass = got && want ? strcmp(got, want) == 0 : got == want;
    va_list ap;
    va_start(ap, fmt);
    tap_vresult(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        printf("#   got:  '%s'\n#   want: '%s'\n", got ? got : "(null)", want ? want : "(null)");
    return pass;
}

__attribute__((format(printf, 1, 2), unused))
static void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static int done_testing(void)
{
    printf("1..%d\n", tap_run);
    return tap_failed ? 1 : 0;
}

#endif
