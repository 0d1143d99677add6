#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "config/duration.hpp"

using namespace switchyard::config;

namespace {
std::string load_error(const std::string& yaml, const Overrides& overrides = {}) {
  auto config = parse_config(yaml, "test.yaml", overrides);
  REQUIRE_FALSE(config);
  return config.error();
}
} // namespace

TEST_CASE("a full config file is read into the snapshot") {
  auto config = parse_config(R"(
listen: 0.0.0.0:7000
workers: 3
primary: postgresql://app:pw@db1:5433/main?sslmode=verify-full&sslrootcert=/ca.pem
secondary: host=db2 port=5434 user=app dbname=main sslmode=disable
write_mode: async
read_percent: 12.5
auth:
  method: scram-sha-256
  users:
    - name: app
      password: pw
tls:
  mode: off
limits:
  max_clients: 50
  max_message_size: 2048
  startup_timeout: 250ms
  client_idle_timeout: 5m
  pooled_backends: 0
  pooled_backend_idle_timeout: 90s
admin:
  listen: '[::1]:9000'
  token: t0ken
logging:
  level: debug
  format: json
)",
                             "test.yaml", {});
  REQUIRE(config);
  const Config& c = **config;
  CHECK(c.listen == ListenAddress{"0.0.0.0", 7000});
  CHECK(c.admin_listen == ListenAddress{"::1", 9000});
  CHECK(c.workers == 3);
  CHECK(c.primary.host == "db1");
  CHECK(c.primary.port == 5433);
  CHECK(c.primary.sslmode == SslMode::kVerifyFull);
  CHECK(c.primary.sslrootcert == "/ca.pem");
  CHECK(c.primary.redacted == "postgresql://app:***@db1:5433/main?sslmode=verify-full");
  REQUIRE(c.secondary);
  CHECK(c.secondary->host == "db2");
  CHECK(c.secondary->sslmode == SslMode::kDisable);
  CHECK(c.write_mode == WriteMode::kAsync);
  CHECK(c.read_routing.percent == 12.5);
  CHECK(c.auth_method == AuthMethod::kScramSha256);
  REQUIRE(c.find_user("app"));
  CHECK(c.limits.max_clients == 50);
  CHECK(c.limits.startup_timeout == std::chrono::milliseconds(250));
  CHECK(c.limits.client_idle_timeout == std::chrono::minutes(5));
  CHECK(c.limits.pooled_backends == 0);
  CHECK(c.limits.pooled_backend_idle_timeout == std::chrono::seconds(90));
  CHECK(c.admin_token == "t0ken");
  CHECK(c.log_level == "debug");
  CHECK(c.log_format == LogFormat::kJson);
}

TEST_CASE("command-line overrides win over the file") {
  Overrides overrides;
  overrides.listen = "127.0.0.1:1234";
  overrides.read_percent = 50;
  overrides.primary = "postgresql://u@other/db";
  auto config =
      parse_config("primary: postgresql://u@h/db\nread_percent: 5\n", "t.yaml", overrides);
  REQUIRE(config);
  CHECK((*config)->listen.port == 1234);
  CHECK((*config)->read_routing.percent == 50);
  CHECK((*config)->primary.host == "other");
}

TEST_CASE("config errors name the file, the key and why") {
  CHECK(load_error("primary: postgresql://u@h/db\nlimts:\n  max_clients: 1\n") ==
        "test.yaml: limts: unknown setting");
  CHECK(load_error("primary: postgresql://u@h/db\nlimits: 5\n") ==
        "test.yaml: limits: must be a mapping of settings");
  CHECK(load_error("primary: postgresql://u@h/db\nlimits:\n  max_clients: 0\n") ==
        "test.yaml: limits.max_clients: must be an integer from 1 to 1000000 (got '0')");
  CHECK(
      load_error("primary: postgresql://u@h/db\nlimits:\n  startup_timeout: soon\n") ==
      "test.yaml: limits.startup_timeout: must be a duration such as 500ms, 10s, 5m (got 'soon')");
  CHECK(load_error("primary: postgresql://u@h/db\nlimits:\n  pooled_backend_idle_timeout: 0s\n") ==
        "test.yaml: limits.pooled_backend_idle_timeout: must be greater than 0");
  CHECK(load_error("primary: postgresql:///db\n") ==
        "test.yaml: primary: no host given (e.g. postgresql://user@127.0.0.1:5432/db)");
  CHECK(load_error("primary: host=@pg\n") ==
        "test.yaml: primary: abstract-namespace Unix-domain sockets (host=@...) are not "
        "supported; name the socket's directory (host=/var/run/postgresql)");
  CHECK(load_error("primary: sqlite://host/x.db\n") ==
        "test.yaml: primary: a SQLite URI names a file: sqlite:///absolute/path.db or "
        "sqlite:relative.db");
  CHECK(load_error("primary: sqlite:x.db?cache=shared\n") ==
        "test.yaml: primary: unknown SQLite URI option 'cache=shared' (only busy_timeout=<ms>)");
  CHECK(load_error("primary: postgresql://u@h/db\nauth:\n  method: md5\n  users:\n    - name: a\n  "
                   "    scram_verifier: SCRAM-SHA-256$1:a$b:c\n")
            .find("auth.users[0]: user 'a' has no credential usable with auth.method") !=
        std::string::npos);
  CHECK(
      load_error("primary: postgresql://u@h/db\nauth:\n  users:\n    - name: a\n    - name: a\n") ==
      "test.yaml: auth.users[1].name: user 'a' is listed twice");
  CHECK(load_error(
            "primary: postgresql://u@h/db\nauth:\n  users:\n    - name: a\n      pasword: x\n") ==
        "test.yaml: auth.users[0].pasword: unknown setting (name, password, scram_verifier, "
        "md5_hash)");
  CHECK(load_error("primary: [\n").starts_with("test.yaml:2:1: "));
  CHECK(load_error("- a\n- b\n") == "test.yaml: the config must be a mapping of settings");
}

TEST_CASE("every settings table entry is a key the parser accepts") {
  for (const auto& setting : settings_table()) {
    INFO(setting.path);
    CHECK_FALSE(setting.description.empty());
  }
  CHECK(settings_table().size() >= 20);
}

TEST_CASE("restart-only settings are reported on reload") {
  auto before = parse_config("primary: postgresql://u@h/db\n", "a", {});
  auto after =
      parse_config("primary: postgresql://u@h/db\nlisten: 127.0.0.1:1\nread_percent: 3\n", "a", {});
  REQUIRE(before);
  REQUIRE(after);
  CHECK(restart_only_changes(**before, **after) == std::vector<std::string>{"listen"});
}

TEST_CASE("durations and listen addresses") {
  CHECK(parse_duration("1.5s") == std::chrono::milliseconds(1500));
  CHECK(parse_duration("2h") == std::chrono::hours(2));
  CHECK(parse_duration("30") == std::chrono::seconds(30));
  CHECK_FALSE(parse_duration("-1s"));
  CHECK_FALSE(parse_duration("5 parsecs"));
  CHECK(parse_listen_address("[::1]:80")->host == "::1");
  CHECK_FALSE(parse_listen_address("localhost"));
  CHECK_FALSE(parse_listen_address("h:99999"));
}

TEST_CASE("backend URIs in both libpq forms") {
  auto uri =
      parse_backend_uri("postgres://alice@[::1]:6000/shop?connect_timeout=3&sslmode=require");
  REQUIRE(uri);
  CHECK(uri->host == "::1");
  CHECK(uri->port == 6000);
  CHECK(uri->connect_timeout == std::chrono::seconds(3));
  CHECK(uri->password.empty());
  auto kv = parse_backend_uri("host=h port=5 user=bob password=pw dbname=d");
  REQUIRE(kv);
  CHECK(kv->password == "pw");
  CHECK(kv->sslmode == SslMode::kPrefer);
  CHECK(kv->redacted.find("pw") == std::string::npos);
  CHECK(parse_backend_uri("postgresql://h:0/d").error() == "invalid port '0'");
  CHECK_FALSE(parse_backend_uri("postgresql://h1,h2/d"));
  CHECK_FALSE(parse_backend_uri("not a uri at all ="));
}

TEST_CASE("backend URIs naming a Unix-domain socket directory, as libpq does") {
  auto kv = parse_backend_uri("host=/var/run/postgresql port=5433 user=bob sslmode=require");
  REQUIRE(kv);
  CHECK(kv->unix_socket());
  CHECK(kv->socket_path() == "/var/run/postgresql/.s.PGSQL.5433");
  CHECK(kv->endpoint() == "socket \"/var/run/postgresql/.s.PGSQL.5433\"");
  auto encoded = parse_backend_uri("postgresql://bob:pw@%2Ftmp%2Fpg/shop");
  REQUIRE(encoded);
  CHECK(encoded->host == "/tmp/pg");
  CHECK(encoded->socket_path() == "/tmp/pg/.s.PGSQL.5432");
  CHECK(encoded->redacted == "postgresql://bob:***@%2Ftmp%2Fpg:5432/shop?sslmode=prefer");
  auto query = parse_backend_uri("postgresql:///shop?host=/tmp/pg&port=6000");
  REQUIRE(query);
  CHECK(query->socket_path() == "/tmp/pg/.s.PGSQL.6000");
  auto tcp = parse_backend_uri("postgresql://h:7/d");
  REQUIRE(tcp);
  CHECK_FALSE(tcp->unix_socket());
  CHECK(tcp->endpoint() == "h:7");
  // sun_path holds 108 bytes, the terminating NUL included.
  std::string deep = "/" + std::string(100, 'd');
  CHECK(parse_backend_uri("host=" + deep).error() ==
        "Unix-domain socket path \"" + deep + "/.s.PGSQL.5432\" is too long (at most 107 bytes)");
}

TEST_CASE("SQLite URIs and the embedded default") {
  auto absolute = parse_backend_uri("sqlite:///var/lib/app/main.db?busy_timeout=250");
  REQUIRE(absolute);
  CHECK(absolute->kind == switchyard::config::BackendKind::kSqlite);
  CHECK(absolute->endpoint() == "SQLite file \"/var/lib/app/main.db\"");
  CHECK(absolute->path == "/var/lib/app/main.db");
  CHECK(absolute->busy_timeout == std::chrono::milliseconds(250));
  CHECK(absolute->redacted == "sqlite:/var/lib/app/main.db");
  auto relative = parse_backend_uri("sqlite:data/app.db");
  REQUIRE(relative);
  CHECK(relative->path == "data/app.db");
  CHECK(parse_backend_uri("sqlite:").error() == "no SQLite database file given");
  CHECK(parse_backend_uri("sqlite:x.db?busy_timeout=soon").error() ==
        "invalid busy_timeout 'soon' (milliseconds)");

  auto embedded = switchyard::config::load_config(std::nullopt, {});
  REQUIRE(embedded);
  CHECK((*embedded)->primary.path == "switchyard-data/primary.db");
  REQUIRE((*embedded)->secondary);
  CHECK((*embedded)->secondary->path == "switchyard-data/secondary.db");
  switchyard::config::Overrides only_primary;
  only_primary.primary = "postgresql://u@h/db";
  auto explicit_primary = switchyard::config::load_config(std::nullopt, only_primary);
  REQUIRE(explicit_primary);
  CHECK_FALSE((*explicit_primary)->secondary);
}

TEST_CASE("read routing settings: cohort key, unit, overrides, shadow share") {
  auto config = parse_config(R"(
primary: postgresql://u@h/db
secondary: postgresql://u@h2/db
read_percent: 25
read_routing:
  key: application_name
  unit: transaction
  users: {report_user: 100}
  applications: {billing: 0, "web-2": 7.5}
  compare_percent: 1
  safe_functions: [my_stable_lookup]
  timeout: 500ms
)",
                             "test.yaml", {});
  REQUIRE(config);
  const ReadRouting& r = (*config)->read_routing;
  CHECK(r.percent == 25);
  CHECK(r.key == CohortKey::kApplicationName);
  CHECK(r.unit == DecisionUnit::kTransaction);
  CHECK(r.user_percent == std::vector<std::pair<std::string, double>>{{"report_user", 100}});
  CHECK(r.application_percent ==
        std::vector<std::pair<std::string, double>>{{"billing", 0}, {"web-2", 7.5}});
  CHECK(r.compare_percent == 1);
  CHECK(r.safe_functions == std::vector<std::string>{"my_stable_lookup"});
  CHECK(r.timeout == std::chrono::milliseconds(500));

  std::string base = "primary: postgresql://u@h/db\n";
  CHECK(load_error(base + "read_percent: 101\n") ==
        "test.yaml: read_percent: must be a number from 0 to 100 (got '101')");
  CHECK(load_error(base + "read_routing:\n  key: tenant\n") ==
        "test.yaml: read_routing.key: must be one of session, user, application_name, "
        "client_address (got 'tenant')");
  CHECK(load_error(base + "read_routing:\n  users: {a: half}\n") ==
        "test.yaml: read_routing.users.a: must be a number from 0 to 100 (got 'half')");
  CHECK(load_error(base + "read_routing:\n  applications: [a]\n") ==
        "test.yaml: read_routing.applications: must be a mapping of name: percent");
  CHECK(load_error(base + "read_routing:\n  safe_functions: f\n") ==
        "test.yaml: read_routing.safe_functions: must be a list of names");
  CHECK(load_error(base + "mirror:\n  async_queue: 0\n") ==
        "test.yaml: mirror.async_queue: must be an integer from 1 to 10000000 (got '0')");
  CHECK(load_error(base + "mirror:\n  async_queue_bytes: 1MB\n") ==
        "test.yaml: mirror.async_queue_bytes: must be an integer from 1024 to 1099511627776 "
        "(got '1MB')");
  auto larger_queue =
      parse_config(base + "mirror:\n  async_queue_bytes: 8589934592\n", "test.yaml", {});
  REQUIRE(larger_queue);
  CHECK((*larger_queue)->mirror.async_queue_bytes == uint64_t{8} << 30);
  CHECK((*parse_config(base, "test.yaml", {}))->mirror.async_queue_bytes == uint64_t{256} << 20);
  CHECK(load_error(base + "mirror:\n  shared_idle_timeout: 0s\n") ==
        "test.yaml: mirror.shared_idle_timeout: must be greater than 0");
  auto longer_idle = parse_config(base + "mirror:\n  shared_idle_timeout: 90s\n", "test.yaml", {});
  REQUIRE(longer_idle);
  CHECK((*longer_idle)->mirror.shared_idle_timeout == std::chrono::seconds(90));
  CHECK(load_error(base + "read_routing:\n  compare_percent: -1\n") ==
        "test.yaml: read_routing.compare_percent: must be a number from 0 to 100 (got '-1')");
}

TEST_CASE("cutover and fleet settings: ramp plan, gates, Redis") {
  auto config = parse_config(R"(
primary: postgresql://u@h/db
cutover:
  state_file: /var/lib/switchyard/cutover.json
  audit_log: /var/log/switchyard/audit.jsonl
  ramp:
    steps: [1, 5, 12.5, 100]
    soak: 15m
    auto_advance: yes
  gates:
    window: 2m
    interval: 10s
    secondary_error_rate: {max: 0.02, min_samples: 500}
    latency_p99_ratio: {enabled: false}
    journal_backlog: {max: 50}
    new_primary_failure_rate: {max: 0.2, min_samples: 10}
  swap_timeout: 30s
fleet:
  redis: redis://:pa55@cache.internal:6380/2
  key: shop:cutover
)",
                             "test.yaml", {});
  REQUIRE(config);
  const CutoverSettings& c = (*config)->cutover;
  CHECK(c.state_file == "/var/lib/switchyard/cutover.json");
  CHECK(c.steps == std::vector<double>{1, 5, 12.5, 100});
  CHECK(c.soak == std::chrono::minutes(15));
  CHECK(c.auto_advance);
  CHECK(c.gate_window == std::chrono::minutes(2));
  CHECK(c.secondary_error_rate == GateLimit{true, 0.02, 500});
  CHECK_FALSE(c.latency_p99_ratio.enabled);
  CHECK(c.journal_backlog.max == 50);
  CHECK(c.new_primary_failure_rate == GateLimit{true, 0.2, 10});
  CHECK(c.swap_timeout == std::chrono::seconds(30));
  CHECK(c.shadow_mismatch_rate == CutoverSettings{}.shadow_mismatch_rate);
  const FleetSettings& f = (*config)->fleet;
  CHECK(f.host == "cache.internal");
  CHECK(f.port == 6380);
  CHECK(f.password == "pa55");
  CHECK(f.database == 2);
  CHECK(f.key == "shop:cutover");

  std::string base = "primary: postgresql://u@h/db\n";
  CHECK(load_error(base + "cutover:\n  ramp:\n    steps: [5, 1]\n") ==
        "test.yaml: cutover.ramp.steps: steps must rise: each above the one before");
  CHECK(load_error(base + "cutover:\n  ramp:\n    steps: [0, 10]\n") ==
        "test.yaml: cutover.ramp.steps: each step must be a number above 0 and up to 100");
  CHECK(load_error(base + "cutover:\n  gates:\n    secondary_error_rate: {max: 2}\n") ==
        "test.yaml: cutover.gates.secondary_error_rate.max: must be a number from 0 to 1 (got "
        "'2')");
  CHECK(load_error(base + "cutover:\n  gates:\n    journal_backlog: {min_samples: 3}\n") ==
        "test.yaml: cutover.gates.journal_backlog.min_samples: unknown setting");
  CHECK(load_error(base + "cutover:\n  ramp:\n    auto_advance: maybe\n") ==
        "test.yaml: cutover.ramp.auto_advance: must be true or false (got 'maybe')");
  CHECK(load_error(base + "cutover:\n  gates:\n    window: 1s\n    interval: 5s\n") ==
        "test.yaml: cutover.gates.window: must be at least cutover.gates.interval");
  CHECK(load_error(base + "fleet:\n  redis: http://cache\n") ==
        "test.yaml: fleet.redis: must start with redis:// (got 'http://cache'; expected "
        "redis://[:password@]host[:port][/db])");
  CHECK(load_error(base + "admin:\n  cert_file: /etc/hosts\n") ==
        "test.yaml: admin.key_file: admin.cert_file and admin.key_file go together");
  CHECK(load_error(base + "admin:\n  cert_file: /nonexistent.pem\n  key_file: /etc/hosts\n") ==
        "test.yaml: admin.cert_file: cannot read '/nonexistent.pem'");
  CHECK(load_error(base + "fleet:\n  redis: redis://cache:0\n").find("invalid port") !=
        std::string::npos);
}
