import BreakGlassAuditFormat
import BreakGlassCore
import CoreMetrics
import Crypto
import CryptoExtras
import Logging

extension AuditLog {
    /// Loads the checkpoint key named by the settings (Ed25519, PEM PKCS#8, private file).
    public static func loadSigner(settings: AuditSettings, origin: String) throws(AuditLogError) -> NoteSigner {
        let pem: String
        do {
            pem = try KeyFile.readPrivate(path: settings.key)
        } catch {
            throw AuditLogError(.key, error.description)
        }
        do {
            return NoteSigner(name: origin, privateKey: try Curve25519.Signing.PrivateKey(pemRepresentation: pem))
        } catch {
            throw AuditLogError(.key, "\(settings.key) is not an Ed25519 private key in PEM PKCS#8 form")
        }
    }

    /// Opens the log that a policy's `gateway.audit` section describes.
    public static func open(
        settings: AuditSettings, origin: String, metrics: (any MetricsFactory)? = nil, logger: Logger
    ) throws(AuditLogError) -> AuditLog {
        let options = AuditLogOptions(
            segmentSize: settings.segmentSize,
            reserve: settings.reserve,
            mirrors: settings.mirrors,
            checkpointHook: settings.checkpointHook,
            warnFreeBytes: settings.warnFree,
            metrics: metrics
        )
        return try open(
            directory: settings.directory, origin: origin, signer: try loadSigner(settings: settings, origin: origin), options: options,
            logger: logger)
    }
}
