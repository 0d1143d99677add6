#include "proxy/runtime.hpp"

namespace switchyard::proxy {
namespace {

constexpr int kScramIterations = 4096;
constexpr size_t kScramSaltBytes = 16;

// TLS 1.2 and newer only, as PostgreSQL's ssl_min_protocol_version default.
void harden(ssl::context& context) {
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
}

// A TLS server context from `section`.cert_file and `section`.key_file.
Result<std::unique_ptr<ssl::context>> make_server_tls(const std::string& source,
                                                      std::string_view section,
                                                      const std::string& cert_file,
                                                      const std::string& key_file) {
  auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
  harden(*context);
  error_code ec;
  if (context->use_certificate_chain_file(cert_file, ec); ec) {
    return Error{source + ": " + std::string(section) + ".cert_file: cannot load '" + cert_file +
                 "': " + ec.message()};
  }
  if (context->use_private_key_file(key_file, ssl::context::pem, ec); ec) {
    return Error{source + ": " + std::string(section) + ".key_file: cannot load '" + key_file +
                 "': " + ec.message()};
  }
  return context;
}

} // namespace

Result<std::unique_ptr<ssl::context>> make_backend_tls(const config::BackendTarget& target) {
  using config::SslMode;
  if (target.sslmode == SslMode::kDisable) return std::unique_ptr<ssl::context>();
  auto context = std::make_unique<ssl::context>(ssl::context::tls_client);
  harden(*context);
  error_code ec;
  // libpq verifies the chain for verify-ca/verify-full, and for require when a root cert is set.
  bool verify = target.sslmode == SslMode::kVerifyCa || target.sslmode == SslMode::kVerifyFull ||
                (target.sslmode == SslMode::kRequire && !target.sslrootcert.empty());
  if (verify) {
    if (!target.sslrootcert.empty()) {
      if (context->load_verify_file(target.sslrootcert, ec); ec) {
        return Error{"cannot load sslrootcert '" + target.sslrootcert + "': " + ec.message()};
      }
    } else if (context->set_default_verify_paths(ec); ec) {
      return Error{"cannot load the system CA certificates: " + ec.message()};
    }
    context->set_verify_mode(ssl::verify_peer);
  } else {
    context->set_verify_mode(ssl::verify_none);
  }
  if (!target.sslcert.empty()) {
    if (context->use_certificate_chain_file(target.sslcert, ec); ec) {
      return Error{"cannot load sslcert '" + target.sslcert + "': " + ec.message()};
    }
    if (context->use_private_key_file(target.sslkey.empty() ? target.sslcert : target.sslkey,
                                      ssl::context::pem, ec);
        ec) {
      return Error{"cannot load sslkey '" + target.sslkey + "': " + ec.message()};
    }
  }
  return context;
}

Result<std::shared_ptr<const Runtime>> build_runtime(std::shared_ptr<const config::Config> config) {
  auto runtime = std::make_shared<Runtime>();
  const config::Config& c = *config;
  if (c.tls_mode != config::ClientTlsMode::kOff) {
    auto tls = make_server_tls(c.source, "tls", c.tls_cert_file, c.tls_key_file);
    if (!tls) return Error{tls.error()};
    runtime->client_tls = std::move(*tls);
  }
  if (!c.admin_cert_file.empty()) {
    auto tls = make_server_tls(c.source, "admin", c.admin_cert_file, c.admin_key_file);
    if (!tls) return Error{tls.error()};
    runtime->admin_tls = std::move(*tls);
  }
  auto primary_tls = make_backend_tls(c.primary);
  if (!primary_tls) return Error{c.source + ": primary: " + primary_tls.error()};
  runtime->primary_tls = std::move(*primary_tls);
  if (c.secondary) {
    auto secondary_tls = make_backend_tls(*c.secondary);
    if (!secondary_tls) return Error{c.source + ": secondary: " + secondary_tls.error()};
    runtime->secondary_tls = std::move(*secondary_tls);
  }
  for (const auto& user : c.users) {
    if (!user.scram_verifier.empty()) {
      auto secret = protocol::parse_scram_verifier(user.scram_verifier);
      if (!secret) return Error{c.source + ": auth.users: " + user.name + ": " + secret.error()};
      runtime->scram_secrets.emplace(user.name, *secret);
    } else if (!user.password.empty()) {
      // Derived once per load, not per login: PBKDF2 costs milliseconds.
      runtime->scram_secrets.emplace(
          user.name, protocol::make_scram_secret(
                         user.password, protocol::random_bytes(kScramSaltBytes), kScramIterations));
    }
  }
  runtime->config = std::move(config);
  return std::shared_ptr<const Runtime>(std::move(runtime));
}

std::shared_ptr<const Runtime> orient_runtime(const Runtime& loaded, bool swapped,
                                              uint64_t generation) {
  auto oriented = std::make_shared<Runtime>(loaded);
  oriented->role_generation = generation;
  oriented->roles_swapped = swapped && loaded.config->secondary.has_value();
  if (oriented->roles_swapped) {
    auto config = std::make_shared<config::Config>(*loaded.config);
    std::swap(config->primary, *config->secondary);
    oriented->config = std::move(config);
    std::swap(oriented->primary_tls, oriented->secondary_tls);
  }
  return oriented;
}

} // namespace switchyard::proxy
