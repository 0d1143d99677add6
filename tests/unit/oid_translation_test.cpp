#include <catch2/catch.hpp>

#include "protocol/row_image.hpp"
#include "proxy/oid_translation.hpp"

using switchyard::protocol::FieldDescription;
using switchyard::protocol::Value;
using switchyard::proxy::CatalogRows;
using switchyard::proxy::OidTranslation;

namespace {

std::string description(std::vector<FieldDescription> fields) {
  std::string message;
  switchyard::protocol::append_row_description(message, fields);
  return message.substr(5);
}

FieldDescription field(std::string name, uint32_t table, uint16_t column, uint32_t type) {
  return FieldDescription{std::move(name), table, column, type, 4, 0xFFFFFFFF, 0};
}

std::vector<Value> row(std::vector<std::optional<std::string>> values) {
  return {values.begin(), values.end()};
}

} // namespace

TEST_CASE("a secondary's RowDescription is told with the primary's tables, columns and types") {
  OidTranslation oids;
  // people (id, name, feeling mood): on the secondary a dropped column moved name and feeling
  // on by one, and every user object has other OIDs.
  std::string secondary = description({field("id", 20000, 1, 23), field("feeling", 20000, 4, 30000),
                                       field("ctid", 20000, 0xFFFF, 27), field("two", 0, 0, 23)});
  OidTranslation::Unknown unknown;
  CHECK_FALSE(oids.translate(secondary, unknown));
  CHECK(unknown.tables == std::vector<uint32_t>{20000});
  CHECK(unknown.types == std::vector<uint32_t>{30000});
  std::string names = OidTranslation::secondary_names_sql(unknown);
  CHECK(names.find("c.oid IN (20000)") != std::string::npos);
  CHECK(names.find("t.oid IN (30000)") != std::string::npos);

  CatalogRows secondary_rows = {row({"r", "20000", "public", "people", "1", "id"}),
                                row({"r", "20000", "public", "people", "3", "name"}),
                                row({"r", "20000", "public", "people", "4", "feeling"}),
                                row({"t", "30000", "public", "mood", std::nullopt, std::nullopt})};
  std::string objects = OidTranslation::primary_objects_sql(secondary_rows);
  CHECK(objects.find("'people')") != std::string::npos);
  CHECK(objects.find("'mood')") != std::string::npos);
  CatalogRows primary_rows = {row({"r", "16500", "public", "people", "1", "id"}),
                              row({"r", "16500", "public", "people", "2", "name"}),
                              row({"r", "16500", "public", "people", "3", "feeling"}),
                              row({"t", "16400", "public", "mood", std::nullopt, std::nullopt})};
  oids.learn(unknown, secondary_rows, primary_rows);

  OidTranslation::Unknown none;
  auto translated = oids.translate(secondary, none);
  REQUIRE(translated);
  CHECK(none.empty());
  CHECK(*translated == description({field("id", 16500, 1, 23), field("feeling", 16500, 3, 16400),
                                    field("ctid", 16500, 0xFFFF, 27), field("two", 0, 0, 23)}));

  // Built-in objects only: the same bytes.
  std::string builtin = description({field("n", 0, 0, 23)});
  CHECK(oids.translate(builtin, none) == builtin);

  // A column added since the table was learned is looked up again.
  std::string added = description({field("later", 20000, 5, 25)});
  OidTranslation::Unknown again;
  CHECK_FALSE(oids.translate(added, again));
  CHECK(again.tables == std::vector<uint32_t>{20000});
}

TEST_CASE("objects the primary does not have are remembered as unmatched") {
  OidTranslation oids;
  OidTranslation::Unknown unknown;
  std::string secondary = description({field("x", 20001, 1, 30001)});
  CHECK_FALSE(oids.translate(secondary, unknown));
  // The secondary knows them, the primary does not.
  oids.learn(unknown,
             {row({"r", "20001", "public", "only_here", "1", "x"}),
              row({"t", "30001", "public", "only_here_type", std::nullopt, std::nullopt})},
             {});
  OidTranslation::Unknown nothing_to_learn;
  CHECK_FALSE(oids.translate(secondary, nothing_to_learn));
  CHECK(nothing_to_learn.empty());
  CHECK(OidTranslation::primary_objects_sql({}).empty());
}
