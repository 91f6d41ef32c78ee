#ifndef EDDY_CSODIUM_SHIM_H
#define EDDY_CSODIUM_SHIM_H
#include <sodium.h>
#endif
