/* http.c */
#include "http.h"
