import BreakGlassPAM
import ServiceLifecycle

/// PAM's workers, the sessions file and the denial summaries as a service: it stops after the
/// listeners (so no login or request is in progress), stopping PAM and writing the sessions and
/// the summaries still pending, before the alerts and the audit log stop.
struct SessionLifetime: Service {
    let pam: PAMAuthenticator
    let registry: SessionRegistry
    let denials: DenialLedger

    func run() async {
        try? await gracefulShutdown()
        await pam.shutdown()
        await registry.flush()
        // The refusals still being summarized go on the record before the log closes.
        await denials.flush()
    }
}
