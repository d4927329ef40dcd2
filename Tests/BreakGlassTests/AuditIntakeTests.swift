import BreakGlassAuditFormat
import BreakGlassCore
import Testing

@testable import BreakGlassAuditLog

/// `AuditIntake` with plain values: what the audit log takes in, and what it refuses, in each of
/// its conditions.
@Suite struct AuditIntakeTests {
    @Test func aFullQueueCountsReservationsAndRefusesNewEvents() {
        var intake = AuditIntake(maximumPending: 3)
        #expect(intake.accepts(.request, queued: 2))
        let reserved = intake.reserve(.request, queued: 1)
        #expect(reserved)
        #expect(intake.reservations == 1)
        // One queued + one reserved + this one would pass the cap of 3 only at 3.
        #expect(intake.refusal(for: .request, reserved: false, queued: 1) == nil)
        #expect(intake.refusal(for: .grantReleased, reserved: false, queued: 2)?.contains("behind") == true)
        let refused = intake.reserve(.request, queued: 2)
        #expect(refused == false)
        // A reserved event passes a full queue, and uses its place.
        #expect(intake.refusal(for: .request, reserved: true, queued: 2) == nil)
        #expect(intake.reservations == 0)
    }

    @Test func aPlaceGivenBackOrUsedTwiceNeverGoesNegative() {
        var intake = AuditIntake(maximumPending: 2)
        intake.cancelReservation()
        #expect(intake.reservations == 0)
        #expect(intake.refusal(for: .request, reserved: true, queued: 0) == nil)
        #expect(intake.reservations == 0)
        #expect(intake.accepts(.request, queued: 1))
    }

    @Test func theReserveKeepsRoomForSessionEndsAndAlarms() {
        var intake = AuditIntake(maximumPending: 100)
        let entered = intake.enterReserve()
        let again = intake.enterReserve()
        #expect(entered && !again, "entered once")
        for kind in [AuditEvent.Kind.grantIssued, .request, .tunnelOpened, .grantDenied, .requestDenied] {
            #expect(intake.refusal(for: kind, reserved: false, queued: 0)?.contains("disk is full") == true)
            let taken = intake.reserve(kind, queued: 0)
            #expect(taken == false)
        }
        for kind in [AuditEvent.Kind.grantReleased, .grantRevoked, .tunnelClosed, .grantExpired] {
            #expect(intake.refusal(for: kind, reserved: false, queued: 0) == nil)
        }
        // A place taken before the disk filled is honoured.
        #expect(intake.refusal(for: .request, reserved: true, queued: 0) == nil)
        #expect(intake.health == .degraded("the audit disk is full: grants and access are refused; session ends still recorded"))
        intake.leaveReserve()
        #expect(intake.health == .ok)
        #expect(intake.accepts(.request, queued: 0))
    }

    @Test func aStoppedOrClosingLogRefusesEverythingEvenReservedPlaces() {
        var stopped = AuditIntake(maximumPending: 10)
        let reserved = stopped.reserve(.request, queued: 0)
        let first = stopped.stop(AuditLogError(.full, "disk gone"))
        let second = stopped.stop(AuditLogError(.key, "later"))
        #expect(reserved && first)
        #expect(second == false, "the first reason stays")
        #expect(stopped.refusal(for: .request, reserved: true, queued: 0) == "disk gone")
        #expect(stopped.reservations == 0)
        #expect(stopped.refusal(for: .grantReleased, reserved: false, queued: 0) == "disk gone")
        #expect(stopped.health == .failed("disk gone"))

        var closing = AuditIntake(maximumPending: 10)
        closing.close()
        #expect(closing.refusal(for: .tunnelClosed, reserved: true, queued: 0) == "the audit log is closing")
        #expect(closing.accepts(.grantReleased, queued: 0) == false)
    }

    @Test func aWarningDegradesWithoutRefusing() {
        var intake = AuditIntake(maximumPending: 10)
        intake.warn("mirror /m failed")
        #expect(intake.health == .degraded("mirror /m failed"))
        #expect(intake.accepts(.request, queued: 0))
    }
}
