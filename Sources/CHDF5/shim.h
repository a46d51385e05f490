#ifndef ZOO_CHDF5_SHIM_H
#define ZOO_CHDF5_SHIM_H
#include <stdio.h>
#include <hdf5.h>
/* HDF5's type and flag constants are macros over global ids; Swift cannot import them. */
static inline hid_t zoo_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t zoo_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t zoo_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t zoo_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t zoo_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t zoo_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t zoo_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t zoo_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t zoo_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t zoo_H5S_ALL(void) { return H5S_ALL; }
static inline unsigned zoo_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned zoo_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned zoo_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned zoo_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline size_t zoo_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline hid_t zoo_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t zoo_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t zoo_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t zoo_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t zoo_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t zoo_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t zoo_H5T_STD_I32LE(void) { return H5T_STD_I32LE; }
static inline hid_t zoo_H5T_STD_U8LE(void) { return H5T_STD_U8LE; }
/* Silence HDF5's automatic error-stack printing; errors are reported as ZooError instead. */
static inline herr_t zoo_H5_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
/* Innermost error description on the default stack (for messages); writes into buf. */
static herr_t zoo_h5_walk_cb(unsigned n, const H5E_error2_t *err, void *data) {
    char *buf = (char *)data;
    if (n == 0 && err && err->desc && err->desc[0]) { snprintf(buf, 255, "%s", err->desc); }
    (void)n; return 0;
}
static inline void zoo_H5_last_error(char *buf) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, zoo_h5_walk_cb, buf);
}
static inline void zoo_H5_clear_errors(void) { H5Eclear2(H5E_DEFAULT); }
#endif
