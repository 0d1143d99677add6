#include <CLI/CLI.hpp>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "monitoring/logging.hpp"
#include "proxy/ctl.hpp"
#include "proxy/server.hpp"

int main(int argc, char** argv) {
  using namespace switchyard;
  CLI::App app{"switchyard: PostgreSQL-protocol proxy for zero-downtime database cutover"};
  app.set_version_flag("--version", std::string("switchyard ") + SWITCHYARD_VERSION);
  std::optional<std::string> config_file;
  config::Overrides overrides;
  bool check_only = false;
  app.add_option("-c,--config", config_file, "YAML config file")->check(CLI::ExistingFile);
  app.add_option("--listen", overrides.listen, "HOST:PORT for clients (default 127.0.0.1:6543)");
  app.add_option("--admin-listen", overrides.admin_listen,
                 "HOST:PORT for the admin API and /metrics");
  app.add_option("--primary", overrides.primary,
                 "primary backend: postgresql:// URI or sqlite:PATH (with no config file and no "
                 "--primary: SQLite files under ./switchyard-data)");
  app.add_option("--secondary", overrides.secondary,
                 "secondary backend: postgresql:// URI or sqlite:PATH");
  app.add_option("--read-percent", overrides.read_percent,
                 "share of reads sent to the secondary, 0-100");
  app.add_option("--write-mode", overrides.write_mode, "sync or async");
  app.add_flag("--check-config", check_only, "validate the configuration and exit");

  proxy::CtlRequest ctl_request;
  std::optional<std::string> ctl_config;
  std::optional<std::string> ctl_admin;
  std::optional<std::string> ctl_token;
  double ramp_percent = 0;
  auto* ctl = app.add_subcommand("ctl", "drive a running proxy's cutover through its admin API");
  ctl->add_option("--config", ctl_config, "read the admin address and token from this config")
      ->check(CLI::ExistingFile);
  ctl->add_option("--admin", ctl_admin,
                  "HOST:PORT of the admin API, https://HOST:PORT for TLS (default 127.0.0.1:9543)");
  ctl->add_option("--cacert", ctl_request.ca_file, "CA file verifying an HTTPS admin API")
      ->check(CLI::ExistingFile);
  ctl->add_option("--token", ctl_token, "bearer token (default: $SWITCHYARD_ADMIN_TOKEN)")
      ->envname("SWITCHYARD_ADMIN_TOKEN");
  ctl->add_option("--reason", ctl_request.reason, "why, for the audit log");
  ctl->add_option("--actor", ctl_request.actor, "who, for the audit log (default: $USER)");
  ctl->add_flag("--json", ctl_request.json, "print the API's JSON answer");
  ctl->require_subcommand(1);
  // fallthrough: `ctl pause --reason ...` takes ctl's options after the command too.
  ctl->add_subcommand("status", "the cutover state, ramp plan, gates and fleet")->fallthrough();
  auto* ramp = ctl->add_subcommand("ramp", "send a share of reads to the new database");
  ramp->fallthrough();
  ramp->add_option("percent", ramp_percent, "0-100")->required();
  for (const auto& [name, help] : std::initializer_list<std::pair<const char*, const char*>>{
           {"start_mirroring", "primary_only -> mirroring"},
           {"pause", "freeze the ramp plan"},
           {"resume", "let the ramp plan advance again"},
           {"promote", "ramping at 100 % -> promoted"},
           {"finalize", "promoted -> finalized"},
           {"revert", "reads back on the old primary, ramp frozen until re-armed"},
           {"rearm", "reverted -> mirroring"},
           {"reload", "re-read the proxy's config file (as SIGHUP)"}}) {
    ctl->add_subcommand(name, help)->fallthrough();
  }
  CLI11_PARSE(app, argc, argv);

  if (ctl->parsed()) {
    ctl_request.command = ctl->get_subcommands().front()->get_name();
    if (ctl_request.command == "ramp") ctl_request.percent = ramp_percent;
    ctl_request.admin = "127.0.0.1:9543";
    if (ctl_config) {
      auto config = config::load_config(ctl_config, {});
      if (!config) {
        std::cerr << "switchyard ctl: " << config.error() << "\n";
        return 2;
      }
      ctl_request.admin = (*config)->admin_listen.to_string();
      if (!(*config)->admin_cert_file.empty()) ctl_request.admin = "https://" + ctl_request.admin;
      ctl_request.token = (*config)->admin_token;
    }
    if (ctl_admin) ctl_request.admin = *ctl_admin;
    if (ctl_token) ctl_request.token = *ctl_token;
    if (ctl_request.actor.empty()) {
      const char* user = std::getenv("USER");
      const passwd* account = getpwuid(getuid());
      if (user == nullptr && account != nullptr) user = account->pw_name;
      if (user != nullptr) ctl_request.actor = user;
    }
    return proxy::run_ctl(ctl_request);
  }

  auto config = config::load_config(config_file, overrides);
  if (!config) {
    std::cerr << "switchyard: invalid configuration: " << config.error() << "\n";
    return 2;
  }
  auto runtime = proxy::build_runtime(*config);
  if (!runtime) {
    std::cerr << "switchyard: invalid configuration: " << runtime.error() << "\n";
    return 2;
  }
  if (check_only) {
    std::cout << "configuration OK (" << (*config)->source << ")\n";
    return 0;
  }
  monitoring::setup_logging((*config)->log_level,
                            (*config)->log_format == config::LogFormat::kJson);
  proxy::Server server(config_file, overrides, *runtime);
  if (auto bound = server.bind(); !bound) {
    spdlog::critical("{}", bound.error());
    return 1;
  }
  server.run();
  return 0;
}
