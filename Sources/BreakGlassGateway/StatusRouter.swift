import BreakGlassCore
import BreakGlassHealth
import BreakGlassProxy
import NIOCore
import NIOHTTP1

/// `/v1/health` (and `?ready`) and `/metrics` as the network sees them: errors as step and code,
/// without the words that name addresses and files (`HealthMonitor.withoutDetails`).
public struct StatusRouter: Sendable {
    let monitor: HealthMonitor?

    /// A router answering from `monitor`; nil answers `not_found` for health and metrics.
    public init(monitor: HealthMonitor?) {
        self.monitor = monitor
    }

    /// The answer for a status path, or nil for any other path.
    public func route(_ request: APIRequest) -> APIResponse? {
        switch request.path {
        case "/v1/health":
            guard request.method == .GET || request.method == .HEAD else { return .methodNotAllowed(request, allowed: "GET") }
            guard let monitor else { return .error(BreakGlassError(.notFound, "this gateway keeps no health")) }
            if request.uri.hasSuffix("?ready") {
                // For load balancers: the status says it all.
                let ready = monitor.ready()
                return .json(ready ? .ok : .serviceUnavailable, ["ready": ready], headers: [("Cache-Control", "no-store")])
            }
            let report = HealthMonitor.withoutDetails(monitor.report())
            return .json(report.state == .failing ? .serviceUnavailable : .ok, report, headers: [("Cache-Control", "no-store")])
        case "/metrics":
            guard request.method == .GET else { return .methodNotAllowed(request, allowed: "GET") }
            guard let monitor else { return .error(BreakGlassError(.notFound, "this gateway keeps no metrics")) }
            return Self.metrics(monitor)
        default:
            return nil
        }
    }

    /// The Prometheus text of `monitor`.
    static func metrics(_ monitor: HealthMonitor) -> APIResponse {
        APIResponse(
            status: .ok, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Cache-Control", "no-store")],
            body: ByteBuffer(bytes: monitor.metricsText()))
    }

    /// The whole router of a status listener of its own: the status paths, nothing else.
    public func routeOnly(_ request: APIRequest) -> APIResponse {
        route(request)
            ?? .error(
                BreakGlassError(
                    .notFound, "no route \(BoundedText.cut(request.path, bytes: 200)); this address serves /v1/health and /metrics"))
    }
}
