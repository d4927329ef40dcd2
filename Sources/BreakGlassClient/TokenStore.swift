import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Stored grants of the local user, one 0600 file per pathway in a 0700 folder.
public struct TokenStore: Sendable {
    /// The folder holding the token files.
    public let directory: String

    /// `BREAKGLASS_HOME`, else `$XDG_CONFIG_HOME/breakglass`, else `~/.config/breakglass`; tokens live in `tokens/`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let base: String
        if let home = environment["BREAKGLASS_HOME"], !home.isEmpty {
            base = home
        } else if let config = environment["XDG_CONFIG_HOME"], !config.isEmpty {
            base = config + "/breakglass"
        } else {
            base = (environment["HOME"] ?? NSHomeDirectory()) + "/.config/breakglass"
        }
        self.directory = base + "/tokens"
    }

    /// A store in `directory`.
    public init(directory: String) {
        self.directory = directory
    }

    /// Saves the grant for its pathway, replacing an older one atomically.
    public func save(_ grant: StoredGrant) throws(ClientError) {
        try makeDirectory()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        encoder.dateEncodingStrategy = .iso8601
        guard let data = try? encoder.encode(grant) else {
            throw ClientError(code: "token_store", message: "cannot encode the grant")
        }
        let path = file(for: grant.grant.pathway)
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("cannot write \(temporary)") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw failure("cannot write \(path)")
        }
    }

    /// The stored grant for a pathway, or nil when there is none.
    public func load(pathway: String) throws(ClientError) -> StoredGrant? {
        let path = file(for: pathway)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & 0o077) == 0 else {
            throw ClientError(code: "token_store", message: "\(path) is readable by others; remove it and log in again")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw failure("cannot read \(path)") }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(StoredGrant.self, from: data)
        } catch {
            throw ClientError(code: "token_store", message: "\(path) is damaged (\(error)); log in again")
        }
    }

    /// Every stored grant, sorted by pathway; damaged files are skipped.
    public func all() -> [StoredGrant] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { $0.hasSuffix(".json") }.sorted().compactMap { name in
            try? load(pathway: String(name.dropLast(5)))
        }
    }

    /// Deletes the stored grant for a pathway.
    public func remove(pathway: String) {
        unlink(file(for: pathway))
    }

    func file(for pathway: String) -> String {
        let safe = pathway.unicodeScalars.map {
            CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0) ? String($0) : "_"
        }.joined()
        return directory + "/" + (safe.hasPrefix(".") ? "_" + safe : safe) + ".json"
    }

    private func makeDirectory() throws(ClientError) {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ClientError(code: "token_store", message: "cannot create \(directory): \(error)")
        }
        chmod(directory, 0o700)
    }

    private func failure(_ message: String) -> ClientError {
        ClientError(code: "token_store", message: "\(message): \(String(cString: strerror(errno)))")
    }
}

/// A grant as stored locally, with the gateway it came from.
public struct StoredGrant: Codable, Sendable, Equatable {
    /// The gateway that issued the grant (`https://HOST:PORT`).
    public var gateway: String
    /// The grant, with its token.
    public var grant: IssuedGrant

    /// A stored grant from `gateway`.
    public init(gateway: String, grant: IssuedGrant) {
        self.gateway = gateway
        self.grant = grant
    }
}
