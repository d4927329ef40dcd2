/// Text cut to a number of UTF-8 bytes, for audit fields and messages that repeat what a sender wrote.
///
/// A cut counted in `Character`s bounds nothing: one Character can carry any number of combining marks.
public enum BoundedText {
    /// `text` cut to at most `bytes` UTF-8 bytes on a Unicode scalar boundary, ending in `marker` when cut
    /// (the marker counts toward the bound).
    public static func cut(_ text: some StringProtocol, bytes: Int, marker: String = "…") -> String {
        guard text.utf8.count > bytes else { return String(text) }
        var kept = String.UnicodeScalarView()
        var used = marker.utf8.count
        for scalar in text.unicodeScalars {
            used += UTF8.width(scalar)
            if used > bytes { break }
            kept.append(scalar)
        }
        return String(kept) + marker
    }
}
