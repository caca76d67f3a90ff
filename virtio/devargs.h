/* Device arguments as the command line writes them: "key=value,key,...".
 * One splitter for --drive, --net and --vsock, so that they agree on what
 * a separator, an empty item or a number is; each device keeps its own
 * keys and messages. */
#ifndef MOTE_VIRTIO_DEVARGS_H
#define MOTE_VIRTIO_DEVARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One item of the list. */
struct devarg {
	const char *item; /* the whole item as written, "key=value" or "key" */
	const char *val;  /* what follows the first '=', or NULL if none */
	size_t key_len;   /* the key: item[0 .. key_len) */
};

struct devargs {
	char *copy;    /* a copy of the caller's string, split at the commas */
	char *save;    /* strtok_r's place in it */
	bool started;
};

/* Starts iterating over arg's comma-separated items (empty ones are
 * skipped); 0 or -ENOMEM. devargs_close() frees what this allocates. */
int devargs_open(struct devargs *it, const char *arg);
/* The next item in *a; false after the last. */
bool devargs_next(struct devargs *it, struct devarg *a);
void devargs_close(struct devargs *it);

/* Whether a's key is key (with or without a value). */
bool devarg_is(const struct devarg *a, const char *key);
/* A decimal number without sign into *out; 0 or -EINVAL. */
int devarg_u64(const char *s, uint64_t *out);

#endif
