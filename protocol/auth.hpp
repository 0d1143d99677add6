#pragma once

#include <string>
#include <string_view>

#include "protocol/result.hpp"

namespace switchyard::protocol {

//! PostgreSQL's md5 password answer: "md5" + md5hex(md5hex(password + user) + salt).
//! `password_or_hash` may already be a stored "md5..." hash of password + user.
std::string md5_password_response(std::string_view user, std::string_view password_or_hash,
                                  std::string_view salt);
//! The stored md5 form of a password: "md5" + md5hex(password + user).
std::string md5_password_hash(std::string_view user, std::string_view password);

std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);
//! n cryptographically random bytes.
std::string random_bytes(size_t n);

//! What a server keeps to check SCRAM-SHA-256 logins without knowing the password.
struct ScramSecret {
  int iterations = 4096;
  std::string salt;       //!< raw bytes
  std::string stored_key; //!< raw 32 bytes
  std::string server_key; //!< raw 32 bytes
};

//! Derives the secret for `password` (as CREATE ROLE ... PASSWORD does).
ScramSecret make_scram_secret(std::string_view password, std::string_view salt, int iterations);
//! Parses PostgreSQL's verifier text "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
Result<ScramSecret> parse_scram_verifier(std::string_view verifier);
//! Formats a secret as PostgreSQL's verifier text.
std::string format_scram_verifier(const ScramSecret& secret);

//! Server side of one SCRAM-SHA-256 exchange (RFC 5802/7677, no channel binding).
class ScramServer {
public:
  explicit ScramServer(ScramSecret secret) : secret_(std::move(secret)) {}
  //! Takes the client-first-message, returns the server-first-message.
  Result<std::string> handle_client_first(std::string_view message);
  //! Takes the client-final-message; returns the server-final-message if the proof is right.
  Result<std::string> handle_client_final(std::string_view message);

private:
  ScramSecret secret_;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;
};

//! Client side of one SCRAM-SHA-256 exchange, used to log in to backends.
class ScramClient {
public:
  explicit ScramClient(std::string password);
  //! The client-first-message.
  std::string client_first() const;
  //! Takes the server-first-message, returns the client-final-message with the proof.
  Result<std::string> handle_server_first(std::string_view message);
  //! Checks the server-final-message proves the server knew the secret too.
  Status verify_server_final(std::string_view message) const;

private:
  std::string password_;
  std::string client_nonce_;
  std::string expected_server_signature_;
};

} // namespace switchyard::protocol
