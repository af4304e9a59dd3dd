/* The daemon's RPC methods (docs/initiator.md lists them). */
#ifndef ISTHMUS_DAEMON_METHODS_H
#define ISTHMUS_DAEMON_METHODS_H

#include <stddef.h>

#include "mgmt/rpc.h"

extern const struct rpc_method dmn_methods[];
extern const size_t dmn_nmethods;

#endif
