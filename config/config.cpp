#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <type_traits>

#include "config/duration.hpp"
#include "config/yaml_fields.hpp"

namespace switchyard::config {
namespace {

using namespace yaml_fields;

constexpr SettingInfo kSettings[] = {
    {"listen", false, "host:port clients connect to"},
    {"workers", false, "network threads; 0 means one per core"},
    {"primary", true, "the database of record: libpq URI or key=value string"},
    {"secondary", true, "the database being moved to (mirroring target)"},
    {"write_mode", true, "sync (primary-first lock-step) or async"},
    {"read_percent", true, "share of reads routed to the secondary, 0-100"},
    {"read_routing.key", true,
     "what puts a session in the read cohort: session, user, application_name, client_address"},
    {"read_routing.unit", true,
     "how long a routing decision holds: statement, transaction, session"},
    {"read_routing.users", true, "read_percent overrides by database user: {name: percent}"},
    {"read_routing.applications", true,
     "read_percent overrides by application_name: {name: percent}; win over users"},
    {"read_routing.compare_percent", true,
     "share of reads also run on the other database and compared, 0-100"},
    {"read_routing.safe_functions", true,
     "functions reads may call and still go to the secondary, beyond the built-in list"},
    {"read_routing.timeout", true, "a secondary read with no answer by then runs on the primary"},
    {"mirror.timeout", true, "longest a write waits for the secondary before it is journaled"},
    {"mirror.ddl", true, "DDL while mirroring: mirror, primary_only, reject"},
    {"mirror.max_transaction_bytes", true,
     "row images a session buffers per transaction; beyond it rows are journaled"},
    {"mirror.async_queue", true,
     "write_mode async: committed transactions that may wait for the secondary in memory; "
     "more wait in the journal"},
    {"mirror.async_queue_bytes", true,
     "write_mode async: memory the waiting transactions' writes may keep; more wait in the "
     "journal"},
    {"mirror.shared_idle_timeout", true,
     "a secondary connection sessions take turns on, left idle this long, is closed"},
    {"mirror.journal", false, "file of the divergence journal (writes the secondary missed)"},
    {"cutover.state_file", false, "where the cutover state is kept when no fleet Redis is set"},
    {"cutover.audit_log", false, "JSON-lines file of every cutover transition: who, when, why"},
    {"cutover.ramp.steps", true, "read percentages the ramp plan moves through, ascending"},
    {"cutover.ramp.soak", true, "least time on a ramp step before the next"},
    {"cutover.ramp.auto_advance", true, "advance a ramp by itself while every gate holds"},
    {"cutover.swap_timeout", true,
     "after a role swap, how long sessions with the old roles may finish their transaction"},
    {"cutover.gates.window", true, "sliding window the gates measure over"},
    {"cutover.gates.interval", true, "how often the gates are evaluated"},
    {"cutover.gates.secondary_error_rate.enabled", true, "whether this gate may revert"},
    {"cutover.gates.secondary_error_rate.max", true,
     "failed secondary reads and mirrored writes over all of them, 0-1"},
    {"cutover.gates.secondary_error_rate.min_samples", true,
     "secondary reads and writes the window needs before the gate counts"},
    {"cutover.gates.latency_p99_ratio.enabled", true, "whether this gate may revert"},
    {"cutover.gates.latency_p99_ratio.max", true,
     "p99 latency of safe reads on the secondary over those on the primary"},
    {"cutover.gates.latency_p99_ratio.min_samples", true,
     "queries each side needs in the window before the gate counts"},
    {"cutover.gates.shadow_mismatch_rate.enabled", true, "whether this gate may revert"},
    {"cutover.gates.shadow_mismatch_rate.max", true, "mismatching shadow comparisons, 0-1"},
    {"cutover.gates.shadow_mismatch_rate.min_samples", true,
     "shadow comparisons the window needs before the gate counts"},
    {"cutover.gates.journal_backlog.enabled", true, "whether this gate may revert"},
    {"cutover.gates.journal_backlog.max", true, "divergence journal entries not yet replayed"},
    {"cutover.gates.new_primary_failure_rate.enabled", true, "whether this gate may revert"},
    {"cutover.gates.new_primary_failure_rate.max", true,
     "once promoted: failed logins to the new primary and sessions that lost it, over client "
     "connections, 0-1"},
    {"cutover.gates.new_primary_failure_rate.min_samples", true,
     "client connections the window needs before the gate counts"},
    {"fleet.redis", false, "redis://[:password@]host[:port][/db] shared by the proxies"},
    {"fleet.key", false, "Redis key of the shared cutover state"},
    {"auth.method", true, "client authentication: trust, password, md5, scram-sha-256"},
    {"auth.users", true, "list of {name, password | scram_verifier | md5_hash}"},
    {"tls.mode", true, "client TLS: off, allow, require"},
    {"tls.cert_file", true, "PEM certificate chain presented to clients"},
    {"tls.key_file", true, "PEM private key of tls.cert_file"},
    {"limits.max_clients", true, "client connections served at once"},
    {"limits.max_message_size", true, "largest message a client may send, in bytes"},
    {"limits.max_statements_per_query", true,
     "statements one query text may hold while writes are mirrored; more are refused"},
    {"limits.startup_timeout", true, "time a client has to finish startup and auth"},
    {"limits.client_idle_timeout", true, "close clients idle outside a transaction (0: never)"},
    {"limits.idle_in_transaction_timeout", true,
     "close clients idle inside a transaction (0: never)"},
    {"limits.pooled_backends", true,
     "primary connections kept, reset, after their clients log off, for the next client with "
     "the same login (0: none)"},
    {"limits.pooled_backend_idle_timeout", true, "how long a kept primary connection is kept"},
    {"admin.listen", false, "host:port of the admin HTTP API and /metrics"},
    {"admin.token", true, "bearer token for admin API actions"},
    {"admin.cert_file", true, "PEM certificate chain: the admin listener serves HTTPS only"},
    {"admin.key_file", true, "PEM private key of admin.cert_file"},
    {"logging.level", true, "trace, debug, info, warn, error"},
    {"logging.format", false, "text or json"},
};

// A shape check; the full parse happens where the verifier is used (protocol/auth).
bool parse_scram_verifier_shape(std::string_view verifier) {
  return verifier.starts_with("SCRAM-SHA-256$") && verifier.find(':') != std::string_view::npos &&
         verifier.find('$', 14) != std::string_view::npos;
}

constexpr std::string_view kUserKeys[] = {"name", "password", "scram_verifier", "md5_hash"};

bool is_setting(std::string_view path) {
  return std::any_of(std::begin(kSettings), std::end(kSettings),
                     [&](const SettingInfo& s) { return s.path == path; });
}

bool is_section(std::string_view path) {
  std::string prefix = std::string(path) + ".";
  return std::any_of(std::begin(kSettings), std::end(kSettings),
                     [&](const SettingInfo& s) { return s.path.starts_with(prefix); });
}

// Refuses keys the table does not declare, so a typo never silently means "default".
void check_known_keys(const YAML::Node& node, const std::string& prefix, Checker& check) {
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    if (is_setting(path)) continue;
    if (is_section(path)) {
      if (!entry.second.IsMap()) {
        check.fail(path, "must be a mapping of settings");
        return;
      }
      check_known_keys(entry.second, path, check);
      continue;
    }
    check.fail(path, "unknown setting");
    return;
  }
}

void read_read_routing(const YAML::Node& root, ReadRouting& out, Checker& check) {
  read_percent(root, "read_percent", out.percent, check);
  read_enum(root, "read_routing.key", out.key,
            {{"session", CohortKey::kSession},
             {"user", CohortKey::kUser},
             {"application_name", CohortKey::kApplicationName},
             {"client_address", CohortKey::kClientAddress}},
            check);
  read_enum(root, "read_routing.unit", out.unit,
            {{"statement", DecisionUnit::kStatement},
             {"transaction", DecisionUnit::kTransaction},
             {"session", DecisionUnit::kSession}},
            check);
  read_percent_map(root, "read_routing.users", out.user_percent, check);
  read_percent_map(root, "read_routing.applications", out.application_percent, check);
  read_percent(root, "read_routing.compare_percent", out.compare_percent, check);
  read_name_list(root, "read_routing.safe_functions", out.safe_functions, check);
  read_duration(root, "read_routing.timeout", out.timeout, check);
  if (out.timeout.count() == 0) check.fail("read_routing.timeout", "must be greater than 0");
}

void read_gate(const YAML::Node& root, const std::string& path, GateLimit& out, Checker& check,
               double max_limit, bool has_samples) {
  read_bool(root, path + ".enabled", out.enabled, check);
  read_number(root, path + ".max", out.max, 0, max_limit, check);
  if (has_samples) read_uint(root, path + ".min_samples", out.min_samples, 1, 1'000'000'000, check);
}

void read_cutover(const YAML::Node& root, CutoverSettings& out, Checker& check) {
  if (auto v = scalar(root, "cutover.state_file", check)) {
    if (v->empty()) check.fail("cutover.state_file", "must be a file path");
    out.state_file = *v;
  }
  if (auto v = scalar(root, "cutover.audit_log", check)) {
    if (v->empty()) check.fail("cutover.audit_log", "must be a file path");
    out.audit_log = *v;
  }
  if (YAML::Node steps = lookup(root, "cutover.ramp.steps"); steps && !steps.IsNull()) {
    out.steps.clear();
    if (!steps.IsSequence() || steps.size() == 0) {
      check.fail("cutover.ramp.steps", "must be a list of percentages, e.g. [1, 5, 25, 100]");
    }
    for (const auto& item : steps) {
      auto value = item.IsScalar() ? parse_percent(item.Scalar()) : std::nullopt;
      if (!value || *value <= 0) {
        check.fail("cutover.ramp.steps", "each step must be a number above 0 and up to 100");
        break;
      }
      if (!out.steps.empty() && *value <= out.steps.back()) {
        check.fail("cutover.ramp.steps", "steps must rise: each above the one before");
        break;
      }
      out.steps.push_back(*value);
    }
  }
  read_duration(root, "cutover.ramp.soak", out.soak, check);
  read_bool(root, "cutover.ramp.auto_advance", out.auto_advance, check);
  read_duration(root, "cutover.swap_timeout", out.swap_timeout, check);
  read_duration(root, "cutover.gates.window", out.gate_window, check);
  read_duration(root, "cutover.gates.interval", out.gate_interval, check);
  if (out.gate_interval.count() == 0)
    check.fail("cutover.gates.interval", "must be greater than 0");
  if (out.gate_window < out.gate_interval) {
    check.fail("cutover.gates.window", "must be at least cutover.gates.interval");
  }
  read_gate(root, "cutover.gates.secondary_error_rate", out.secondary_error_rate, check, 1, true);
  read_gate(root, "cutover.gates.latency_p99_ratio", out.latency_p99_ratio, check, 1e6, true);
  read_gate(root, "cutover.gates.shadow_mismatch_rate", out.shadow_mismatch_rate, check, 1, true);
  read_gate(root, "cutover.gates.journal_backlog", out.journal_backlog, check, 1e12, false);
  read_gate(root, "cutover.gates.new_primary_failure_rate", out.new_primary_failure_rate, check, 1,
            true);
}

// redis://[:password@]host[:port][/db]
void read_fleet(const YAML::Node& root, FleetSettings& out, Checker& check) {
  if (auto v = scalar(root, "fleet.key", check)) {
    if (v->empty()) check.fail("fleet.key", "must not be empty");
    out.key = *v;
  }
  auto url = scalar(root, "fleet.redis", check);
  if (!url) return;
  constexpr std::string_view kScheme = "redis://";
  std::string_view rest = *url;
  auto bad = [&](std::string_view why) {
    check.fail("fleet.redis", std::string(why) + " (got '" + *url + "'; expected " +
                                  "redis://[:password@]host[:port][/db])");
  };
  if (!rest.starts_with(kScheme)) return bad("must start with redis://");
  rest.remove_prefix(kScheme.size());
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view credentials = rest.substr(0, at);
    out.password = std::string(credentials.substr(credentials.find(':') + 1));
    rest.remove_prefix(at + 1);
  }
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && !parse_whole(db, out.database)) return bad("the database must be a number");
    rest = rest.substr(0, slash);
  }
  if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    if (!parse_whole(rest.substr(colon + 1), out.port) || out.port == 0) {
      return bad("invalid port");
    }
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad("a host is required");
  out.host = std::string(rest);
  out.redis_url = *url;
}

void read_listen(const YAML::Node& root, std::string_view path, ListenAddress& out,
                 Checker& check) {
  auto text = scalar(root, path, check);
  if (!text) return;
  auto address = parse_listen_address(*text);
  if (!address) {
    check.fail(path, address.error());
    return;
  }
  out = *address;
}

void read_users(const YAML::Node& root, Config& config, Checker& check) {
  YAML::Node users = lookup(root, "auth.users");
  if (!users || users.IsNull()) return;
  if (!users.IsSequence()) {
    check.fail("auth.users", "must be a list of {name, password | scram_verifier | md5_hash}");
    return;
  }
  for (size_t i = 0; i < users.size(); ++i) {
    std::string key = "auth.users[" + std::to_string(i) + "]";
    const YAML::Node& entry = users[i];
    if (!entry.IsMap()) {
      check.fail(key, "must be a mapping with name and a credential");
      return;
    }
    for (const auto& field : entry) {
      std::string name = field.first.as<std::string>();
      if (std::find(std::begin(kUserKeys), std::end(kUserKeys), name) == std::end(kUserKeys)) {
        check.fail(key + "." + name, "unknown setting (name, password, scram_verifier, md5_hash)");
        return;
      }
      if (!field.second.IsScalar()) {
        check.fail(key + "." + name, "must be a single value");
        return;
      }
    }
    User user;
    if (entry["name"]) user.name = entry["name"].Scalar();
    if (entry["password"]) user.password = entry["password"].Scalar();
    if (entry["scram_verifier"]) user.scram_verifier = entry["scram_verifier"].Scalar();
    if (entry["md5_hash"]) user.md5_hash = entry["md5_hash"].Scalar();
    if (user.name.empty()) {
      check.fail(key + ".name", "is required");
      return;
    }
    if (config.find_user(user.name) != nullptr) {
      check.fail(key + ".name", "user '" + user.name + "' is listed twice");
      return;
    }
    if (!user.scram_verifier.empty() && !parse_scram_verifier_shape(user.scram_verifier)) {
      check.fail(key + ".scram_verifier",
                 "must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>");
      return;
    }
    if (!user.md5_hash.empty() &&
        (user.md5_hash.size() != 35 || !user.md5_hash.starts_with("md5"))) {
      check.fail(key + ".md5_hash", "must be 'md5' followed by 32 hex digits");
      return;
    }
    config.users.push_back(std::move(user));
  }
}

void apply_overrides(YAML::Node& root, const Overrides& overrides) {
  if (overrides.listen) root["listen"] = *overrides.listen;
  if (overrides.admin_listen) root["admin"]["listen"] = *overrides.admin_listen;
  if (overrides.primary) root["primary"] = *overrides.primary;
  if (overrides.secondary) root["secondary"] = *overrides.secondary;
  if (overrides.read_percent) root["read_percent"] = *overrides.read_percent;
  if (overrides.write_mode) root["write_mode"] = *overrides.write_mode;
}

void validate_auth(Config& config, Checker& check) {
  for (size_t i = 0; i < config.users.size(); ++i) {
    const User& user = config.users[i];
    std::string key = "auth.users[" + std::to_string(i) + "]";
    bool ok = true;
    switch (config.auth_method) {
    case AuthMethod::kTrust: break;
    case AuthMethod::kPassword:
    case AuthMethod::kScramSha256:
      ok = !user.password.empty() || !user.scram_verifier.empty();
      break;
    case AuthMethod::kMd5: ok = !user.password.empty() || !user.md5_hash.empty(); break;
    }
    if (!ok) {
      check.fail(key, "user '" + user.name + "' has no credential usable with auth.method " +
                          "(scram-sha-256 and password need password or scram_verifier; md5 " +
                          "needs password or md5_hash)");
      return;
    }
  }
  if (config.auth_method != AuthMethod::kTrust && config.users.empty()) {
    check.fail("auth.users", "must list at least one user unless auth.method is trust");
  }
}

void validate_tls(Config& config, Checker& check) {
  if (config.admin_cert_file.empty() != config.admin_key_file.empty()) {
    check.fail(config.admin_cert_file.empty() ? "admin.cert_file" : "admin.key_file",
               "admin.cert_file and admin.key_file go together");
    return;
  }
  for (auto [key, file] : {std::pair{"admin.cert_file", &config.admin_cert_file},
                           std::pair{"admin.key_file", &config.admin_key_file}}) {
    if (!file->empty() && !std::ifstream(*file).good()) {
      check.fail(key, "cannot read '" + *file + "'");
      return;
    }
  }
  if (config.tls_mode == ClientTlsMode::kOff) return;
  for (auto [key, file] : {std::pair{"tls.cert_file", &config.tls_cert_file},
                           std::pair{"tls.key_file", &config.tls_key_file}}) {
    if (file->empty()) {
      check.fail(key, "is required when tls.mode is allow or require");
      return;
    }
    if (!std::ifstream(*file).good()) {
      check.fail(key, "cannot read '" + *file + "'");
      return;
    }
  }
}

Result<BackendTarget> read_backend(const YAML::Node& root, std::string_view key, std::string& uri,
                                   Checker& check) {
  auto text = scalar(root, key, check);
  if (!text) return Error{"not set"};
  uri = *text;
  auto target = parse_backend_uri(uri);
  if (!target) check.fail(key, target.error());
  return target;
}

} // namespace

const User* Config::find_user(std::string_view name) const {
  for (const auto& user : users) {
    if (user.name == name) return &user;
  }
  return nullptr;
}

std::span<const SettingInfo> settings_table() {
  return kSettings;
}

Result<ListenAddress> parse_listen_address(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Error{"must be host:port (got '" + std::string(text) + "')"};
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  if (!parse_whole(port_text, port) || port > 65535) {
    return Error{"invalid port in '" + std::string(text) + "'"};
  }
  return ListenAddress{std::string(host), static_cast<uint16_t>(port)};
}

Result<std::shared_ptr<const Config>> parse_config(std::string_view yaml, std::string_view source,
                                                   const Overrides& overrides) {
  YAML::Node root;
  try {
    root = yaml.empty() ? YAML::Node(YAML::NodeType::Map) : YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return Error{std::string(source) + ":" + std::to_string(e.mark.line + 1) + ":" +
                 std::to_string(e.mark.column + 1) + ": " + e.msg};
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    return Error{std::string(source) + ": the config must be a mapping of settings"};
  apply_overrides(root, overrides);

  Checker check(source);
  check_known_keys(root, "", check);
  if (check.failed()) return Error{check.error()};

  auto config = std::make_shared<Config>();
  config->source = std::string(source);
  read_listen(root, "listen", config->listen, check);
  read_listen(root, "admin.listen", config->admin_listen, check);
  read_uint(root, "workers", config->workers, 0, 256, check);
  if (auto primary = read_backend(root, "primary", config->primary_uri, check)) {
    config->primary = *primary;
  } else if (!check.failed()) {
    check.fail("primary", "is required: pass --primary URI or set primary in the config file");
  }
  if (lookup(root, "secondary")) {
    if (auto secondary = read_backend(root, "secondary", config->secondary_uri, check)) {
      config->secondary = *secondary;
    }
  }
  read_enum(root, "write_mode", config->write_mode,
            {{"sync", WriteMode::kSync}, {"async", WriteMode::kAsync}}, check);
  read_duration(root, "mirror.timeout", config->mirror.timeout, check);
  if (config->mirror.timeout.count() == 0) check.fail("mirror.timeout", "must be greater than 0");
  read_duration(root, "mirror.shared_idle_timeout", config->mirror.shared_idle_timeout, check);
  if (config->mirror.shared_idle_timeout.count() == 0) {
    check.fail("mirror.shared_idle_timeout", "must be greater than 0");
  }
  read_enum(root, "mirror.ddl", config->mirror.ddl,
            {{"mirror", DdlPolicy::kMirror},
             {"primary_only", DdlPolicy::kPrimaryOnly},
             {"reject", DdlPolicy::kReject}},
            check);
  read_uint(root, "mirror.max_transaction_bytes", config->mirror.max_transaction_bytes, 1024,
            1u << 30, check);
  read_uint(root, "mirror.async_queue", config->mirror.async_queue, 1, 10'000'000, check);
  read_uint(root, "mirror.async_queue_bytes", config->mirror.async_queue_bytes, 1024,
            uint64_t{1} << 40, check);
  if (auto v = scalar(root, "mirror.journal", check)) {
    if (v->empty()) check.fail("mirror.journal", "must be a file path");
    config->mirror.journal_path = *v;
  }
  read_read_routing(root, config->read_routing, check);
  read_cutover(root, config->cutover, check);
  read_fleet(root, config->fleet, check);
  read_enum(root, "auth.method", config->auth_method,
            {{"trust", AuthMethod::kTrust},
             {"password", AuthMethod::kPassword},
             {"md5", AuthMethod::kMd5},
             {"scram-sha-256", AuthMethod::kScramSha256}},
            check);
  read_users(root, *config, check);
  read_enum(root, "tls.mode", config->tls_mode,
            {{"off", ClientTlsMode::kOff},
             {"allow", ClientTlsMode::kAllow},
             {"require", ClientTlsMode::kRequire}},
            check);
  if (auto v = scalar(root, "tls.cert_file", check)) config->tls_cert_file = *v;
  if (auto v = scalar(root, "tls.key_file", check)) config->tls_key_file = *v;
  read_uint(root, "limits.max_clients", config->limits.max_clients, 1, 1'000'000, check);
  read_uint(root, "limits.max_message_size", config->limits.max_message_size, 1024, 1u << 30,
            check);
  read_uint(root, "limits.max_statements_per_query", config->limits.max_statements_per_query, 1,
            100'000'000, check);
  read_duration(root, "limits.startup_timeout", config->limits.startup_timeout, check);
  read_duration(root, "limits.client_idle_timeout", config->limits.client_idle_timeout, check);
  read_duration(root, "limits.idle_in_transaction_timeout",
                config->limits.idle_in_transaction_timeout, check);
  if (config->limits.startup_timeout.count() == 0) {
    check.fail("limits.startup_timeout", "must be greater than 0");
  }
  read_uint(root, "limits.pooled_backends", config->limits.pooled_backends, 0, 100'000, check);
  read_duration(root, "limits.pooled_backend_idle_timeout",
                config->limits.pooled_backend_idle_timeout, check);
  if (config->limits.pooled_backend_idle_timeout.count() == 0) {
    check.fail("limits.pooled_backend_idle_timeout", "must be greater than 0");
  }
  if (auto v = scalar(root, "admin.token", check)) config->admin_token = *v;
  if (auto v = scalar(root, "admin.cert_file", check)) config->admin_cert_file = *v;
  if (auto v = scalar(root, "admin.key_file", check)) config->admin_key_file = *v;
  read_enum(root, "logging.level", config->log_level,
            {{"trace", "trace"},
             {"debug", "debug"},
             {"info", "info"},
             {"warn", "warn"},
             {"error", "error"}},
            check);
  read_enum(root, "logging.format", config->log_format,
            {{"text", LogFormat::kText}, {"json", LogFormat::kJson}}, check);
  if (!check.failed()) validate_auth(*config, check);
  if (!check.failed()) validate_tls(*config, check);
  if (check.failed()) return Error{check.error()};
  return std::shared_ptr<const Config>(std::move(config));
}

Result<std::shared_ptr<const Config>> load_config(const std::optional<std::string>& file,
                                                  const Overrides& overrides) {
  if (!file) {
    // The embedded default: with neither a config file nor --primary, SQLite files in the
    // working directory stand in for both databases, so switchyard runs with no server.
    Overrides embedded = overrides;
    if (!embedded.primary) {
      embedded.primary = std::string(kEmbeddedPrimary);
      if (!embedded.secondary) embedded.secondary = std::string(kEmbeddedSecondary);
    }
    return parse_config("", "<command line>", embedded);
  }
  std::ifstream in(*file);
  if (!in) return Error{*file + ": cannot open the config file"};
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), *file, overrides);
}

std::vector<std::string> restart_only_changes(const Config& before, const Config& after) {
  std::vector<std::string> changed;
  if (before.listen != after.listen) changed.emplace_back("listen");
  if (before.admin_listen != after.admin_listen) changed.emplace_back("admin.listen");
  if (before.workers != after.workers) changed.emplace_back("workers");
  if (before.log_format != after.log_format) changed.emplace_back("logging.format");
  if (before.mirror.journal_path != after.mirror.journal_path) {
    changed.emplace_back("mirror.journal");
  }
  if (before.cutover.state_file != after.cutover.state_file) {
    changed.emplace_back("cutover.state_file");
  }
  if (before.cutover.audit_log != after.cutover.audit_log)
    changed.emplace_back("cutover.audit_log");
  if (before.fleet != after.fleet) changed.emplace_back("fleet");
  return changed;
}

} // namespace switchyard::config
