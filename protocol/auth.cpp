#include "protocol/auth.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <charconv>
#include <stdexcept>

namespace switchyard::protocol {
namespace {

constexpr size_t kKeyLength = 32;
constexpr size_t kNonceBytes = 18;

std::string digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string salted_password(std::string_view password, std::string_view salt, int iterations) {
  std::string out(kKeyLength, '\0');
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), iterations, EVP_sha256(), kKeyLength,
                    reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string xor_bytes(std::string_view a, std::string_view b) {
  std::string out(a);
  for (size_t i = 0; i < out.size() && i < b.size(); ++i)
    out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

// Constant-time comparison so a wrong proof takes as long as a nearly right one.
bool equal_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// The value of attribute `name` ("r", "s", ...) in a comma-separated SCRAM message.
std::optional<std::string_view> attribute(std::string_view message, char name) {
  size_t pos = 0;
  while (pos <= message.size()) {
    size_t end = message.find(',', pos);
    if (end == std::string_view::npos) end = message.size();
    std::string_view part = message.substr(pos, end - pos);
    if (part.size() >= 2 && part[0] == name && part[1] == '=') return part.substr(2);
    pos = end + 1;
  }
  return std::nullopt;
}

std::string random_nonce() {
  return base64_encode(random_bytes(kNonceBytes));
}

} // namespace

std::string md5_password_hash(std::string_view user, std::string_view password) {
  return "md5" + hex(digest(EVP_md5(), std::string(password) + std::string(user)));
}

std::string md5_password_response(std::string_view user, std::string_view password_or_hash,
                                  std::string_view salt) {
  std::string inner = password_or_hash.starts_with("md5") && password_or_hash.size() == 35
                          ? std::string(password_or_hash.substr(3))
                          : md5_password_hash(user, password_or_hash).substr(3);
  return "md5" + hex(digest(EVP_md5(), inner + std::string(salt)));
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return Error{"invalid base64 length"};
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return Error{"invalid base64"};
  // EVP_DecodeBlock counts padding as zero bytes; drop them.
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') ++padding;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++padding;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return out;
}

ScramSecret make_scram_secret(std::string_view password, std::string_view salt, int iterations) {
  std::string salted = salted_password(password, salt, iterations);
  ScramSecret secret;
  secret.iterations = iterations;
  secret.salt = std::string(salt);
  secret.stored_key = digest(EVP_sha256(), hmac_sha256(salted, "Client Key"));
  secret.server_key = hmac_sha256(salted, "Server Key");
  return secret;
}

Result<ScramSecret> parse_scram_verifier(std::string_view verifier) {
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (!verifier.starts_with(kPrefix)) return Error{"not a SCRAM-SHA-256 verifier"};
  std::string_view rest = verifier.substr(kPrefix.size());
  size_t colon = rest.find(':');
  size_t dollar = rest.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar) {
    return Error{
        "SCRAM verifier must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"};
  }
  ScramSecret secret;
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + colon, secret.iterations);
  if (ec != std::errc() || ptr != rest.data() + colon || secret.iterations <= 0) {
    return Error{"SCRAM verifier has an invalid iteration count"};
  }
  auto salt = base64_decode(rest.substr(colon + 1, dollar - colon - 1));
  std::string_view keys = rest.substr(dollar + 1);
  size_t key_colon = keys.find(':');
  if (!salt || key_colon == std::string_view::npos) return Error{"SCRAM verifier is malformed"};
  auto stored = base64_decode(keys.substr(0, key_colon));
  auto server = base64_decode(keys.substr(key_colon + 1));
  if (!stored || !server || stored->size() != kKeyLength || server->size() != kKeyLength) {
    return Error{"SCRAM verifier keys are not 32-byte base64 values"};
  }
  secret.salt = *salt;
  secret.stored_key = *stored;
  secret.server_key = *server;
  return secret;
}

std::string format_scram_verifier(const ScramSecret& secret) {
  return "SCRAM-SHA-256$" + std::to_string(secret.iterations) + ":" + base64_encode(secret.salt) +
         "$" + base64_encode(secret.stored_key) + ":" + base64_encode(secret.server_key);
}

Result<std::string> ScramServer::handle_client_first(std::string_view message) {
  // gs2-header: "n,," (no channel binding) or "y,," (client could, server did not offer).
  if (message.size() < 3 || (message[0] != 'n' && message[0] != 'y') || message[1] != ',') {
    return Error{"malformed SCRAM message: unsupported channel binding flag"};
  }
  size_t header_end = message.find(',', 2);
  if (header_end == std::string_view::npos) return Error{"malformed SCRAM client-first-message"};
  gs2_header_ = std::string(message.substr(0, header_end + 1));
  client_first_bare_ = std::string(message.substr(header_end + 1));
  auto client_nonce = attribute(client_first_bare_, 'r');
  if (!client_nonce || client_nonce->empty())
    return Error{"SCRAM client-first-message has no nonce"};
  nonce_ = std::string(*client_nonce) + random_nonce();
  server_first_ = "r=" + nonce_ + ",s=" + base64_encode(secret_.salt) +
                  ",i=" + std::to_string(secret_.iterations);
  return server_first_;
}

Result<std::string> ScramServer::handle_client_final(std::string_view message) {
  size_t proof_at = message.rfind(",p=");
  if (proof_at == std::string_view::npos) return Error{"SCRAM client-final-message has no proof"};
  std::string_view without_proof = message.substr(0, proof_at);
  auto binding = attribute(without_proof, 'c');
  auto nonce = attribute(without_proof, 'r');
  if (!binding || *binding != base64_encode(gs2_header_)) {
    return Error{"SCRAM channel binding does not match"};
  }
  if (!nonce || *nonce != nonce_) return Error{"SCRAM nonce does not match"};
  auto proof = base64_decode(message.substr(proof_at + 3));
  if (!proof || proof->size() != kKeyLength) return Error{"malformed SCRAM proof"};
  std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  std::string client_signature = hmac_sha256(secret_.stored_key, auth_message);
  std::string client_key = xor_bytes(*proof, client_signature);
  if (!equal_secret(digest(EVP_sha256(), client_key), secret_.stored_key)) {
    return Error{"password authentication failed"};
  }
  return "v=" + base64_encode(hmac_sha256(secret_.server_key, auth_message));
}

ScramClient::ScramClient(std::string password)
    : password_(std::move(password)), client_nonce_(random_nonce()) {}

std::string ScramClient::client_first() const {
  return "n,,n=,r=" + client_nonce_;
}

Result<std::string> ScramClient::handle_server_first(std::string_view message) {
  auto nonce = attribute(message, 'r');
  auto salt_text = attribute(message, 's');
  auto iterations_text = attribute(message, 'i');
  if (!nonce || !salt_text || !iterations_text)
    return Error{"malformed SCRAM server-first-message"};
  if (!nonce->starts_with(client_nonce_) || nonce->size() == client_nonce_.size()) {
    return Error{"SCRAM server nonce does not extend the client nonce"};
  }
  int iterations = 0;
  auto [ptr, ec] = std::from_chars(iterations_text->data(),
                                   iterations_text->data() + iterations_text->size(), iterations);
  if (ec != std::errc() || iterations <= 0) return Error{"SCRAM iteration count is invalid"};
  auto salt = base64_decode(*salt_text);
  if (!salt) return Error{"SCRAM salt is not base64"};
  std::string salted = salted_password(password_, *salt, iterations);
  std::string client_key = hmac_sha256(salted, "Client Key");
  std::string stored_key = digest(EVP_sha256(), client_key);
  std::string without_proof = "c=biws,r=" + std::string(*nonce);
  std::string auth_message =
      "n=,r=" + client_nonce_ + "," + std::string(message) + "," + without_proof;
  std::string proof = xor_bytes(client_key, hmac_sha256(stored_key, auth_message));
  expected_server_signature_ = hmac_sha256(hmac_sha256(salted, "Server Key"), auth_message);
  return without_proof + ",p=" + base64_encode(proof);
}

Status ScramClient::verify_server_final(std::string_view message) const {
  auto signature = attribute(message, 'v');
  if (!signature) return Error{"SCRAM server-final-message has no signature"};
  auto decoded = base64_decode(*signature);
  if (!decoded || !equal_secret(*decoded, expected_server_signature_)) {
    return Error{"SCRAM server signature is wrong: the server does not know the password"};
  }
  return Ok{};
}

} // namespace switchyard::protocol
