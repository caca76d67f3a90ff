/* Connects COM1 to the monitor's stdin/stdout through the event loop.
 * stdin in raw mode when it is a terminal; restored by console_restore(). */
#ifndef MOTE_VMM_CONSOLE_H
#define MOTE_VMM_CONSOLE_H

#include "vmm/loop.h"
#include "vmm/vm.h"

int console_init(struct vm *vm, struct event_loop *loop, int in_fd, int out_fd);
void console_restore(void);

#endif
