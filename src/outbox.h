#ifndef MC_OUTBOX_H
#define MC_OUTBOX_H
#endif
