import ArgumentParser
import Pipeline

/// The parts of the detector that `--without` leaves out, for `eddy eval` (what each one finds)
/// and `eddy bench pipeline` (what each one costs): a signal, or one of the alert policy's rules.
enum Ablation {
    static let rules = ["repeat-cap", "hold-off", "evidence", "corroboration", "tail", "young-tail", "band-explains", "count-period-only"]

    static let help = ArgumentHelp(
        "Run without these parts of the detector (comma-separated): a signal (range, glitch, reconstruction, period, discord, noise, stuck, level, correlation, surge; for logs template, parameter, burst, silence), repeat-cap, hold-off, evidence (alert_evidence), corroboration (range_corroboration), tail (range_tail), young-tail (range_tail_young), band-explains (band_explains), count-period-only (discord_count_period_only).",
        valueName: "parts")

    /// The names in `list` (comma-separated), each checked; empty names are skipped.
    static func parts(_ list: String?) throws -> [String] {
        let parts = (list ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for part in parts where !DetectionChain.knownSignals.contains(part) && !rules.contains(part) {
            throw ValidationError("--without: unknown part \"\(part)\" (\((DetectionChain.knownSignals + rules).joined(separator: ", ")))")
        }
        return parts
    }

    /// `settings` without the parts named in `list`.
    static func apply(_ list: String?, to settings: inout StreamConfiguration) throws {
        for part in try parts(list) {
            switch part {
            case "repeat-cap": settings.repeatWindow = 0
            case "hold-off": settings.alertHoldOff = 0
            case "evidence": (settings.alertEvidence, settings.logAlertEvidence) = (0, 0)
            case "corroboration": settings.rangeCorroboration = 0
            case "tail": settings.rangeTail = 0
            case "young-tail": settings.rangeTailYoung = false
            case "band-explains": settings.bandExplains = false
            case "count-period-only": settings.discordCountPeriodOnly = false
            default: settings.signals.removeAll { $0 == part }
            }
        }
    }
}
