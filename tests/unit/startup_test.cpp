#include <catch2/catch.hpp>

#include "protocol/startup.hpp"
#include "protocol/wire.hpp"

using namespace switchyard::protocol;

TEST_CASE("a StartupMessage round-trips with its parameters in order") {
  std::string packet =
      encode_startup({{"user", "app"}, {"database", "db"}, {"application_name", "t"}});
  auto parsed = parse_startup_packet(packet);
  REQUIRE(parsed);
  CHECK(parsed->kind == StartupKind::kStartup);
  CHECK(parsed->protocol == kProtocolVersion3);
  CHECK(parsed->parameter("user") == "app");
  CHECK(parsed->parameter("application_name") == "t");
  CHECK(parsed->parameter("missing").empty());
  REQUIRE(parsed->parameters.size() == 3);
  CHECK(parsed->parameters[1].first == "database");
}

TEST_CASE("encryption and cancel requests are recognised") {
  CHECK(parse_startup_packet(encode_ssl_request())->kind == StartupKind::kSslRequest);
  std::string gss;
  MessageBuilder(gss, 0).u32(kGssEncRequestCode);
  CHECK(parse_startup_packet(gss)->kind == StartupKind::kGssEncRequest);
  auto cancel = parse_startup_packet(encode_cancel_request(42, 0xdeadbeef));
  REQUIRE(cancel);
  CHECK(cancel->kind == StartupKind::kCancelRequest);
  CHECK(cancel->cancel_pid == 42);
  CHECK(cancel->cancel_key == 0xdeadbeef);
}

TEST_CASE("bad startup packets get PostgreSQL's reasons") {
  CHECK(startup_packet_length(std::string("\0\0\0\3", 4)).error() ==
        "invalid length of startup packet: 3");
  CHECK_FALSE(startup_packet_length(std::string("\0\1\0\0", 4))); // 65536 > 10000

  std::string v2;
  MessageBuilder(v2, 0).u32(2 << 16).cstring("user").cstring("x").byte('\0');
  CHECK(parse_startup_packet(v2).error() ==
        "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");

  std::string no_user = encode_startup({{"database", "db"}});
  CHECK(parse_startup_packet(no_user).error() ==
        "no PostgreSQL user name specified in startup packet");

  std::string unterminated;
  MessageBuilder(unterminated, 0).u32(kProtocolVersion3).bytes("user");
  CHECK_FALSE(parse_startup_packet(unterminated));

  std::string long_cancel;
  MessageBuilder(long_cancel, 0).u32(kCancelRequestCode).u32(1).u32(2).u32(3);
  CHECK(parse_startup_packet(long_cancel).error() == "invalid length of cancel request packet");
}
