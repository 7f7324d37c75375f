/* SPDX-License-Identifier: GPL-3.0-or-later */
/* TEMPORARY stand-in until the geo branch is merged. */
#ifndef RG_GEO_H
#define RG_GEO_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
struct geo;
struct geo *geo_open(const char *path, char *err, size_t errsize);
bool geo_country(const struct geo *g, const struct sockaddr *sa, char code[3]);
unsigned long geo_errors(const struct geo *g);
void geo_describe(const struct geo *g, char *buf, size_t size);
void geo_close(struct geo *g);
#endif
