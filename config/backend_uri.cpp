#include "config/backend_uri.hpp"

#include <libpq-fe.h>

#include <charconv>
#include <memory>

namespace switchyard::config {
namespace {

struct ConninfoDeleter {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};

Result<SslMode> parse_sslmode(std::string_view text) {
  if (text == "disable") return SslMode::kDisable;
  if (text == "allow") return SslMode::kAllow;
  if (text == "prefer") return SslMode::kPrefer;
  if (text == "require") return SslMode::kRequire;
  if (text == "verify-ca") return SslMode::kVerifyCa;
  if (text == "verify-full") return SslMode::kVerifyFull;
  return Error{"invalid sslmode '" + std::string(text) +
               "' (disable, allow, prefer, require, verify-ca, verify-full)"};
}

// sockaddr_un's sun_path holds 108 bytes, the terminating NUL included.
constexpr size_t kMaxSocketPath = 107;

// A URI's host as libpq reads it back: a socket directory's slashes percent-encoded.
std::string uri_host(const std::string& host) {
  std::string out;
  for (char c : host) {
    if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out;
}

} // namespace

std::string BackendTarget::socket_path() const {
  return host + "/.s.PGSQL." + std::to_string(port);
}

std::string BackendTarget::endpoint() const {
  if (kind == BackendKind::kSqlite) return "SQLite file \"" + path + "\"";
  if (unix_socket()) return "socket \"" + socket_path() + "\"";
  return host + ":" + std::to_string(port);
}

const char* to_string(SslMode mode) {
  switch (mode) {
  case SslMode::kDisable: return "disable";
  case SslMode::kAllow: return "allow";
  case SslMode::kPrefer: return "prefer";
  case SslMode::kRequire: return "require";
  case SslMode::kVerifyCa: return "verify-ca";
  case SslMode::kVerifyFull: return "verify-full";
  }
  return "?";
}

Result<BackendTarget> parse_sqlite_uri(std::string_view uri) {
  constexpr std::string_view kScheme = "sqlite:";
  if (!uri.starts_with(kScheme)) return Error{"a SQLite URI starts with sqlite:"};
  std::string_view rest = uri.substr(kScheme.size());
  BackendTarget target;
  target.kind = BackendKind::kSqlite;
  target.sslmode = SslMode::kDisable;
  if (size_t query = rest.find('?'); query != std::string_view::npos) {
    std::string_view option = rest.substr(query + 1);
    rest = rest.substr(0, query);
    constexpr std::string_view kBusy = "busy_timeout=";
    if (!option.starts_with(kBusy)) {
      return Error{"unknown SQLite URI option '" + std::string(option) +
                   "' (only busy_timeout=<ms>)"};
    }
    option.remove_prefix(kBusy.size());
    unsigned ms = 0;
    auto [ptr, ec] = std::from_chars(option.data(), option.data() + option.size(), ms);
    if (ec != std::errc() || ptr != option.data() + option.size()) {
      return Error{"invalid busy_timeout '" + std::string(option) + "' (milliseconds)"};
    }
    target.busy_timeout = std::chrono::milliseconds(ms);
  }
  // sqlite:///abs/path has an empty authority before the absolute path; anything else after
  // "//" would be a host, which a file does not have.
  if (rest.starts_with("//")) {
    rest.remove_prefix(2);
    if (!rest.starts_with('/')) {
      return Error{"a SQLite URI names a file: sqlite:///absolute/path.db or sqlite:relative.db"};
    }
  }
  if (rest.empty() || rest.back() == '/') return Error{"no SQLite database file given"};
  target.path = std::string(rest);
  target.redacted = "sqlite:" + target.path;
  return target;
}

Result<BackendTarget> parse_backend_uri(std::string_view uri) {
  if (uri.starts_with("sqlite:")) return parse_sqlite_uri(uri);
  std::string text(uri);
  char* raw_error = nullptr;
  std::unique_ptr<PQconninfoOption, ConninfoDeleter> options(
      PQconninfoParse(text.c_str(), &raw_error));
  if (!options) {
    std::string why = raw_error ? raw_error : "out of memory";
    PQfreemem(raw_error);
    while (!why.empty() && why.back() == '\n')
      why.pop_back();
    return Error{why};
  }
  BackendTarget target;
  std::string port_text;
  std::string timeout_text;
  for (PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view key = o->keyword;
    std::string value = o->val;
    if (key == "host" || key == "hostaddr") {
      if (!target.host.empty() && key == "host") continue; // hostaddr wins over host
      target.host = value;
    } else if (key == "port") {
      port_text = value;
    } else if (key == "user") {
      target.user = value;
    } else if (key == "password") {
      target.password = value;
    } else if (key == "dbname") {
      target.dbname = value;
    } else if (key == "sslmode") {
      auto mode = parse_sslmode(value);
      if (!mode) return Error{mode.error()};
      target.sslmode = *mode;
    } else if (key == "sslrootcert") {
      target.sslrootcert = value;
    } else if (key == "sslcert") {
      target.sslcert = value;
    } else if (key == "sslkey") {
      target.sslkey = value;
    } else if (key == "connect_timeout") {
      timeout_text = value;
    }
  }
  if (target.host.empty()) return Error{"no host given (e.g. postgresql://user@127.0.0.1:5432/db)"};
  if (target.host.find(',') != std::string::npos) return Error{"several hosts are not supported"};
  if (target.host.starts_with('@')) {
    return Error{"abstract-namespace Unix-domain sockets (host=@...) are not supported; name "
                 "the socket's directory (host=/var/run/postgresql)"};
  }
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return Error{"invalid port '" + port_text + "'"};
    }
    target.port = static_cast<uint16_t>(port);
  }
  if (!timeout_text.empty()) {
    int seconds = 0;
    auto [ptr, ec] =
        std::from_chars(timeout_text.data(), timeout_text.data() + timeout_text.size(), seconds);
    if (ec != std::errc() || seconds < 0)
      return Error{"invalid connect_timeout '" + timeout_text + "'"};
    if (seconds > 0) target.connect_timeout = std::chrono::seconds(seconds);
  }
  if (target.unix_socket() && target.socket_path().size() > kMaxSocketPath) {
    return Error{"Unix-domain socket path \"" + target.socket_path() + "\" is too long (at most " +
                 std::to_string(kMaxSocketPath) + " bytes)"};
  }
  target.redacted =
      "postgresql://" +
      (target.user.empty() ? "" : target.user + (target.password.empty() ? "@" : ":***@")) +
      uri_host(target.host) + ":" + std::to_string(target.port) + "/" + target.dbname +
      "?sslmode=" + to_string(target.sslmode);
  return target;
}

} // namespace switchyard::config
