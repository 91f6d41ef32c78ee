import ArgumentParser
import Pipeline

@main
struct Eddy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eddy",
        abstract: "A streaming self-supervised learning daemon.",
        discussion: "Shell completions: `eddy --generate-completion-script bash` (or zsh, fish).",
        version: "eddy \(Version.daemon) (wire protocol \(Version.wire))",
        subcommands: [Serve.self, Feed.self, Label.self, Watch.self, SnapshotCommand.self, Replay.self, Eval.self, Bench.self, Keygen.self])
}
