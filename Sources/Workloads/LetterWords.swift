/// Words of letters only, one for each number, never two alike: a log line made of them is never
/// masked by the template miner (nothing in it looks like a value), so each distinct number gives
/// a distinct token. For log workloads and tests.
public enum LetterWords {
    /// `n` in base 26 with the letters a to z, least significant first (0 is "a").
    public static func word(_ n: Int) -> String {
        var n = n, out = ""
        repeat {
            out.append(Character(Unicode.Scalar(UInt8(97 + n % 26))))
            n /= 26
        } while n > 0
        return out
    }
}
