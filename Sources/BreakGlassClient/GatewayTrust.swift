import Foundation
import NIOSSL

/// The certificates a client checks the gateway's certificate against, so that a failed check can
/// say which were used and how to give others.
public enum GatewayTrust: Sendable, Hashable {
    /// The CA certificates in a PEM file (from `--ca FILE` or `BREAKGLASS_CA`).
    case caFile(String)
    /// The system's trust store (neither `--ca` nor `BREAKGLASS_CA` given).
    case systemRoots

    /// The trust for a CA file, or the system's trust store when `caFile` is nil.
    public init(caFile: String?) {
        self = caFile.map { .caFile($0) } ?? .systemRoots
    }

    /// How to give the client the right CA.
    static let remedy = "give the CA that signed the gateway's certificate with --ca FILE or BREAKGLASS_CA=FILE"

    /// The words for a TLS failure, or nil when `error` is not one. `trust` is nil when the caller
    /// did not say which certificates it trusts.
    static func words(for error: any Error, trust: GatewayTrust?) -> String? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "the gateway's certificate is not issued for the host name or address in the gateway URL; "
                + "use the name the certificate was issued for"
        }
        guard let ssl = error as? NIOSSLError else { return nil }
        switch ssl {
        case .handshakeFailed(let failure):
            let reasons = Self.reasons(failure)
            if reasons.contains("CERTIFICATE_VERIFY_FAILED") { return untrusted(trust) }
            guard let first = reasons.first else { return "the TLS handshake with the gateway failed (\(failure))" }
            return "the TLS handshake with the gateway failed (\(first.lowercased().replacingOccurrences(of: "_", with: " ")))"
        case .uncleanShutdown:
            return "the gateway closed the TLS connection without a TLS close"
        case .noCertificateToValidate, .unableToValidateCertificate:
            return "the gateway sent no certificate that could be checked"
        default:
            return "TLS failed (\(ssl))"
        }
    }

    /// The sentence for a gateway certificate that did not verify.
    static func untrusted(_ trust: GatewayTrust?) -> String {
        let checked: String
        switch trust {
        case .caFile(let path):
            checked = "the CA in \(path) (from --ca or BREAKGLASS_CA)"
        case .systemRoots:
            checked = "the system trust store (no --ca or BREAKGLASS_CA was given)"
        case nil:
            checked = "the CA this client trusts"
        }
        return "the gateway's certificate is not trusted: it was checked against \(checked) and is signed by another CA "
            + "(or has expired); \(remedy)"
    }

    /// BoringSSL's reason codes in an error stack, e.g. `CERTIFICATE_VERIFY_FAILED`, without the
    /// numbers and source paths around them.
    static func reasons(_ failure: BoringSSLError) -> [String] {
        let stack: NIOBoringSSLErrorStack
        switch failure {
        case .sslError(let errors), .unknownError(let errors), .invalidSNIName(let errors), .failedToSetALPN(let errors):
            stack = errors
        default:
            return []
        }
        return stack.compactMap { error in
            // "Error: N error:1000007d:SSL routines:OPENSSL_internal:REASON at FILE:LINE"
            let text = "\(error)"
            guard let start = text.range(of: " error:") else { return nil }
            var entry = text[start.upperBound...]
            if let end = entry.range(of: " at ") { entry = entry[..<end.lowerBound] }
            return entry.split(separator: ":").last.map(String.init)
        }
    }
}
