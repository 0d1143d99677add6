#include "proxy/function_volatility.hpp"

#include "proxy/backend_query.hpp"

namespace switchyard::proxy {

std::optional<bool> FunctionVolatility::read_only(std::string_view name, uint64_t epoch,
                                                  Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  auto found = known_.find(std::string(name));
  if (found == known_.end() || found->second.epoch != epoch || now - found->second.learned > kTtl)
    return std::nullopt;
  return found->second.read_only;
}

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
  std::lock_guard lock(mutex_);
  if (known_.size() + names.size() > kMaxNames) known_.clear();
  for (const std::string& name : names)
    known_[name] = Known{false, epoch, now};
  for (const auto& row : rows) {
    if (row.size() != 2 || !row[0] || !row[1]) continue;
    if (auto found = known_.find(*row[0]); found != known_.end()) {
      found->second.read_only = *row[1] == "t";
    }
  }
}

} // namespace switchyard::proxy
