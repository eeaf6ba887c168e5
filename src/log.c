/* log.c */
#include "log.h"
