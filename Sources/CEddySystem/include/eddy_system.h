// Thread settings Swift cannot reach on Linux (GNU-only scheduling constants and pthread calls).
#ifndef EDDY_SYSTEM_H
#define EDDY_SYSTEM_H

#ifdef __cplusplus
extern "C" {
#endif

/// Puts the calling thread under SCHED_IDLE: it runs only on CPU time no other thread wants, and the
/// scheduler treats a CPU running it as idle when it places a waking thread. Returns 0 on success,
/// else errno: EPERM when the thread could not leave SCHED_IDLE again (no CAP_SYS_NICE, and
/// RLIMIT_NICE below 20), in which case nothing changed. From then on the thread holds its locks at
/// normal priority (see below).
int eddy_set_thread_idle(void);

/// Priority ceiling for locks shared with an idle thread. Called around every critical section:
/// on a thread that made itself idle, the outermost `enter` switches it to SCHED_OTHER and the
/// matching `leave` back to SCHED_IDLE, so it is never preempted indefinitely while a normal thread
/// waits for the lock it holds (priority inversion). On other threads both are a thread-local read.
void eddy_lock_ceiling_enter(void);
void eddy_lock_ceiling_leave(void);

/// The calling thread's kernel id (gettid), for `eddy_idle_boost`.
int eddy_thread_id(void);

/// Raises the idle thread `tid` to SCHED_OTHER (on = 1) until released (on = 0): the guaranteed share
/// of a trainer that SCHED_IDLE would starve on a saturated machine. While raised, its lock ceiling
/// does not send it back to SCHED_IDLE; released, it returns there as it leaves its next lock.
/// Returns 0 on success, else errno.
int eddy_idle_boost(int tid, int on);

/// Gives the calling thread a nice value (on Linux, per thread). Returns 0 on success, else errno.
int eddy_set_thread_nice(int nice);

/// Names the calling thread (at most 15 bytes are kept), as `top -H` and `perf` show it.
void eddy_set_thread_name(const char *name);

/// Raises the soft limit on open descriptors to the hard limit (every idle TCP connection holds
/// one: 1,024, a common soft default, is exhausted by a thousand idle peers). Writes the limits in
/// force afterwards; returns 0 on success, else errno.
int eddy_raise_descriptor_limit(unsigned long long *soft, unsigned long long *hard);

/// Installs handlers for SIGTERM, SIGINT, SIGUSR1 and SIGHUP that record the signal and wake
/// `eddy_signals_wait`. A handler, not `sigwait` alone: threads that libraries start before `main`
/// (OpenBLAS's pool) do not block the signals, and one delivered there would otherwise take its
/// default action and kill the process.
void eddy_signals_install(void);

/// Waits until one of those signals has arrived; returns its number. Each signal is kept until
/// taken, and a stop (SIGUSR1, then SIGTERM, then SIGINT) is taken before a reload (SIGHUP): a
/// SIGHUP that follows a SIGTERM before the waiter wakes does not hide it.
int eddy_signals_wait(void);

/// Bytes the C allocator has handed out and not had back (glibc's mallinfo2: arena blocks in use plus
/// mmap'd blocks), for measuring what a structure allocates whether or not its pages are touched.
unsigned long long eddy_allocated_bytes(void);

#ifdef __cplusplus
}
#endif

#endif
