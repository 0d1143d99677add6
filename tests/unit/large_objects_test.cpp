#include <catch2/catch.hpp>

#include "backfill/journal.hpp"
#include "protocol/extended.hpp"
#include "protocol/large_objects.hpp"
#include "protocol/wire.hpp"

using switchyard::protocol::FunctionCallMessage;
using switchyard::protocol::LargeObjectDescriptors;
using switchyard::protocol::LargeObjectFunction;
using switchyard::protocol::parse_function_call;
using switchyard::protocol::Value;

namespace {

std::string int4(uint32_t v) {
  std::string out;
  switchyard::protocol::append_u32(out, v);
  return out;
}

std::string int8(int64_t v) {
  return int4(static_cast<uint32_t>(static_cast<uint64_t>(v) >> 32)) +
         int4(static_cast<uint32_t>(v));
}

// A call as libpq makes it: every argument and the result binary.
FunctionCallMessage binary_call(std::vector<Value> arguments) {
  return FunctionCallMessage{.function = 0,
                             .argument_formats = {1},
                             .arguments = std::move(arguments),
                             .result_format = 1};
}

} // namespace

TEST_CASE("a FunctionCall is read with its formats, arguments (NULL too) and result format") {
  std::string body = int4(955);
  switchyard::protocol::append_u16(body, 1); // one format for all
  switchyard::protocol::append_u16(body, 1);
  switchyard::protocol::append_u16(body, 3); // arguments
  body += int4(4) + int4(7) + int4(0xFFFFFFFFu) + int4(3) + "abc";
  switchyard::protocol::append_u16(body, 1);
  auto call = parse_function_call(body);
  REQUIRE(call.ok());
  CHECK(call->function == 955);
  CHECK(call->argument_formats == std::vector<uint16_t>{1});
  CHECK(call->arguments == std::vector<Value>{int4(7), std::nullopt, std::string("abc")});
  CHECK(call->result_format == 1);
  for (size_t cut = 0; cut < body.size(); ++cut) {
    CHECK_FALSE(parse_function_call(std::string_view(body).substr(0, cut)).ok());
  }
}

TEST_CASE("only the large-object functions' fixed OIDs are known, and which of them write") {
  using switchyard::protocol::large_object_function;
  using switchyard::protocol::writes;
  CHECK(large_object_function(955) == LargeObjectFunction::kWrite);
  CHECK(large_object_function(3172) == LargeObjectFunction::kTruncate64);
  CHECK_FALSE(large_object_function(177).has_value()); // int4pl
  CHECK(writes(LargeObjectFunction::kCreat));
  CHECK(writes(LargeObjectFunction::kUnlink));
  CHECK(writes(LargeObjectFunction::kTruncate));
  CHECK_FALSE(writes(LargeObjectFunction::kOpen));
  CHECK_FALSE(writes(LargeObjectFunction::kRead));
  CHECK_FALSE(writes(LargeObjectFunction::kSeek64));
}

TEST_CASE("writes through a descriptor reach the secondary by object and offset") {
  LargeObjectDescriptors book;
  // lo_creat's OID is the primary's choice: the secondary creates that one.
  auto created =
      book.answered(LargeObjectFunction::kCreat, binary_call({int4(0x60000)}), int4(4000000000u));
  REQUIRE(created);
  CHECK(created->sql == "SELECT pg_catalog.lo_create(4000000000)");
  CHECK(created->parameters.empty());

  auto write = binary_call({int4(0), std::string("hello")});
  CHECK(book.unknown_descriptor(LargeObjectFunction::kWrite, write) == 0);
  CHECK_FALSE(book.answered(LargeObjectFunction::kOpen,
                            binary_call({int4(4000000000u), int4(0x60000)}), int4(0)));
  CHECK_FALSE(book.unknown_descriptor(LargeObjectFunction::kWrite, write).has_value());

  auto first = book.answered(LargeObjectFunction::kWrite, write, int4(5));
  REQUIRE(first);
  CHECK(first->sql == "SELECT pg_catalog.lo_put(4000000000, 0, $1)");
  CHECK(first->types == std::vector<uint32_t>{17});
  CHECK(first->formats == std::vector<uint16_t>{1});
  CHECK(first->parameters == std::vector<Value>{std::string("hello")});
  CHECK(book.answered(LargeObjectFunction::kWrite, write, int4(5))->sql ==
        "SELECT pg_catalog.lo_put(4000000000, 5, $1)");

  // A read moves the offset by what it read (text: decoded), a seek to what the primary says.
  CHECK_FALSE(book.answered(LargeObjectFunction::kRead, binary_call({int4(0), int4(100)}),
                            std::string("abc")));
  CHECK(book.answered(LargeObjectFunction::kWrite, write, int4(5))->sql ==
        "SELECT pg_catalog.lo_put(4000000000, 13, $1)");
  FunctionCallMessage text_read{
      .function = 0, .argument_formats = {}, .arguments = {"0", "10"}, .result_format = 0};
  CHECK_FALSE(book.answered(LargeObjectFunction::kRead, text_read, std::string("\\x0102")));
  CHECK(book.answered(LargeObjectFunction::kWrite, write, int4(5))->sql ==
        "SELECT pg_catalog.lo_put(4000000000, 20, $1)");
  CHECK_FALSE(book.answered(LargeObjectFunction::kSeek64, binary_call({int4(0), int8(3), int4(2)}),
                            int8(int64_t{1} << 40)));
  CHECK(book.answered(LargeObjectFunction::kWrite, write, int4(5))->sql ==
        "SELECT pg_catalog.lo_put(4000000000, 1099511627776, $1)");

  auto truncate =
      book.answered(LargeObjectFunction::kTruncate, binary_call({int4(0), int4(9)}), int4(0));
  REQUIRE(truncate);
  CHECK(truncate->sql ==
        "SELECT pg_catalog.lo_truncate64(pg_catalog.lo_open(4000000000, 131072), 9)");

  // Closed, or the transaction over: the descriptor names nothing any more.
  CHECK_FALSE(book.answered(LargeObjectFunction::kClose, binary_call({int4(0)}), int4(0)));
  CHECK(book.unknown_descriptor(LargeObjectFunction::kWrite, write) == 0);
  book.answered(LargeObjectFunction::kOpen, binary_call({int4(7), int4(0x60000)}), int4(0));
  book.clear();
  CHECK(book.unknown_descriptor(LargeObjectFunction::kTruncate64, write) == 0);
  CHECK_FALSE(book.unknown_descriptor(LargeObjectFunction::kRead, write)
                  .has_value()); // reads change nothing

  auto unlink =
      book.answered(LargeObjectFunction::kUnlink, binary_call({int4(4000000000u)}), int4(1));
  REQUIRE(unlink);
  CHECK(unlink->sql == "SELECT pg_catalog.lo_unlink(4000000000)");
}

TEST_CASE("a descriptor whose offset cannot be followed is forgotten, so its writes are refused") {
  LargeObjectDescriptors book;
  book.answered(LargeObjectFunction::kOpen, binary_call({int4(7), int4(0x60000)}), int4(3));
  FunctionCallMessage text_read{
      .function = 0, .argument_formats = {}, .arguments = {"3", "10"}, .result_format = 0};
  book.answered(LargeObjectFunction::kRead, text_read, std::string("\\x0")); // not bytea text
  CHECK(book.unknown_descriptor(LargeObjectFunction::kWrite,
                                binary_call({int4(3), std::string("x")})) == 3);
}

TEST_CASE("a large object's journal entry keeps its OID through the journal's JSON") {
  switchyard::backfill::JournalEntry entry;
  entry.kind = switchyard::backfill::JournalEntry::Kind::kLargeObject;
  entry.large_object = 4000000000u;
  auto read = switchyard::backfill::from_json_line(switchyard::backfill::to_json_line(entry));
  REQUIRE(read.ok());
  CHECK(read->kind == switchyard::backfill::JournalEntry::Kind::kLargeObject);
  CHECK(read->large_object == 4000000000u);
}
