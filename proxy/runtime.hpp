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
  std::unique_ptr<ssl::context> client_tls;    //!< for clients' SSLRequest; null when tls.mode off
  std::unique_ptr<ssl::context> primary_tls;   //!< for the primary; null when sslmode disable
  std::unique_ptr<ssl::context> secondary_tls; //!< for the secondary; null when none or disable
  std::unique_ptr<ssl::context> admin_tls;     //!< for the admin listener; null: plain HTTP
  std::map<std::string, protocol::ScramSecret, std::less<>> scram_secrets; //!< by user name
};

//! Builds a Runtime; unreadable certificates or keys are errors with the file named.
Result<std::shared_ptr<const Runtime>> build_runtime(std::shared_ptr<const config::Config> config);

//! A TLS client context for a backend, configured for its sslmode and certificates.
Result<std::unique_ptr<ssl::context>> make_backend_tls(const config::BackendTarget& target);

} // namespace switchyard::proxy
