#ifndef MC_INBOX_H
#define MC_INBOX_H
#endif
