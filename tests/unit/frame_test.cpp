#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/wire.hpp"

using namespace switchyard::protocol;

namespace {

struct Seen {
  char tag;
  uint32_t length;
  std::string peek;
  bool operator==(const Seen&) const = default;
};

// A pipeline as clients send it: Parse, Bind, Describe, Execute, Sync, Query, Terminate,
// with an empty-bodied message last so a chunk can end exactly on it.
std::string frontend_stream() {
  std::string out;
  MessageBuilder(out, 'P').cstring("s1").cstring("SELECT $1::int").u16(0);
  MessageBuilder(out, 'B').cstring("").cstring("s1").u16(0).u16(1).u32(1).bytes("7").u16(0);
  MessageBuilder(out, 'D').byte('P').cstring("");
  MessageBuilder(out, 'E').cstring("").u32(0);
  append_empty_message(out, 'S');
  MessageBuilder(out, 'Q').cstring(std::string(300, 'x')); // longer than the peek
  append_empty_message(out, 'X');
  return out;
}

std::vector<Seen> scan_in_pieces(const std::string& stream, const std::vector<size_t>& cuts) {
  FrameScanner scanner(Direction::kFrontend, 1 << 20);
  std::vector<Seen> seen;
  size_t from = 0;
  auto sink = [&](const FrameScanner::Event& e) {
    seen.push_back({e.tag, e.length, std::string(e.peek)});
  };
  for (size_t cut : cuts) {
    REQUIRE_FALSE(scanner.scan(std::string_view(stream).substr(from, cut - from), sink));
    from = cut;
  }
  REQUIRE_FALSE(scanner.scan(std::string_view(stream).substr(from), sink));
  REQUIRE(scanner.at_boundary());
  return seen;
}

} // namespace

TEST_CASE("decode_frame returns each message of a concatenated stream; append_message "
          "re-encodes them byte for byte") {
  std::string stream = frontend_stream();
  std::string tags;
  std::string again;
  std::string_view rest = stream;
  while (!rest.empty()) {
    auto result = decode_frame(rest, Direction::kFrontend, 1 << 20);
    REQUIRE(result.status == DecodeStatus::kMessage);
    tags.push_back(result.frame.tag);
    append_message(again, result.frame.tag, result.frame.body);
    rest.remove_prefix(result.consumed);
  }
  CHECK(tags == "PBDESQX");
  CHECK(again == stream);
}

TEST_CASE("decode_frame needs more data at every split point and never reads past the end") {
  std::string stream = frontend_stream();
  for (size_t cut = 0; cut < stream.size(); ++cut) {
    std::string prefix = stream.substr(0, cut);
    std::string tags;
    std::string_view rest = prefix;
    while (true) {
      auto result = decode_frame(rest, Direction::kFrontend, 1 << 20);
      REQUIRE(result.status != DecodeStatus::kMalformed);
      if (result.status == DecodeStatus::kNeedMoreData) break;
      tags.push_back(result.frame.tag);
      rest.remove_prefix(result.consumed);
    }
    // Exactly the messages wholly inside the prefix come out.
    CHECK(std::string("PBDESQX").substr(0, tags.size()) == tags);
  }
}

TEST_CASE("FrameScanner sees the same messages however the stream is split") {
  std::string stream = frontend_stream();
  auto whole = scan_in_pieces(stream, {});
  REQUIRE(whole.size() == 7);
  CHECK(whole[4] == Seen{'S', 4, ""});
  CHECK(whole[5].peek.size() == FrameScanner::kPeekBytes);
  CHECK(whole[5].length == 4 + 301);
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    INFO("split at byte " << cut);
    CHECK(scan_in_pieces(stream, {cut}) == whole);
  }
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < stream.size(); ++i)
    every_byte.push_back(i);
  CHECK(scan_in_pieces(stream, every_byte) == whole);
}

TEST_CASE("FrameScanner reports an empty-bodied message as soon as its header ends") {
  std::string sync;
  append_empty_message(sync, 'S');
  FrameScanner scanner(Direction::kFrontend, 1024);
  int seen = 0;
  REQUIRE_FALSE(scanner.scan(sync, [&](const FrameScanner::Event&) { ++seen; }));
  CHECK(seen == 1);
}

TEST_CASE("malformed headers are known from the header alone") {
  auto fault_of = [](const std::string& bytes, Direction direction = Direction::kFrontend) {
    FrameScanner scanner(direction, 1000);
    auto bad = scanner.scan(bytes, [](const FrameScanner::Event&) {});
    auto decoded = decode_frame(bytes, direction, 1000);
    CHECK((decoded.status == DecodeStatus::kMalformed) == static_cast<bool>(bad));
    CHECK(decoded.malformation.fault == bad.fault);
    return bad;
  };
  std::string below_four = {'Q', 0, 0, 0, 3};
  CHECK(fault_of(below_four).fault == FrameFault::kBadLength);
  std::string too_large = {'Q', 0, 0, 0x10, 0};
  auto large = fault_of(too_large);
  CHECK(large.fault == FrameFault::kTooLarge);
  CHECK(large.reason == "message of 4096 bytes exceeds the limit of 1000 bytes");
  std::string startup_like = {0, 0, 0, 8, 4};
  auto unknown = fault_of(startup_like);
  CHECK(unknown.fault == FrameFault::kUnknownType);
  CHECK(unknown.reason == "invalid frontend message type 0x00");
  // 'Z' is a backend message; a client may not send it.
  std::string ready = {'Z', 0, 0, 0, 5, 'I'};
  CHECK(fault_of(ready).fault == FrameFault::kUnknownType);
  CHECK_FALSE(fault_of(ready, Direction::kBackend));
}

TEST_CASE("message_name covers both directions") {
  CHECK(std::string(message_name(Direction::kFrontend, 'Q')) == "Query");
  CHECK(std::string(message_name(Direction::kBackend, 's')) == "PortalSuspended");
  CHECK(message_name(Direction::kFrontend, 'T') == nullptr);
}

TEST_CASE("BodyReader refuses to read past the body") {
  std::string body = std::string("ab\0", 3) + std::string("\0\0\0\x07", 4);
  BodyReader reader(body);
  CHECK(*reader.cstring() == "ab");
  CHECK(*reader.u32() == 7);
  CHECK(reader.at_end());
  CHECK_FALSE(reader.u16());
  CHECK_FALSE(reader.byte());
  BodyReader unterminated("abc");
  CHECK_FALSE(unterminated.cstring());
}

TEST_CASE("an error's cursor position moves back by the characters put in front") {
  using namespace std::string_literals;
  std::string body = "SERROR\0C42703\0Mcolumn \"nosuch\" does not exist\0P14\0\0"s;
  std::string out;
  append_error_shifted(out, 'E', body, 6);
  REQUIRE(out.size() == body.size() + 4); // "14" became "8"
  CHECK(out[0] == 'E');
  CHECK(read_u32(out.data() + 1) == out.size() - 1);
  CHECK(out.substr(5) == "SERROR\0C42703\0Mcolumn \"nosuch\" does not exist\0P8\0\0"s);

  out.clear(); // a position inside the prefix, a notice, other fields: kept as they are
  std::string notice = "SNOTICE\0P3\0q\0\0"s;
  append_error_shifted(out, 'N', notice, 6);
  CHECK(out[0] == 'N');
  CHECK(out.substr(5) == notice);

  out.clear(); // malformed (no terminator): copied unchanged
  append_error_shifted(out, 'E', "SERROR\0P14"s, 6);
  CHECK(out.substr(5) == "SERROR\0P14"s);
}
