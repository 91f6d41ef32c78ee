import ArgumentParser
import Foundation
import Logging
import CEddySystem
import Pipeline

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon: ingest samples, learn continuously, publish scores, alerts and models.",
        discussion: """
            With no options it binds 127.0.0.1 (ingest 7700, publish 7701, snapshots 7702, HTTP 7703 \
            for /metrics, /healthz and /readyz) and keeps checkpoints in ./eddy-data. SIGTERM or SIGINT \
            stops ingest, checkpoints, and exits 0 (1 if that checkpoint could not be written). The bound endpoints are printed on standard output, \
            one line each, as `ingest ENDPOINT`, `publish ENDPOINT`, `snapshots ENDPOINT` and, when the \
            HTTP endpoint is on, `http HOST:PORT` (useful with port * and 0). Under systemd with \
            Type=notify it reports READY=1 once serving and STOPPING=1 on the way out, and feeds \
            WatchdogSec= while every thread makes progress.
            """)

    @Option(help: "PULL endpoint for samples.") var ingest: String?
    @Option(help: "PUB endpoint for scores, alerts, snapshots, heartbeats and errors.") var publish: String?
    @Option(help: "REP endpoint serving the latest snapshot of a stream's model.") var snapshots: String?
    @Option(name: .customLong("data-dir"), help: "Checkpoint directory ('' for none).") var dataDirectory: String?
    @Option(help: "HTTP endpoint HOST:PORT for /metrics, /healthz and /readyz ('' for none; port 0 picks one).")
    var http: String?
    @Option(help: "Configuration file (`eddy serve --print-config` prints every key with its default).") var config: String?
    @Flag(help: "Print the configuration file with every key at its default, and exit.") var printConfig = false
    @Flag(help: "Check the configuration (--config and the options) as a start would, key files included, and exit: 0 if it would start, 1 with the reason. Nothing is bound, made or written.")
    var checkConfig = false
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info
    @Option(help: "Log records on standard error: text, json (one object per line) or journal (sd-daemon priority prefixes; chosen by itself under journald).")
    var logFormat: LogFormat = .text

    func run() throws {
        if printConfig {
            // It prints the defaults: with a file, the operator meant to check the file.
            guard config == nil else {
                throw ValidationError("--print-config prints the defaults, not a file's settings: --check-config --config \(config!) checks a file")
            }
            print(DaemonConfiguration.file)
            return
        }
        var configuration = try loadConfiguration(config)
        if let ingest { configuration.ingest = ingest }
        if let publish { configuration.publish = publish }
        if let snapshots { configuration.snapshots = snapshots }
        if let http { configuration.http = http }
        if let dataDirectory { configuration.dataDirectory = dataDirectory }
        if checkConfig {
            try Daemon.check(configuration)
            print("configuration ok: \(config ?? "the defaults"), \(configuration.streams.count) declared streams, data directory "
                + (configuration.dataDirectory.isEmpty ? "none" : configuration.dataDirectory))
            return
        }
        let logger = makeLogger("eddy.serve", level: logLevel, format: logFormat)
        let systemd = SystemdNotifier()

        // Every thread the daemon starts inherits this mask, so its sockets' calls are never
        // interrupted; the main thread unblocks the signals once the daemon runs, and a handler
        // (on whichever thread the kernel picks: threads libraries started before main do not
        // block them) wakes the wait below.
        eddy_signals_install()
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGUSR1)  // a daemon thread died (below)
        sigaddset(&signals, SIGHUP)  // read the allow-list again
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        // Every idle TCP connection holds a descriptor, and checkpoints need one too: take all the
        // descriptors the hard limit allows rather than a soft default of 1,024.
        var soft: UInt64 = 0, hard: UInt64 = 0
        let raised = eddy_raise_descriptor_limit(&soft, &hard)
        logger.info("descriptor limit", metadata: ["limit.soft": "\(soft)", "limit.hard": "\(hard)"])
        if raised != 0 || soft < 4096 {
            logger.warning(
                "few descriptors: each producer, subscriber and snapshot client connection holds one (raise LimitNOFILE)",
                metadata: ["limit.soft": "\(soft)", "errno": "\(raised)"])
        }

        let daemon = try Daemon(configuration: configuration, logger: logger)
        // A thread that dies wakes the wait below as a signal would: the process must not live on
        // without it (systemd's Restart=on-failure needs a non-zero exit to act).
        daemon.onThreadFailure = { _, _ in kill(getpid(), SIGUSR1) }
        let endpoints = try daemon.start()
        print("ingest \(endpoints.ingest)\npublish \(endpoints.publish)\nsnapshots \(endpoints.snapshots)")
        if let http = daemon.httpEndpoint { print("http \(http)") }
        flushStandardOutput()
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        let environment = ProcessInfo.processInfo.environment
        if let thread = environment["EDDY_TEST_FAULT"] { daemon.injectFault(into: thread) }
        if let thread = environment["EDDY_TEST_STALL"] { daemon.injectStall(into: thread) }
        let stopping = StopFlag()
        if let systemd {
            systemd.notify("READY=1\nSTATUS=serving \(daemon.allStreams.count) streams\nMAINPID=\(getpid())")
            systemd.feedWatchdog(daemon, stopped: { stopping.isSet })
        }
        var received = eddy_signals_wait()
        while received == SIGHUP {
            daemon.reloadAllowList()
            received = eddy_signals_wait()
        }
        systemd?.notify("STOPPING=1")
        defer { stopping.set() }
        if received == SIGUSR1, let failure = daemon.failure {
            logger.critical("stopping: a thread failed", metadata: ["thread": "\(failure.thread)", "error": "\(failure.error)"])
            daemon.stop()
            throw ExitCode(70)  // EX_SOFTWARE
        }
        logger.info("stopping", metadata: ["signal": "\(received == SIGTERM ? "SIGTERM" : received == SIGINT ? "SIGINT" : "SIGUSR1")"])
        daemon.stop()
        if daemon.stoppedWithoutCheckpoint {
            logger.critical("stopped without its final checkpoint (above): the state since the last checkpoint is lost")
            throw ExitCode(1)
        }
        logger.info("stopped")
    }
}

func loadConfiguration(_ path: String?) throws -> DaemonConfiguration {
    guard let path else { return DaemonConfiguration() }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CommandFailure("cannot read configuration file \(path)")
    }
    return try ConfigurationFile.parse(String(decoding: data, as: UTF8.self))
}

/// Logs to standard error: the daemon's standard output carries only its endpoints.
func makeLogger(_ label: String, level: Logger.Level, format: LogFormat = .text) -> Logger {
    let format = format == .text && LogFormat.journalIsStandardError() ? .journal : format
    LoggingSystem.bootstrap { label in
        switch format {
        case .text: StreamLogHandler.standardError(label: label)
        case .json, .journal: LineLogHandler(label: label, format: format)
        }
    }
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
}

/// A misspelt level is a usage error, not a quiet `info` (from review).
extension Logger.Level: @retroactive ExpressibleByArgument {}
