import ArgumentParser
import Pipeline
import ZeroMQ

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a CURVE key pair: NAME.key (both keys, mode 0600) and NAME.pub (the public key).",
        discussion: """
            The daemon takes its own .key as curve_secret_key and the clients' .pub files (a directory of \
            them, or one file listing keys) as curve_allowed_clients; a client takes the daemon's .pub as \
            --server-key and its own .key as --client-key. Existing files are never overwritten.
            """)

    @Argument(help: "Name of the key pair (server, pump-7, ...).") var name: String
    @Option(help: "Directory to write the two files to.") var directory: String = "."

    func validate() throws {
        if name.isEmpty || name.contains("/") { throw ValidationError("the name must be non-empty and contain no '/'") }
    }

    func run() throws {
        guard Curve.isAvailable else { throw ValidationError("this libzmq was built without CURVE") }
        let paths = try KeyFile.write(try Curve.generate(), name: name, directory: directory)
        print("secret key: \(paths.secret)\npublic key: \(paths.public)")
    }
}

/// A client command's CURVE keys: with both, it connects as a CURVE client.
struct CurveOptions: ParsableArguments {
    @Option(help: "The daemon's public key: its .pub file, or the 40-character key. Connects with CURVE.")
    var serverKey: String?
    @Option(help: "This client's secret key file (eddy keygen; mode 0600), whose public key the daemon allows.")
    var clientKey: String?

    func validate() throws {
        if (serverKey == nil) != (clientKey == nil) {
            throw ValidationError("--server-key and --client-key go together")
        }
    }

    /// Makes `socket` a CURVE client if keys were given (before it connects).
    func apply(to socket: borrowing Socket) throws {
        guard let serverKey, let clientKey else { return }
        try socket.makeCurveClient(serverKey: try KeyFile.readPublic(serverKey), keys: try KeyFile.readSecret(clientKey))
    }
}
