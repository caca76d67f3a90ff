/* Device arguments: "key=value,key,..." split into items (virtio/devargs.h). */
#include "virtio/devargs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int devargs_open(struct devargs *it, const char *arg)
{
	it->copy = strdup(arg);
	it->save = NULL;
	it->started = false;
	return it->copy ? 0 : -ENOMEM;
}

bool devargs_next(struct devargs *it, struct devarg *a)
{
	/* Only the commas are cut: an item stays whole for messages. */
	char *tok = strtok_r(it->started ? NULL : it->copy, ",", &it->save);
	const char *eq;

	it->started = true;
	if (!tok)
		return false;
	eq = strchr(tok, '=');
	a->item = tok;
	a->val = eq ? eq + 1 : NULL;
	a->key_len = eq ? (size_t)(eq - tok) : strlen(tok);
	return true;
}

void devargs_close(struct devargs *it)
{
	free(it->copy);
	it->copy = NULL;
}

bool devarg_is(const struct devarg *a, const char *key)
{
	return a->key_len == strlen(key) && !strncmp(a->item, key, a->key_len);
}

int devarg_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}
