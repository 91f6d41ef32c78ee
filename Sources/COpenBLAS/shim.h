#ifndef EDDY_COPENBLAS_SHIM_H
#define EDDY_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
