#include <catch2/catch.hpp>

#include "protocol/classify.hpp"
#include "protocol/copy_data.hpp"
#include "protocol/wire.hpp"

using namespace switchyard::protocol;

namespace {

CopyFrom copy_of(std::string_view sql) {
  Classification c = classify(sql);
  REQUIRE(c.error.empty());
  REQUIRE(c.statements.size() == 1);
  REQUIRE(c.statements[0].copy_from);
  return *c.statements[0].copy_from;
}

// The rows of `data` as text, each followed by its field count.
std::vector<std::string> rows_of(std::string_view data, const CopyFormat& format) {
  std::vector<std::string> out;
  for (const CopyRow& row : copy_rows(data, format)) {
    out.push_back(std::string(data.substr(row.begin, row.end - row.begin)) + "|" +
                  std::to_string(row.fields));
  }
  return out;
}

} // namespace

TEST_CASE("COPY FROM STDIN: columns, options and format as the parser reads them") {
  CopyFrom csv = copy_of("COPY public.t (a, \"B\") FROM STDIN WITH (FORMAT csv, DELIMITER ';', "
                         "HEADER, FORCE_NULL (a), QUOTE '''', FREEZE)");
  CHECK(csv.columns == std::vector<std::string>{"a", "B"});
  CHECK(csv.format.kind == CopyFormat::Kind::kCsv);
  CHECK(csv.format.delimiter == ';');
  CHECK(csv.format.quote == '\'');
  CHECK(csv.format.escape == '\''); // defaults to the quote
  CHECK(csv.format.header);
  CHECK(csv.extendable);
  CHECK(copy_from_sql(csv, "public.t", std::vector<std::string>{"a", "B", "id"}) ==
        "COPY public.t (a, \"B\", id) FROM STDIN WITH (format E'csv', delimiter E';', header, "
        "force_null (a), quote E'''', freeze)");
  CHECK(copy_values_sql(csv, std::vector<std::string>{"nextval('s'::regclass)", "now()"}, 3) ==
        "COPY (SELECT nextval('s'::regclass), now() FROM generate_series(1, 3)) TO STDOUT WITH "
        "(format E'csv', delimiter E';', quote E'''')");

  CopyFrom old_style = copy_of("copy t from stdin csv header delimiter '|' escape '\\' null 'x'");
  CHECK(old_style.columns.empty());
  CHECK(old_style.format.delimiter == '|');
  CHECK(old_style.format.escape == '\\');
  CHECK(old_style.format.header);
  CHECK(copy_from_sql(old_style, "t", std::vector<std::string>{"a"}) ==
        "COPY t (a) FROM STDIN WITH (format E'csv', header true, delimiter E'|', escape "
        "E'\\\\', null E'x')");

  CopyFrom text = copy_of("COPY t FROM STDIN");
  CHECK(text.format.kind == CopyFormat::Kind::kText);
  CHECK(text.format.delimiter == '\t');
  CHECK_FALSE(text.format.header);
  CHECK(copy_of("COPY t FROM STDIN (HEADER false)").format.header == false);

  CHECK(copy_of("COPY t FROM STDIN (FORMAT binary)").format.kind == CopyFormat::Kind::kBinary);
  CHECK_FALSE(copy_of("COPY t FROM STDIN (FORMAT 'CSV')").extendable); // PostgreSQL refuses it
  CHECK_FALSE(copy_of("COPY t FROM STDIN (FORMAT csv, HEADER match)").extendable);
  CHECK_FALSE(copy_of("COPY t FROM STDIN WHERE a > 1").extendable);
  CHECK_FALSE(classify("COPY t FROM '/tmp/file'").statements.at(0).copy_from);
}

TEST_CASE("COPY text data splits into rows as PostgreSQL reads them") {
  CopyFormat text;
  CHECK(rows_of("1\ta\n2\tb\n", text) == std::vector<std::string>{"1\ta|2", "2\tb|2"});
  // Escaped tabs and newlines stay in their field; \r\n ends a row; no final newline.
  CHECK(rows_of("1\\\tx\\\ny\r\n2\tz", text) ==
        std::vector<std::string>{"1\\\tx\\\ny|1", "2\tz|2"});
  CHECK(rows_of("1\r2\r", text) == std::vector<std::string>{"1|1", "2|1"});
  // The end-of-data line ends the rows; a header line is none of them.
  CHECK(rows_of("1\n\\.\n2\n", text) == std::vector<std::string>{"1|1"});
  text.header = true;
  CHECK(rows_of("a\tb\n1\t2\n", text) == std::vector<std::string>{"1\t2|2"});
  CHECK(rows_of("", text).empty());
}

TEST_CASE("COPY CSV data splits into rows, quotes and escapes respected") {
  CopyFormat csv{CopyFormat::Kind::kCsv, ',', '"', '"', false};
  CHECK(rows_of("1,\"a,b\nc\"\n2,\"say \"\"hi\"\"\"\n", csv) ==
        std::vector<std::string>{"1,\"a,b\nc\"|2", "2,\"say \"\"hi\"\"\"|2"});
  csv.escape = '\\';
  CHECK(rows_of("1,\"a\\\",b\"\n2,x\n", csv) ==
        std::vector<std::string>{"1,\"a\\\",b\"|2", "2,x|2"});
  // A backslash outside quotes is data in CSV, not an escape.
  CHECK(rows_of("1,a\\\n2,b\n", csv) == std::vector<std::string>{"1,a\\|2", "2,b|2"});
}

TEST_CASE("a line of COPY text or CSV data splits into its fields as they stand") {
  using Fields = std::vector<std::string_view>;
  CopyFormat text;
  CHECK(copy_fields("12\tab\\\tc\t\\N", text) == Fields{"12", "ab\\\tc", "\\N"});
  CHECK(copy_fields("", text) == Fields{""});
  CopyFormat csv{CopyFormat::Kind::kCsv, ',', '"', '"', false};
  CHECK(copy_fields("7,\"a,\"\"b\",,9", csv) == Fields{"7", "\"a,\"\"b\"", "", "9"});
}

TEST_CASE("a field's value as PostgreSQL reads it: escapes and quotes undone") {
  CopyFormat text;
  CHECK(copy_field_value("plain", text) == "plain");
  CHECK(copy_field_value("ab\\\tc", text) == "ab\tc"); // an escaped delimiter
  CHECK(copy_field_value("a\\tb\\nc\\\\d\\re", text) == "a\tb\nc\\d\re");
  CHECK(copy_field_value("\\b\\f\\v", text) == "\b\f\v");
  CHECK(copy_field_value("\\101\\0611x", text) == "A11x");     // octal, at most three digits
  CHECK(copy_field_value("\\x41\\x4a2\\xg", text) == "AJ2xg"); // hex, at most two
  CHECK(copy_field_value("\\q\\.", text) == "q.");             // any other character
  CHECK(copy_field_value("end\\", text) == "end\\");
  CopyFormat csv{CopyFormat::Kind::kCsv, ',', '"', '"', false};
  CHECK(copy_field_value("7", csv) == "7");
  CHECK(copy_field_value("\"a,\"\"b\"", csv) == "a,\"b");
  CHECK(copy_field_value("x\"y z\"w", csv) == "xy zw"); // a quoted stretch mid-field
  CHECK(copy_field_value("\"\"", csv).empty());
  CHECK(copy_field_value("a\\b", csv) == "a\\b"); // no backslash escapes in CSV
  CopyFormat escaped{CopyFormat::Kind::kCsv, ',', '\'', '\\', false};
  CHECK(copy_field_value("'it\\'s \\\\ ok'", escaped) == "it's \\ ok");
}

TEST_CASE("values are appended to the rows with all their fields") {
  CopyFormat text;
  std::string data = "1\ta\n2\n3\tc\td\r\n\\.\n";
  auto rows = copy_rows(data, text);
  std::vector<std::string_view> values{"10", "11"};
  // The short row is left short; the long one still gets a value (and its error).
  CHECK(append_copy_fields(data, rows, 2, values, '\t') == "1\ta\t10\n2\n3\tc\td\t11\r\n\\.\n");
}

namespace {

std::string binary_field(std::string_view bytes) {
  std::string out;
  append_u32(out, static_cast<uint32_t>(bytes.size()));
  return out.append(bytes);
}

std::string binary_tuple(std::initializer_list<std::string_view> fields) {
  std::string out;
  append_u16(out, static_cast<uint16_t>(fields.size()));
  for (std::string_view field : fields)
    out += binary_field(field);
  return out;
}

constexpr std::string_view kBinaryHeader("PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
constexpr std::string_view kBinaryTrailer("\377\377", 2);

} // namespace

TEST_CASE("COPY binary data: tuples found, fields appended to those with all theirs") {
  std::string data = std::string(kBinaryHeader) + binary_tuple({"ab", "c"}) + binary_tuple({"d"}) +
                     binary_tuple({"e", "f"}) + std::string(kBinaryTrailer);
  auto rows = binary_copy_rows(data);
  REQUIRE(rows);
  REQUIRE(rows->size() == 3);
  CHECK((*rows)[0].fields == 2);
  CHECK((*rows)[1].fields == 1);
  std::string added1 = binary_field("X");
  std::string added2 = binary_field("Y");
  std::vector<std::string_view> values{added1, added2};
  CHECK(append_binary_copy_fields(data, *rows, 2, values, 1) ==
        std::string(kBinaryHeader) + binary_tuple({"ab", "c", "X"}) + binary_tuple({"d"}) +
            binary_tuple({"e", "f", "Y"}) + std::string(kBinaryTrailer));
  // A NULL field (length -1) is a field without bytes.
  std::string null_field;
  append_u16(null_field, 1);
  append_u32(null_field, 0xFFFFFFFF);
  auto with_null =
      binary_copy_rows(std::string(kBinaryHeader) + null_field + std::string(kBinaryTrailer));
  REQUIRE(with_null);
  CHECK(with_null->at(0).fields == 1);
  // Truncated or foreign data is no binary COPY data.
  CHECK_FALSE(binary_copy_rows(std::string(kBinaryHeader) + binary_tuple({"ab"}).substr(0, 5)));
  CHECK_FALSE(binary_copy_rows(std::string(kBinaryHeader) + binary_tuple({"ab"})));
  CHECK_FALSE(binary_copy_rows("1\t2\n"));
}

TEST_CASE("the fields of binary COPY tuple data, NULL included") {
  std::string fields = binary_field("ab") + binary_field("");
  append_u32(fields, 0xFFFFFFFF);
  auto split = binary_copy_fields(fields);
  REQUIRE(split);
  REQUIRE(split->size() == 3);
  CHECK((*split)[0] == std::optional<std::string_view>("ab"));
  CHECK((*split)[1] == std::optional<std::string_view>(""));
  CHECK_FALSE((*split)[2]);
  CHECK_FALSE(binary_copy_fields(binary_field("ab").substr(0, 5))); // cut short
  CHECK_FALSE(binary_copy_fields(std::string_view("\0\0", 2)));
}

TEST_CASE("the catalog query names the table as a string constant") {
  std::string sql = column_defaults_sql("\"My\".\"t'x\"");
  CHECK(sql.find("to_regclass(E'\"My\".\"t''x\"')") != std::string::npos);
}
