#ifndef EDDY_CZEROMQ_SHIM_H
#define EDDY_CZEROMQ_SHIM_H
#include <zmq.h>
#endif
