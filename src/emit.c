/* emit.c */
#include "emit.h"
