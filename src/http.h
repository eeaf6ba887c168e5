#ifndef MC_HTTP_H
#define MC_HTTP_H
#endif
