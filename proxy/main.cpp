#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "monitoring/logging.hpp"
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
  CLI11_PARSE(app, argc, argv);

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
