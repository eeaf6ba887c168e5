#ifndef MC_CHILD_H
#define MC_CHILD_H
#endif
