#include <catch2/catch.hpp>

#include <vector>

#include "protocol/auth.hpp"

using namespace switchyard::protocol;

TEST_CASE("SCRAM secrets match PostgreSQL's derivation") {
  // Reference values computed independently with Python's hashlib (RFC 7677 password/salt).
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  REQUIRE(salt);
  ScramSecret secret = make_scram_secret("pencil", *salt, 4096);
  CHECK(base64_encode(secret.stored_key) == "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=");
  CHECK(base64_encode(secret.server_key) == "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
  std::string verifier = format_scram_verifier(secret);
  auto parsed = parse_scram_verifier(verifier);
  REQUIRE(parsed);
  CHECK(parsed->stored_key == secret.stored_key);
  CHECK(parsed->iterations == 4096);
}

TEST_CASE("malformed SCRAM verifiers are refused") {
  CHECK_FALSE(parse_scram_verifier("md5abc"));
  CHECK_FALSE(parse_scram_verifier("SCRAM-SHA-256$x:abc$def:ghi"));
  CHECK_FALSE(parse_scram_verifier("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$short:short"));
}

TEST_CASE("SCRAM client and server agree on the right password only") {
  ScramSecret secret = make_scram_secret("right", random_bytes(16), 4096);
  for (const std::string password : {"right", "wrong"}) {
    ScramServer server(secret);
    ScramClient client(password);
    auto server_first = server.handle_client_first(client.client_first());
    REQUIRE(server_first);
    auto client_final = client.handle_server_first(*server_first);
    REQUIRE(client_final);
    auto server_final = server.handle_client_final(*client_final);
    if (password == "right") {
      REQUIRE(server_final);
      CHECK(client.verify_server_final(*server_final));
      CHECK_FALSE(client.verify_server_final("v=" + base64_encode(std::string(32, 'x'))));
    } else {
      CHECK(server_final.error() == "password authentication failed");
    }
  }
}

TEST_CASE("SCRAM server refuses a replayed or altered exchange") {
  ScramSecret secret = make_scram_secret("pw", random_bytes(16), 4096);
  ScramServer server(secret);
  CHECK_FALSE(server.handle_client_first("p=tls-server-end-point,,n=,r=abc"));
  REQUIRE(server.handle_client_first("n,,n=,r=clientnonce"));
  CHECK(server.handle_client_final("c=biws,r=othernonce,p=AAAA").error() ==
        "SCRAM nonce does not match");
  CHECK_FALSE(server.handle_client_final("c=biws,r=clientnonce"));
}

TEST_CASE("md5 answers match PostgreSQL's md5 auth") {
  std::string salt("\x01\x02\x03\x04", 4);
  CHECK(md5_password_hash("postgres", "secret") == "md553f48b7c4b76a86ce72276c5755f217d");
  CHECK(md5_password_response("postgres", "secret", salt) == "md5bb41a296aab6baccb36ff243a562abff");
  // The stored hash works as well as the password itself.
  CHECK(md5_password_response("postgres", "md553f48b7c4b76a86ce72276c5755f217d", salt) ==
        "md5bb41a296aab6baccb36ff243a562abff");
}

TEST_CASE("base64 round-trips every padding length") {
  for (const std::string& bytes :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto decoded = base64_decode(base64_encode(bytes));
    REQUIRE(decoded);
    CHECK(*decoded == bytes);
  }
  CHECK_FALSE(base64_decode("abc"));
  CHECK_FALSE(base64_decode("a!c="));
}
