#pragma once

#include <map>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "protocol/auth.hpp"
#include "protocol/result.hpp"
#include "proxy/asio.hpp"

namespace switchyard::proxy {

//! A config snapshot plus what is derived from it once per load: TLS contexts and SCRAM
//! secrets. Sessions hold the Runtime they started with; a reload builds a new one aside.
struct Runtime {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<ssl::context> client_tls;    //!< for clients' SSLRequest; null when tls.mode off
  std::shared_ptr<ssl::context> primary_tls;   //!< for the primary; null when sslmode disable
  std::shared_ptr<ssl::context> secondary_tls; //!< for the secondary; null when none or disable
  std::shared_ptr<ssl::context> admin_tls;     //!< for the admin listener; null: plain HTTP
  std::map<std::string, protocol::ScramSecret, std::less<>> scram_secrets; //!< by user name
  //! The cutover promoted the new database: `config->primary` is the config file's
  //! secondary (the new database) and `config->secondary` its primary (the old one).
  bool roles_swapped = false;
  //! Bumped by every role swap; a session whose number is behind has the old roles.
  uint64_t role_generation = 0;
};

//! Builds a Runtime; unreadable certificates or keys are errors with the file named.
Result<std::shared_ptr<const Runtime>> build_runtime(std::shared_ptr<const config::Config> config);

//! `loaded` as sessions of role generation `generation` see it: with `swapped`, primary and
//! secondary (targets and TLS contexts) trade places. `loaded` must have a secondary then.
std::shared_ptr<const Runtime> orient_runtime(const Runtime& loaded, bool swapped,
                                              uint64_t generation);

//! A TLS client context for a backend, configured for its sslmode and certificates.
Result<std::unique_ptr<ssl::context>> make_backend_tls(const config::BackendTarget& target);

} // namespace switchyard::proxy
