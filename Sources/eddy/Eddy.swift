import ArgumentParser

@main
struct Eddy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eddy",
        abstract: "A streaming self-supervised learning daemon.",
        subcommands: [Serve.self, Feed.self, Watch.self, SnapshotCommand.self, Replay.self, Eval.self, Bench.self, Keygen.self])
}
