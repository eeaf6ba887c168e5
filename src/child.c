/* child.c */
#include "child.h"
