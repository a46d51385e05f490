#ifndef ZOO_COPENBLAS_SHIM_H
#define ZOO_COPENBLAS_SHIM_H
#include <cblas.h>
#if defined(__linux__)
#include <malloc.h>  /* mallopt: the training engine keeps freed activation blocks in the heap */
#endif
#endif
