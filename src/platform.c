/* platform.c */
#include "platform.h"
