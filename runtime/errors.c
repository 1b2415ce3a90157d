#include "errors.h"

const char *eddy_strerror(int code) {
  switch (code) {
#define EDDY_ERRNO_CASE(name, c, text) case c: return text;
    EDDY_ERRNO_MAP(EDDY_ERRNO_CASE)
#undef EDDY_ERRNO_CASE
  }
  return "unknown error";
}

const char *eddy_err_name(int code) {
  switch (code) {
#define EDDY_ERRNO_CASE(name, c, text) case c: return "EDDY_" #name;
    EDDY_ERRNO_MAP(EDDY_ERRNO_CASE)
#undef EDDY_ERRNO_CASE
  }
  return "EUNKNOWN";
}
