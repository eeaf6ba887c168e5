/* jqprog.c */
#include "jqprog.h"
