#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "proxy/function_volatility.hpp"

using switchyard::proxy::CatalogRows;
using switchyard::proxy::FunctionVolatility;

TEST_CASE("function volatility: learned by name, until the epoch moves or it is old") {
  FunctionVolatility functions;
  auto now = FunctionVolatility::Clock::now();
  CHECK_FALSE(functions.read_only("lookup", 1, now));
  // One row per name there is a function of; a name without one is not read-only.
  functions.learn({"lookup", "touch", "missing"}, CatalogRows{{"lookup", "t"}, {"touch", "f"}}, 1,
                  now);
  CHECK(functions.read_only("lookup", 1, now) == true);
  CHECK(functions.read_only("touch", 1, now) == false);
  CHECK(functions.read_only("missing", 1, now) == false);
  CHECK_FALSE(functions.read_only("lookup", 2, now)); // DDL through switchyard since
  CHECK_FALSE(
      functions.read_only("lookup", 1, now + FunctionVolatility::kTtl + std::chrono::seconds(1)));
}

TEST_CASE("function volatility: the catalog query names each function as a literal") {
  std::string sql = FunctionVolatility::lookup_sql({"lookup", "it's"});
  CHECK(sql.find("IN ('lookup', 'it''s')") != std::string::npos);
  CHECK(sql.find("provolatile <> 'v'") != std::string::npos);
  CHECK(sql.find("prokind = 'f'") != std::string::npos);
  CHECK(sql.find("NOT IN ('pg_catalog', 'information_schema')") != std::string::npos);
}
