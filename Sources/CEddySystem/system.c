#define _GNU_SOURCE
#include "eddy_system.h"

#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>
#include <sys/resource.h>

static __thread int thread_is_idle;   // this thread chose SCHED_IDLE
static __thread int locks_held;       // nesting depth of ceiling sections
static __thread int thread_id;         // this thread's kernel id, once asked
static atomic_int boosted_thread;      // the idle thread held at SCHED_OTHER (eddy_idle_boost), 0: none

static int set_policy(int policy) {
    struct sched_param param;
    memset(&param, 0, sizeof param);
    // pid 0 is the calling thread: Linux schedules threads, not processes.
    return sched_setscheduler(0, policy, &param) == 0 ? 0 : errno;
}

// Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows nice 0 (20 or more): the
// kernel treats SCHED_IDLE as nice 20. A probe thread tries the round trip, so the caller never
// becomes idle without the ceiling its locks depend on.
static void *probe_round_trip(void *result) {
    int failed = set_policy(SCHED_IDLE);
    if (!failed) failed = set_policy(SCHED_OTHER);
    *(int *)result = failed;
    return NULL;
}

int eddy_set_thread_idle(void) {
    pthread_t probe;
    int probed = EAGAIN;
    if (pthread_create(&probe, NULL, probe_round_trip, &probed) != 0) return EAGAIN;
    pthread_join(probe, NULL);
    if (probed) return probed;
    int failed = set_policy(SCHED_IDLE);
    if (!failed) thread_is_idle = 1;
    return failed;
}

void eddy_lock_ceiling_enter(void) {
    if (thread_is_idle && locks_held++ == 0) set_policy(SCHED_OTHER);
}

int eddy_thread_id(void) {
    if (!thread_id) thread_id = (int)syscall(SYS_gettid);
    return thread_id;
}

void eddy_lock_ceiling_leave(void) {
    // A boost is for one thread (the trainer it names), not every idle thread of the process.
    if (thread_is_idle && --locks_held == 0 && atomic_load(&boosted_thread) != eddy_thread_id()) set_policy(SCHED_IDLE);
}

int eddy_idle_boost(int tid, int on) {
    if (!on) {
        int expected = tid;
        atomic_compare_exchange_strong(&boosted_thread, &expected, 0);
        return 0;  // the thread goes back to SCHED_IDLE as it leaves its next lock
    }
    atomic_store(&boosted_thread, tid);
    struct sched_param param;
    memset(&param, 0, sizeof param);
    return sched_setscheduler(tid, SCHED_OTHER, &param) == 0 ? 0 : errno;
}

int eddy_set_thread_nice(int nice) {
    // PRIO_PROCESS with who 0 sets the calling thread's nice value on Linux.
    return setpriority(PRIO_PROCESS, 0, nice) == 0 ? 0 : errno;
}

void eddy_set_thread_name(const char *name) {
    char shortened[16];
    strncpy(shortened, name, sizeof shortened - 1);
    shortened[sizeof shortened - 1] = 0;
    pthread_setname_np(pthread_self(), shortened);
}

unsigned long long eddy_allocated_bytes(void) {
    struct mallinfo2 m = mallinfo2();
    return (unsigned long long)m.uordblks + (unsigned long long)m.hblkhd;
}

int eddy_raise_descriptor_limit(unsigned long long *soft, unsigned long long *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return errno;
    int result = 0;
    if (limit.rlim_cur < limit.rlim_max) {
        rlim_t wanted = limit.rlim_max;
        limit.rlim_cur = wanted;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) result = errno;
        getrlimit(RLIMIT_NOFILE, &limit);
    }
    *soft = limit.rlim_cur;
    *hard = limit.rlim_max;
    return result;
}

static sem_t signal_arrived;
/* One pending flag per signal handled, so a SIGTERM followed by a SIGHUP before the waiter wakes
   is not overwritten by it (a single "last signal" lost the stop, and the daemon waited for ever). */
static volatile sig_atomic_t pending_term, pending_int, pending_usr1, pending_hup;

static void on_signal(int number) {
    if (number == SIGTERM) pending_term = 1;
    else if (number == SIGINT) pending_int = 1;
    else if (number == SIGUSR1) pending_usr1 = 1;
    else if (number == SIGHUP) pending_hup = 1;
    sem_post(&signal_arrived);  // async-signal-safe
}

void eddy_signals_install(void) {
    sem_init(&signal_arrived, 0, 0);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
}

int eddy_signals_wait(void) {
    for (;;) {
        // A stop (a thread's failure first, then SIGTERM, SIGINT) before a reload.
        if (pending_usr1) { pending_usr1 = 0; return SIGUSR1; }
        if (pending_term) { pending_term = 0; return SIGTERM; }
        if (pending_int) { pending_int = 0; return SIGINT; }
        if (pending_hup) { pending_hup = 0; return SIGHUP; }
        while (sem_wait(&signal_arrived) != 0 && errno == EINTR) {
        }
    }
}
