#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/result.hpp"

namespace switchyard::config {

//! libpq's sslmode values for connections to a backend.
enum class SslMode { kDisable, kAllow, kPrefer, kRequire, kVerifyCa, kVerifyFull };

//! What kind of database a backend is.
enum class BackendKind {
  kPostgres, //!< a PostgreSQL server reached over the wire
  kSqlite,   //!< a SQLite file served by switchyard's in-process engine
};

//! Where a backend is and how to log in to it, from a libpq-style URI or key=value string,
//! or a sqlite: URI.
struct BackendTarget {
  BackendKind kind = BackendKind::kPostgres;
  std::string path;                             //!< SQLite only: the database file
  std::chrono::milliseconds busy_timeout{5000}; //!< SQLite only: longest wait for the writer
  std::string host; //!< a name or address; starting with '/': the directory of a Unix socket
  uint16_t port = 5432;
  std::string user;     //!< empty: log in as the client's user
  std::string password; //!< empty: use the client user's password from the config
  std::string dbname;   //!< empty: use the database the client asked for
  SslMode sslmode = SslMode::kPrefer;
  std::string sslrootcert;
  std::string sslcert;
  std::string sslkey;
  std::chrono::milliseconds connect_timeout{5000};
  std::string redacted; //!< the URI with the password masked, safe for logs and /status

  bool operator==(const BackendTarget&) const = default;

  //! Whether the server is reached through a Unix-domain socket (host is its directory), as
  //! libpq does; TLS is then never negotiated, whatever sslmode says.
  bool unix_socket() const { return host.starts_with('/'); }
  //! The Unix-domain socket's file: `<host>/.s.PGSQL.<port>`.
  std::string socket_path() const;
  //! Where the database is, for messages: `host:port`, `socket "<path>"` or
  //! `SQLite file "<path>"`.
  std::string endpoint() const;
};

//! Parses `uri` with libpq's own parser, so every form libpq accepts works the same here.
//! A host starting with '/' is a Unix-socket directory; several hosts are refused with the
//! reason. A SQLite file is named `sqlite:///absolute/path.db` or `sqlite:relative/path.db`,
//! optionally followed by `?busy_timeout=<ms>`.
Result<BackendTarget> parse_backend_uri(std::string_view uri);

//! Parses a sqlite: URI (see parse_backend_uri).
Result<BackendTarget> parse_sqlite_uri(std::string_view uri);

const char* to_string(SslMode mode);

} // namespace switchyard::config
