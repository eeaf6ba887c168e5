/* reply.c */
#include "reply.h"
