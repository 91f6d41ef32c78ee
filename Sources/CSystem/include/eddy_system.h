// Thread settings Swift cannot reach on Linux (GNU-only scheduling constants and pthread calls).
#ifndef EDDY_SYSTEM_H
#define EDDY_SYSTEM_H

#ifdef __cplusplus
extern "C" {
#endif

/// Puts the calling thread under SCHED_IDLE: it runs only on CPU time no other thread wants, and the
/// scheduler treats a CPU running it as idle when it places a waking thread. Returns 0 on success,
/// else errno.
int eddy_set_thread_idle(void);

/// Gives the calling thread a nice value (on Linux, per thread). Returns 0 on success, else errno.
int eddy_set_thread_nice(int nice);

/// Names the calling thread (at most 15 bytes are kept), as `top -H` and `perf` show it.
void eddy_set_thread_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif
