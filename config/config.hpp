#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/backend_uri.hpp"
#include "protocol/result.hpp"

namespace switchyard::config {

//! How clients prove who they are.
enum class AuthMethod { kTrust, kPassword, kMd5, kScramSha256 };
//! Whether clients may or must use TLS.
enum class ClientTlsMode { kOff, kAllow, kRequire };
enum class WriteMode { kSync, kAsync };
//! What happens to DDL while mirroring.
enum class DdlPolicy { kMirror, kPrimaryOnly, kReject };
enum class LogFormat { kText, kJson };

//! An address to listen on.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
  bool operator==(const ListenAddress&) const = default;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

//! A user clients may log in as. At least one credential is set unless auth is trust.
struct User {
  std::string name;
  std::string password;       //!< plain text; also used to log in to backends as this user
  std::string scram_verifier; //!< "SCRAM-SHA-256$..." as in pg_authid
  std::string md5_hash;       //!< "md5..." as in pg_authid
  bool operator==(const User&) const = default;
};

struct Limits {
  uint32_t max_clients = 1000;
  uint32_t max_message_size = 64u << 20;
  //! Statements one query text may hold when switchyard mirrors (each costs it some memory
  //! to classify); a text of more is refused.
  uint32_t max_statements_per_query = 100'000;
  std::chrono::milliseconds startup_timeout{10'000};
  std::chrono::milliseconds client_idle_timeout{0};         //!< 0: never
  std::chrono::milliseconds idle_in_transaction_timeout{0}; //!< 0: never
  //! Primary connections kept, reset, after their clients log off, for the next client
  //! with the same login (0: none are kept), and for how long each is kept.
  uint32_t pooled_backends = 20;
  std::chrono::milliseconds pooled_backend_idle_timeout{60'000};
  bool operator==(const Limits&) const = default;
};

//! How writes reach the secondary.
struct MirrorSettings {
  std::chrono::milliseconds timeout{2'000}; //!< longest a write waits for the secondary
  DdlPolicy ddl = DdlPolicy::kMirror;
  uint32_t max_transaction_bytes = 64u << 20; //!< buffered per transaction; more is journaled
  uint32_t async_queue = 10'000; //!< async mode: committed transactions waiting, process-wide
  //! async mode: what the waiting transactions' writes may keep in memory, process-wide.
  uint64_t async_queue_bytes = uint64_t{256} << 20;
  //! A secondary connection sessions take turns on, idle this long, is closed.
  std::chrono::milliseconds shared_idle_timeout{10'000};
  std::string journal_path = "switchyard-data/divergence.jsonl";
  bool operator==(const MirrorSettings&) const = default;
};

//! What puts a session into the read cohort.
enum class CohortKey { kSession, kUser, kApplicationName, kClientAddress };
//! How long a read-routing decision holds: one statement, one transaction, or the session.
enum class DecisionUnit { kStatement, kTransaction, kSession };

//! Which reads go to the secondary.
struct ReadRouting {
  double percent = 0; //!< 0-100, fractional allowed (the top-level read_percent key)
  CohortKey key = CohortKey::kSession;
  DecisionUnit unit = DecisionUnit::kStatement;
  std::vector<std::pair<std::string, double>> user_percent;        //!< overrides by user
  std::vector<std::pair<std::string, double>> application_percent; //!< by application_name
  double compare_percent = 0; //!< share of reads also run on the other side and compared
  std::vector<std::string> safe_functions;  //!< functions beyond the built-in read allow-list
  std::chrono::milliseconds timeout{2'000}; //!< a secondary read slower than this is retried
  bool operator==(const ReadRouting&) const = default;
};

//! A gate trips when its value over the window exceeds `max`, once `min_samples` are in.
struct GateLimit {
  bool enabled = true;
  double max = 0;
  uint64_t min_samples = 0;
  bool operator==(const GateLimit&) const = default;
};

//! The cutover's persistence, ramp plan and gates (the `cutover` section).
struct CutoverSettings {
  std::string state_file = "switchyard-data/cutover.json"; //!< when no fleet Redis is set
  std::string audit_log = "switchyard-data/audit.jsonl";
  std::vector<double> steps{1, 5, 10, 25, 50, 100}; //!< ramp percentages, ascending
  std::chrono::milliseconds soak{600'000};          //!< least time on a step before the next
  bool auto_advance = false;
  //! After a role swap, how long a session with the old roles may stay in its transaction.
  std::chrono::milliseconds swap_timeout{10'000};
  std::chrono::milliseconds gate_window{60'000};  //!< the sliding window gates look at
  std::chrono::milliseconds gate_interval{5'000}; //!< how often gates are evaluated
  GateLimit secondary_error_rate{true, 0.01, 200};
  GateLimit latency_p99_ratio{true, 3.0, 200};
  GateLimit shadow_mismatch_rate{true, 0.001, 100};
  GateLimit journal_backlog{true, 10'000, 0};
  GateLimit new_primary_failure_rate{true, 0.05, 20}; //!< judged once promoted
  bool operator==(const CutoverSettings&) const = default;
};

//! Proxies sharing one cutover state through Redis (the `fleet` section).
struct FleetSettings {
  std::string redis_url; //!< empty: no fleet, the state lives in cutover.state_file
  std::string host;
  uint16_t port = 6379;
  std::string password;
  uint32_t database = 0;
  std::string key = "switchyard:cutover"; //!< the state key; its pub/sub channel adds ":changes"
  bool operator==(const FleetSettings&) const = default;
};

//! One immutable configuration snapshot. Sessions hold a shared_ptr to the snapshot they
//! started with; a reload swaps in a new one.
struct Config {
  std::string source; //!< the file it came from, or "<command line>"
  ListenAddress listen{"127.0.0.1", 6543};
  ListenAddress admin_listen{"127.0.0.1", 9543};
  uint32_t workers = 0; //!< network threads; 0: one per core
  std::string primary_uri;
  BackendTarget primary;
  std::optional<BackendTarget> secondary;
  std::string secondary_uri;
  WriteMode write_mode = WriteMode::kSync;
  ReadRouting read_routing;
  MirrorSettings mirror;
  CutoverSettings cutover;
  FleetSettings fleet;
  AuthMethod auth_method = AuthMethod::kTrust;
  std::vector<User> users;
  ClientTlsMode tls_mode = ClientTlsMode::kOff;
  std::string tls_cert_file;
  std::string tls_key_file;
  Limits limits;
  std::string admin_token;     //!< empty: admin API actions other than health and metrics refused
  std::string admin_cert_file; //!< set (with the key): the admin listener speaks HTTPS only
  std::string admin_key_file;
  std::string log_level = "info";
  LogFormat log_format = LogFormat::kText;

  //! The user entry for `name`, or nullptr.
  const User* find_user(std::string_view name) const;
};

//! Command-line values that override the file (and survive reloads).
struct Overrides {
  std::optional<std::string> listen;
  std::optional<std::string> admin_listen;
  std::optional<std::string> primary;
  std::optional<std::string> secondary;
  std::optional<double> read_percent;
  std::optional<std::string> write_mode;
};

//! One row of the settings table: every key the config file may hold.
struct SettingInfo {
  std::string_view path; //!< dotted key, e.g. "limits.max_clients"
  bool reloadable;       //!< whether SIGHUP may change it on a running proxy
  std::string_view description;
};

//! Every setting, in the order the reference documents them.
std::span<const SettingInfo> settings_table();

//! The databases switchyard serves when started with no config file and no --primary.
inline constexpr std::string_view kEmbeddedPrimary = "sqlite:switchyard-data/primary.db";
inline constexpr std::string_view kEmbeddedSecondary = "sqlite:switchyard-data/secondary.db";

//! Builds and validates a snapshot from a YAML file (or none) plus overrides. Errors name the
//! file, the key and why, e.g. "s.yaml: limits.max_clients: must be an integer >= 1".
Result<std::shared_ptr<const Config>> load_config(const std::optional<std::string>& file,
                                                  const Overrides& overrides);

//! Same as load_config, from YAML text (`source` names it in errors).
Result<std::shared_ptr<const Config>> parse_config(std::string_view yaml, std::string_view source,
                                                   const Overrides& overrides);

//! Settings that differ between `before` and `after` but cannot change without a restart.
std::vector<std::string> restart_only_changes(const Config& before, const Config& after);

//! Parses "host:port" ("[::1]:6543" for IPv6).
Result<ListenAddress> parse_listen_address(std::string_view text);

} // namespace switchyard::config
