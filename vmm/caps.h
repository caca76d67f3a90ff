/* Giving up capabilities once every resource is open. */
#ifndef MOTE_VMM_CAPS_H
#define MOTE_VMM_CAPS_H

/* Empties the bounding, ambient, effective, permitted and inheritable
 * sets of the calling thread (threads created afterwards inherit that).
 * A no-op when no capability is held (the jailer already dropped them, or
 * mote runs as a user). Returns 0 or -errno. */
int caps_drop_all(void);

#endif
