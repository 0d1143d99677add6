#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/epoch_cache.hpp"
#include "proxy/oid_translation.hpp"

namespace switchyard::proxy {

//! Which of a database's own functions cannot write, as its catalog tells: PostgreSQL refuses
//! INSERT, UPDATE and DELETE in a function declared STABLE or IMMUTABLE, so a SELECT calling
//! such functions besides the built-ins switchyard knows is a read. By name as the classifier
//! gives it (schema aside): read-only when every plain function of that name in the database
//! is; an aggregate or window function (whose state functions may write), a procedure, a name
//! with no function, or one PostgreSQL has a function of (`pg_backend_pid()` is STABLE, yet
//! answers differently on another server: built-ins are classify's lists to know) is not.
//! Sessions learn names from the primary (lookup_sql, learn), and what they learned holds as
//! an EpochCache holds it. Thread-safe.
class FunctionVolatility {
public:
  using Clock = EpochCache<bool>::Clock;
  static constexpr auto kTtl = EpochCache<bool>::kTtl;

  //! Whether the functions named `name` are read-only; nullopt when not known (any more).
  std::optional<bool> read_only(std::string_view name, uint64_t epoch,
                                Clock::time_point now) const {
    return known_.find(name, epoch, now);
  }

  //! The catalog query telling what `names` are: a row (name, read-only) per name there is a
  //! function of.
  static std::string lookup_sql(const std::vector<std::string>& names);

  //! Learns `names` from the rows lookup_sql returned; a name without a row is not read-only.
  void learn(const std::vector<std::string>& names, const CatalogRows& rows, uint64_t epoch,
             Clock::time_point now);

private:
  EpochCache<bool> known_;
};

} // namespace switchyard::proxy
