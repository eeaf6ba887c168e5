/* loop.c */
#include "loop.h"
