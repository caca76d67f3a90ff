/* The JSON schema of each request body (api/schema.c), shared by the
 * routes and the --config-file parser. Internal to api/. */
#ifndef MOTE_API_SCHEMA_H
#define MOTE_API_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "api/api.h"

#define SCHEMA_ERR_LEN 512
#define SCHEMA_IFACE_ID_MAX 64

/* Where a message goes and how it starts: "drives: rate_limiter.ops.". */
struct jctx {
	const char *res;             /* resource: "machine-config", "drives", ... */
	const char *prefix;          /* field path prefix for nested objects, "" at top */
	char *err;
	size_t errlen;
};

/* Writes "<res>: <message>" to c->err; returns -1. */
int schema_fail(const struct jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "an integer", "a string", ... for messages. */
const char *schema_kind(const json_t *v);
/* The body as a JSON object, or NULL with a message. */
json_t *schema_parse_body(const struct jctx *c, const char *body, size_t len);
/* Every key of obj must be in allowed (NULL-terminated). */
int schema_check_fields(const struct jctx *c, const json_t *obj, const char *const allowed[]);
/* 1 present (*out set), 0 absent or null, -1 error. */
int schema_get_object(const struct jctx *c, const json_t *obj, const char *key, bool required,
		      json_t **out);
/* Letters, digits and '_', 1 to max characters. */
int schema_check_id(const struct jctx *c, const char *what, const char *id, size_t max);
/* -1 if key is present and not null: mote does not do what it asks. */
int schema_reject_present(const struct jctx *c, const json_t *obj, const char *key,
			  const char *why);

/* One per resource; 0 or -1 with the message in c->err. */
int schema_boot_source(const struct jctx *c, const json_t *o, struct api_boot_source *b);
int schema_machine_config(const struct jctx *c, const json_t *o, bool patch,
			  struct api_machine_config *m);
int schema_drive(const struct jctx *c, const json_t *o, bool patch, struct api_drive *d);
/* Validated in full into n (n->net.id is the body's iface_id). */
int schema_net(const struct jctx *c, const json_t *o, bool patch, struct api_net *n);
int schema_vsock(const struct jctx *c, const json_t *o, struct api_vsock *v);
int schema_logger(const struct jctx *c, const json_t *o, struct api_logger *l);
int schema_metrics(const struct jctx *c, const json_t *o, char *path);
int schema_action(const struct jctx *c, const json_t *o, enum api_op *op);
int schema_vm_state(const struct jctx *c, const json_t *o, enum api_op *op);
/* api/schema_snapshot.c */
int schema_snapshot_create(const struct jctx *c, const json_t *o, struct api_snapshot_create *s);
int schema_snapshot_load(const struct jctx *c, const json_t *o, struct api_snapshot_load *s);

#endif
