import Glibc

/// Who may talk to the admin socket, checked on every connection with the peer's credentials
/// (`SO_PEERCRED`): root, the gateway's own user, and, when the policy names an `admin_group`,
/// that group's members (by primary group or by membership). The socket's file mode keeps others
/// out first; this check holds even when the mode does not.
struct AdminPeers: Sendable, Equatable {
    /// The gateway's own (effective) user.
    var ownUID: uid_t
    /// The admin group's id, when there is one.
    var groupID: gid_t?
    /// Users listed as members of the admin group.
    var memberUIDs: Set<uid_t>

    /// Whether a peer with these credentials may use the socket.
    func admits(uid: uid_t, gid: gid_t) -> Bool {
        if uid == 0 || uid == ownUID || memberUIDs.contains(uid) { return true }
        if let groupID, gid == groupID { return true }
        return false
    }

    /// The peers of this process and of `group` (a group name), looked up in the system's group and
    /// user databases. Called once per start, off the event loops.
    static func resolve(group: String?) throws(AdminSocketError) -> AdminPeers {
        var peers = AdminPeers(ownUID: geteuid(), groupID: nil, memberUIDs: [])
        guard let group else { return peers }
        guard let entry = Self.groupEntry(named: group) else {
            throw AdminSocketError(message: "admin_group \(group): no such group on this host")
        }
        peers.groupID = entry.gid
        for member in entry.members {
            if let uid = Self.uid(of: member) { peers.memberUIDs.insert(uid) }
        }
        return peers
    }

    private static func groupEntry(named name: String) -> (gid: gid_t, members: [String])? {
        var buffer = [CChar](repeating: 0, count: 1 << 16)
        // The record points into `buffer`: it is read inside this closure only.
        return buffer.withUnsafeMutableBufferPointer { storage -> (gid_t, [String])? in
            guard let base = storage.baseAddress else { return nil }
            var record = Glibc.group()
            var result: UnsafeMutablePointer<Glibc.group>?
            guard getgrnam_r(name, &record, base, storage.count, &result) == 0, result != nil else { return nil }
            var members: [String] = []
            if var cursor = record.gr_mem {
                // The list ends with a null pointer; at most 4096 members are read.
                while let member = cursor.pointee, members.count < 4096 {
                    members.append(String(cString: member))
                    cursor += 1
                }
            }
            return (record.gr_gid, members)
        }
    }

    private static func uid(of user: String) -> uid_t? {
        var buffer = [CChar](repeating: 0, count: 1 << 14)
        return buffer.withUnsafeMutableBufferPointer { storage -> uid_t? in
            guard let base = storage.baseAddress else { return nil }
            var record = passwd()
            var result: UnsafeMutablePointer<passwd>?
            guard getpwnam_r(user, &record, base, storage.count, &result) == 0, result != nil else { return nil }
            return record.pw_uid
        }
    }
}

/// Linux's `struct ucred` (`SO_PEERCRED`), which the C library declares only under `_GNU_SOURCE`:
/// three 32-bit fields in this order (pid_t, uid_t, gid_t), 12 bytes, as the kernel's uapi fixes.
struct PeerCredentials: Sendable {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32
}
