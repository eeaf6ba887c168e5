#ifndef MC_PLATFORM_H
#define MC_PLATFORM_H
#endif
