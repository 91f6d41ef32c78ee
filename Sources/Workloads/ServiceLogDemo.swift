import Learning

/// A synthetic service log for the demo: requests with a duration, cache figures, a heartbeat every
/// `heartbeatEvery` lines and a rare disk warning. Every `faultEvery` lines it injects one fault,
/// rotating through five kinds: a message never logged before, a burst of the disk warning, the
/// heartbeat gone silent, a request a thousand times slower, and a storage component's error cascade.
public struct ServiceLogDemo: Sendable {
    public enum Fault: String, Sendable, CaseIterable { case unseen, burst, silence, parameter, cascade }
    public var faultEvery: Int
    public var heartbeatEvery: Int
    var random: RandomSource
    public private(set) var line = 0

    public init(seed: UInt64 = 11, faultEvery: Int = 2000, heartbeatEvery: Int = 20) {
        random = RandomSource(seed: seed)
        self.faultEvery = faultEvery
        self.heartbeatEvery = heartbeatEvery
    }

    /// The fault active at line `t` and the line it started at, if any (a silence lasts 30
    /// heartbeats, a burst and a cascade 40 lines, slow requests 20 lines).
    public func fault(at t: Int) -> (kind: Fault, start: Int)? {
        let cycle = t / faultEvery
        guard cycle > 0 else { return nil }
        let kind = Fault.allCases[(cycle - 1) % Fault.allCases.count]
        let offset = t % faultEvery
        let length = kind == .silence ? 30 * heartbeatEvery : kind == .burst || kind == .cascade ? 40 : kind == .parameter ? 20 : 1
        return offset < length ? (kind, cycle * faultEvery) : nil
    }

    public mutating func next() -> String {
        defer { line += 1 }
        let fault = self.fault(at: line)
        switch fault?.kind {
        case .unseen?:
            return "ERROR kernel: EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: reading directory lblock 0"
        case .burst? where line % 2 == 0:
            return "WARN disk: usage at \(95 + random.index(below: 5)) percent on /data"
        case .cascade?:
            let messages = [
                "ERROR storage-agent: connection to 10.0.\(random.index(below: 255)).\(random.index(below: 255)):7000 refused",
                "WARN storage-agent: retrying request \(random.index(below: 5) + 1) of 5 after \(random.index(below: 900) + 100) ms",
                "ERROR storage-agent: request \(random.index(below: 1_000_000)) failed: deadline exceeded",
                "FATAL storage-agent: too many consecutive failures, shutting down",
            ]
            return messages[min((line - fault!.start) / 10, 3)]
        default:
            break
        }
        if line % heartbeatEvery == 0 && fault?.kind != .silence { return "INFO heartbeat: node 3 alive, uptime \(line) s" }
        let u = random.uniform()
        if u < 0.6 {
            let ms = fault?.kind == .parameter ? 25_000 + random.index(below: 5000) : 5 + random.index(below: 45)
            return "INFO worker-\(random.index(below: 4)): processed request \(random.index(below: 100_000)) in \(ms) ms"
        }
        if u < 0.99 { return "DEBUG cache: \(random.index(below: 1000)) hits \(random.index(below: 100)) misses" }
        return "WARN disk: usage at \(80 + random.index(below: 10)) percent on /data"
    }
}
