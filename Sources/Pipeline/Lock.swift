#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex. The daemon's threads share a stream's buffer, normaliser and calibrator under
/// one; nothing blocking or slow (no socket call, no training step) runs while it is held.
public final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A counter many threads add to and read (a heartbeat's figures).
public final class Counter: @unchecked Sendable {
    private let lock = Lock()
    private var value: UInt64 = 0

    public init(_ initial: UInt64 = 0) { value = initial }

    public func add(_ n: UInt64 = 1) { lock.withLock { value &+= n } }
    public var load: UInt64 { lock.withLock { value } }
}
