/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * period.h - calendar arithmetic for quota.reset_schedule (pure: the time
 * is passed in). Boundaries are in local time, as the Perl ancestor had
 * them: hourly = the next full hour, daily = next midnight, weekly = next
 * Sunday 00:00, monthly = the 1st of next month 00:00. Both functions
 * take the same time whatever the distance from 1970 (no loop over
 * boundaries): a forged or ancient timestamp cannot stall the caller.
 */
#ifndef RG_PERIOD_H
#define RG_PERIOD_H

#include <time.h>

#include "config.h"

/* The first boundary strictly after now; 0 for RESET_NONE (or a now the
 * calendar cannot represent). */
time_t period_next_boundary(enum reset_schedule schedule, time_t now);

/* The last boundary at or before now (the start of the period holding
 * now); 0 for RESET_NONE (or a now the calendar cannot represent). */
time_t period_last_boundary(enum reset_schedule schedule, time_t now);

/* The boundary to reset at next, given the last one already reset at
 * (done, 0 = none): the first after now and after done. After the wall
 * clock steps back across a boundary it is not due a second time; after it
 * steps forward across several, the next reset is the only one. */
time_t period_next_reset(enum reset_schedule schedule, time_t now, time_t done);

#endif
