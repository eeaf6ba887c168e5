/* inbox.c */
#include "inbox.h"
