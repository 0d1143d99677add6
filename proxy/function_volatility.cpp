#include "proxy/function_volatility.hpp"

#include <unordered_set>

#include "proxy/backend_query.hpp"

namespace switchyard::proxy {

std::string FunctionVolatility::lookup_sql(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& name : names) {
    if (!list.empty()) list += ", ";
    list += quote_literal(name);
  }
  // A name PostgreSQL has a function of itself is not the database's own to vouch for.
  return "SELECT p.proname, pg_catalog.bool_and(p.prokind = 'f' AND p.provolatile <> 'v' AND "
         "n.nspname NOT IN ('pg_catalog', 'information_schema')) "
         "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
         "WHERE p.proname IN (" +
         list + ") GROUP BY p.proname";
}

void FunctionVolatility::learn(const std::vector<std::string>& names, const CatalogRows& rows,
                               uint64_t epoch, Clock::time_point now) {
  std::unordered_set<std::string_view> read_only;
  for (const auto& row : rows) {
    if (row.size() == 2 && row[0] && row[1] && *row[1] == "t") read_only.insert(*row[0]);
  }
  for (const std::string& name : names)
    known_.remember(name, read_only.contains(name), epoch, now);
}

} // namespace switchyard::proxy
