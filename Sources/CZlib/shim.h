#ifndef ZOO_CZLIB_SHIM_H
#define ZOO_CZLIB_SHIM_H
#include <zlib.h>
#endif
