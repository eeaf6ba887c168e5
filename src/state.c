/* state.c */
#include "state.h"
