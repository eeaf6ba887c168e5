/* outbox.c */
#include "outbox.h"
