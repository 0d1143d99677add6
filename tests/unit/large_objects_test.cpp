#include <catch2/catch.hpp>

#include "backfill/journal.hpp"
#include "protocol/classify.hpp"
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
  CHECK(book.unknown_descriptor(LargeObjectFunction::kRead, write) == 0);
  CHECK_FALSE(book.unknown_descriptor(LargeObjectFunction::kOpen, write).has_value());

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

TEST_CASE("a statement that is one call of a built-in function is read with its arguments") {
  using switchyard::protocol::function_call_statement;
  auto call = function_call_statement(
      "SELECT pg_catalog.lo_put('16385'::oid, -12, $2), 0, 1"); // three targets: not one call
  CHECK_FALSE(call.has_value());
  call = function_call_statement("SELECT pg_catalog.lo_put('16385'::oid, - 12, $2::bytea)");
  REQUIRE(call);
  CHECK(call->name == "lo_put");
  REQUIRE(call->arguments.size() == 3);
  CHECK(call->arguments[0].literal == "16385");
  // libpg_query's JSON drops negative integers' values: they come from the text.
  CHECK(call->arguments[1].literal == "-12");
  CHECK_FALSE(call->arguments[2].literal.has_value());
  CHECK(call->arguments[2].parameter == 2u);

  call = function_call_statement("select lo_creat(0)");
  REQUIRE(call);
  CHECK(call->arguments[0].literal == "0");
  call = function_call_statement("SELECT lo_from_bytea(NULL, E'\\\\x41', 4294967295, true)");
  REQUIRE(call);
  CHECK_FALSE(call->arguments[0].literal.has_value());
  CHECK_FALSE(call->arguments[0].parameter.has_value());
  CHECK(call->arguments[1].literal == "\\x41");
  CHECK(call->arguments[2].literal == "4294967295");
  CHECK(call->arguments[3].literal == "true");
  CHECK(function_call_statement("SELECT now()")->arguments.empty());

  for (const char* other : {
           "SELECT lo_open(oid, 131072) FROM pg_largeobject_metadata", // FROM
           "SELECT lo_unlink(lo_create(0))",                           // a call as argument
           "SELECT lo_open(1, 2) AS fd WHERE true",                    // WHERE
           "SELECT count(DISTINCT 1)",                                 // DISTINCT
           "SELECT lo_create(oid => 1)",                               // named argument
           "SELECT myschema.lo_create(1)",                             // not a built-in
           "SELECT lo_create(1); SELECT 2",                            // two statements
           "INSERT INTO t VALUES (lo_create(1))",
           "SELECT lo_create(B'101')", // a bit string
           "SELECT lo_create(",
       }) {
    INFO(other);
    CHECK_FALSE(function_call_statement(other).has_value());
  }
}

TEST_CASE("a statement that is one call of a large-object function is classified as one") {
  using switchyard::protocol::classify;
  CHECK(classify("SELECT pg_catalog.lowrite(0, '\\x00')").statements[0].large_object_call);
  CHECK(classify("SELECT lo_import('/tmp/x', 5)").statements[0].large_object_call);
  CHECK_FALSE(classify("SELECT lo_import('/tmp/x', 5, 6)").statements[0].large_object_call);
  CHECK_FALSE(classify("SELECT random()").statements[0].large_object_call);
  CHECK_FALSE(classify("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
                  .statements[0]
                  .large_object_call);
}

TEST_CASE("a large-object call in SQL is the FunctionCall that does the same") {
  using switchyard::protocol::sql_large_object_call;
  auto open = sql_large_object_call("SELECT pg_catalog.lo_open('16385', 131072)", nullptr);
  REQUIRE(open);
  CHECK(open->function == LargeObjectFunction::kOpen);
  CHECK(open->call.function == 952);
  CHECK(open->call.argument_formats == std::vector<uint16_t>{0, 0});
  CHECK(open->call.arguments == std::vector<Value>{std::string("16385"), std::string("131072")});
  CHECK(open->call.result_format == 0);

  switchyard::protocol::BindMessage bind;
  bind.parameter_formats = {0, 1};
  bind.parameters = {std::string("3"), std::string("\x01\x02")};
  bind.result_formats = {1};
  auto write = sql_large_object_call("SELECT lowrite($1, $2)", &bind);
  REQUIRE(write);
  CHECK(write->function == LargeObjectFunction::kWrite);
  CHECK(write->call.argument_formats == std::vector<uint16_t>{0, 1});
  CHECK(write->call.arguments == bind.parameters);
  CHECK(write->call.result_format == 1);
  CHECK_FALSE(sql_large_object_call("SELECT lowrite($1, $3)", &bind)); // no such parameter
  CHECK_FALSE(sql_large_object_call("SELECT lowrite($1, $2)", nullptr));
  CHECK_FALSE(sql_large_object_call("SELECT lo_put(1, 2)", nullptr)); // no such overload
  CHECK(sql_large_object_call("SELECT lo_get(1, 2, 3)", nullptr)->call.function == 3459);
}

TEST_CASE("SQL's own large-object functions reach the secondary by the primary's OID") {
  LargeObjectDescriptors book;
  FunctionCallMessage from_bytea{.function = 3457,
                                 .argument_formats = {0, 1},
                                 .arguments = {"0", std::string("\0data", 5)},
                                 .result_format = 0};
  auto made = book.answered(LargeObjectFunction::kFromBytea, from_bytea, std::string("16400"));
  REQUIRE(made);
  CHECK(made->object == 16400);
  CHECK(made->sql == "SELECT pg_catalog.lo_from_bytea(16400, $1)");
  CHECK(made->formats == std::vector<uint16_t>{1});
  CHECK(made->parameters == std::vector<Value>{std::string("\0data", 5)});
  CHECK_FALSE(made->copy_from_primary);

  FunctionCallMessage put{.function = 3460,
                          .argument_formats = {0},
                          .arguments = {"16400", "-1", "\\x41"},
                          .result_format = 0};
  auto written = book.answered(LargeObjectFunction::kPut, put, std::string());
  REQUIRE(written);
  CHECK(written->sql == "SELECT pg_catalog.lo_put(16400, -1, $1)");
  CHECK(written->formats == std::vector<uint16_t>{0});

  FunctionCallMessage import{
      .function = 764, .argument_formats = {}, .arguments = {"/srv/x"}, .result_format = 0};
  auto imported = book.answered(LargeObjectFunction::kImport, import, std::string("16401"));
  REQUIRE(imported);
  CHECK(imported->sql == "SELECT pg_catalog.lo_create(16401)");
  CHECK(imported->copy_from_primary); // the file is the primary's server's

  // Reads and lo_export store nothing; an int2 parameter is read as one.
  CHECK_FALSE(book.answered(LargeObjectFunction::kGet, binary_call({int4(16400)}), "data"));
  CHECK_FALSE(book.answered(LargeObjectFunction::kExport,
                            FunctionCallMessage{.function = 765,
                                                .argument_formats = {},
                                                .arguments = {"16400", "/srv/y"},
                                                .result_format = 0},
                            std::string("1")));
  book.answered(LargeObjectFunction::kOpen, binary_call({int4(16400), int4(0x60000)}), int4(2));
  FunctionCallMessage int2_write{.function = 955,
                                 .argument_formats = {1},
                                 .arguments = {std::string("\0\2", 2), std::string("ab")},
                                 .result_format = 0};
  auto through = book.answered(LargeObjectFunction::kWrite, int2_write, std::string("2"));
  REQUIRE(through);
  CHECK(through->sql == "SELECT pg_catalog.lo_put(16400, 0, $1)");
}

TEST_CASE("large-object calls giving columns their values are read, with lo_from_bytea's data") {
  using switchyard::protocol::classify;
  auto insert = classify("INSERT INTO docs (name, body) VALUES ('a', lo_from_bytea(0, $2::bytea)), "
                         "($1, pg_catalog.lo_create(0)::oid), ('c', NULL), ('d', lo_import('/x'))")
                    .statements[0];
  REQUIRE(insert.large_object_columns.size() == 3);
  const auto& first = insert.large_object_columns[0];
  CHECK(first.column == "body");
  CHECK(first.row == 0u);
  CHECK(first.rows == 4);
  CHECK(first.function == LargeObjectFunction::kFromBytea);
  CHECK(first.data == 2u);
  CHECK(insert.large_object_columns[1].row == 1u);
  CHECK(insert.large_object_columns[1].function == LargeObjectFunction::kCreate);
  CHECK_FALSE(insert.large_object_columns[1].data);
  CHECK(insert.large_object_columns[2].function == LargeObjectFunction::kImport);
  CHECK(insert.writing_calls.empty()); // the image carries all the calls make
  CHECK(insert.mirror == switchyard::protocol::MirrorPlan::kRowImage);

  auto positional = classify("INSERT INTO docs VALUES (1, 'a', lo_creat(-1))").statements[0];
  REQUIRE(positional.large_object_columns.size() == 1);
  CHECK(positional.large_object_columns[0].column.empty());
  CHECK(positional.large_object_columns[0].position == 2);

  auto update =
      classify("UPDATE docs SET body = lo_from_bytea(0, 'literal'), n = n + 1 WHERE id = 1")
          .statements[0];
  REQUIRE(update.large_object_columns.size() == 1);
  CHECK(update.large_object_columns[0].column == "body");
  CHECK_FALSE(update.large_object_columns[0].row);  // every row the UPDATE wrote
  CHECK_FALSE(update.large_object_columns[0].data); // a literal: copied from the primary

  // INSERT … SELECT: the call makes an object for each row the query yields.
  auto selected = classify("INSERT INTO docs (name, body) SELECT s.name, lo_from_bytea(0, s.data) "
                           "FROM staging s WHERE s.id > $1")
                      .statements[0];
  REQUIRE(selected.large_object_columns.size() == 1);
  CHECK(selected.large_object_columns[0].column == "body");
  CHECK_FALSE(selected.large_object_columns[0].row);
  CHECK_FALSE(selected.large_object_columns[0].data); // a column: copied from the primary
  CHECK(selected.writing_calls.empty());
  auto unlisted = classify("INSERT INTO docs SELECT 1, 'a', lo_from_bytea(0, $1)").statements[0];
  REQUIRE(unlisted.large_object_columns.size() == 1);
  CHECK(unlisted.large_object_columns[0].position == 2);
  CHECK(unlisted.large_object_columns[0].data == 1u);

  // A creating call elsewhere, in another schema, in an upsert, beside a writing CTE, or in a
  // query that may compute it for rows it does not yield or whose columns it cannot tell leaves
  // the statement as it was: a write calling functions that write elsewhere.
  for (const char* sql : {
           "INSERT INTO docs (body) VALUES (lo_create(0)), (COALESCE(lo_create(0), 1))",
           "UPDATE docs SET body = lo_create(0) WHERE lo_creat(-1) > 0",
           "INSERT INTO docs (body) VALUES (mine.lo_create(0)), (lo_create(0))",
           "INSERT INTO docs (id, body) VALUES (1, lo_create(0)) ON CONFLICT (id) DO NOTHING",
           "INSERT INTO docs (body) SELECT DISTINCT lo_create(0) FROM t",
           "INSERT INTO docs (body) SELECT lo_create(0) FROM t ORDER BY t.n LIMIT 1",
           "INSERT INTO docs (body) SELECT lo_create(0) FROM t UNION ALL SELECT 1",
           "INSERT INTO docs (n, body) SELECT t.*, lo_create(0) FROM t",
           "INSERT INTO docs (n, body) SELECT (t.r).*, lo_create(0) FROM t",
           "WITH gone AS (DELETE FROM docs) INSERT INTO docs (body) VALUES (lo_create(0))",
       }) {
    INFO(sql);
    auto s = classify(sql).statements[0];
    CHECK(s.large_object_columns.empty());
    CHECK_FALSE(s.writing_calls.empty());
  }
  CHECK(classify("INSERT INTO docs (body) VALUES (lo_create(0)), (random()::int)")
            .statements[0]
            .writing_calls.empty()); // random() writes no table
  CHECK(classify("INSERT INTO docs (body, n) VALUES (lo_create(0), f())")
            .statements[0]
            .writing_calls == std::vector<std::string>{"f"});
}

TEST_CASE("an object a statement's call created is made on the secondary under the row's OID") {
  using switchyard::protocol::created_large_object;
  Value data = std::string("\x41");
  auto from_bytea = created_large_object(LargeObjectFunction::kFromBytea, int4(16500), 1, &data, 0);
  REQUIRE(from_bytea);
  CHECK(from_bytea->object == 16500);
  CHECK(from_bytea->sql == "SELECT pg_catalog.lo_from_bytea(16500, $1)");
  CHECK(from_bytea->parameters == std::vector<Value>{data});
  CHECK(from_bytea->formats == std::vector<uint16_t>{0});
  CHECK_FALSE(from_bytea->copy_from_primary);

  auto computed = created_large_object(LargeObjectFunction::kFromBytea, std::string("16501"), 0);
  REQUIRE(computed);
  CHECK(computed->sql == "SELECT pg_catalog.lo_create(16501)");
  CHECK(computed->copy_from_primary); // data the statement computed: the primary's bytes

  auto created = created_large_object(LargeObjectFunction::kCreat, std::string("4294967295"), 0);
  REQUIRE(created);
  CHECK(created->sql == "SELECT pg_catalog.lo_create(4294967295)");
  CHECK_FALSE(created->copy_from_primary); // empty on both
  CHECK(created_large_object(LargeObjectFunction::kImport, std::string("7"), 0)->copy_from_primary);
  CHECK_FALSE(created_large_object(LargeObjectFunction::kCreate, std::nullopt, 0)); // NULL
  CHECK_FALSE(created_large_object(LargeObjectFunction::kCreate, std::string("x"), 0));
}

TEST_CASE("a plain large-object call is read without the parser as the parser reads it") {
  using switchyard::protocol::function_call_statement;
  for (std::string text : {
           "SELECT pg_catalog.lowrite(0, '\\x0102');",
           "select LO_OPEN('16385', 131072)",
           "SELECT lo_creat(-1)",
           "SELECT lo_from_bytea(0, 'it''s')",
           "SELECT lo_put($1, $2, $3)",
           "SELECT lo_unlink(NULL)",
           "SELECT lo_get(16385, 0, 10) ; ",
           "SELECT lo_tell64(4294967296)",
       }) {
    INFO(text);
    auto plain = function_call_statement(text);
    // A comment leaves the scan to the parser.
    auto parsed = function_call_statement(std::string("/* parsed */ ") + text);
    REQUIRE(plain);
    REQUIRE(parsed);
    CHECK(plain->name == parsed->name);
    REQUIRE(plain->arguments.size() == parsed->arguments.size());
    for (size_t i = 0; i < plain->arguments.size(); ++i) {
      CHECK(plain->arguments[i].literal == parsed->arguments[i].literal);
      CHECK(plain->arguments[i].parameter == parsed->arguments[i].parameter);
    }
  }
  // What the scan does not take, the parser reads (or refuses) as ever.
  CHECK(function_call_statement("SELECT lo_creat( - 1 )")->arguments[0].literal == "-1");
  CHECK(function_call_statement("SELECT lo_put(1, 0, 'a'\n'b')")->arguments[2].literal == "ab");
  CHECK(function_call_statement("SELECT lo_put(1, 0, E'\\\\x41')")->arguments[2].literal ==
        "\\x41");
  CHECK_FALSE(function_call_statement("SELECT lo_open(1, 2) fd FROM t"));
  CHECK_FALSE(function_call_statement("SELECT lo_open(1, 'x"));
}
