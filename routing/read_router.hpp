#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "monitoring/metrics.hpp"
#include "protocol/classify.hpp"

namespace switchyard::routing {

using config::CohortKey;
using config::DecisionUnit;

//! The number of cohort buckets; a percentage p routes buckets [0, p * 100).
inline constexpr uint32_t kBuckets = 10'000;

//! The bucket (0 .. 9999) `key` hashes to: the same on every proxy and across restarts, so
//! raising the percentage only adds buckets and lowering it only removes them.
uint32_t cohort_bucket(std::string_view key);

//! Whether `bucket` is among the first `percent` % (0-100, fractional) of the buckets.
bool in_cohort(uint32_t bucket, double percent);

//! The read-routing policy of one config snapshot.
using ReadPolicy = config::ReadRouting;

//! The percentage for a session of `user` running as `application`: an application
//! override wins over a user override, which wins over the policy's percent.
double percent_for(const ReadPolicy& policy, std::string_view user, std::string_view application);

//! Whether `statement` may be answered by the secondary: a SELECT (VALUES, read-only CTE)
//! or SHOW without locking clauses, writes, or functions whose answer depends on the
//! connection, calling only allow-listed functions (built in, or `safe_functions`) or those
//! `known_read_only` accepts (the database's own, declared STABLE or IMMUTABLE).
bool is_safe_read(const protocol::Statement& statement,
                  const std::vector<std::string>& safe_functions,
                  const std::function<bool(const std::string&)>& known_read_only = nullptr);

//! Who a session is, for its cohort key.
struct SessionIdentity {
  std::string session_id; //!< unique per session (e.g. a random id drawn at accept)
  std::string user;
  std::string application_name;
  std::string client_address; //!< without the port
};

enum class ReadTarget { kPrimary, kSecondary };

using monitoring::RouteReason;

struct RouteDecision {
  ReadTarget target = ReadTarget::kPrimary;
  RouteReason reason = RouteReason::kOutsideCohort;
};

//! What the router needs to know about a statement.
struct ReadRequest {
  bool safe = false;           //!< a read without locking clauses or volatile functions
  bool in_transaction = false; //!< inside BEGIN ... COMMIT
  bool transaction_wrote = false;
};

//! One session's routing: applies the policy of the moment at each decision and keeps a
//! decision as long as the policy's unit says, so a reload changes the next decision and
//! an open transaction keeps its own.
class SessionRouter {
public:
  explicit SessionRouter(SessionIdentity identity) : identity_(std::move(identity)) {}

  RouteDecision route(const ReadPolicy& policy, const ReadRequest& request);
  //! The session's transaction ended: a per-transaction decision is taken afresh next time.
  void end_transaction() { transaction_decision_.reset(); }
  //! SET application_name: the key (and override) of later decisions.
  void set_application_name(std::string name) { identity_.application_name = std::move(name); }
  const SessionIdentity& identity() const { return identity_; }

private:
  bool decide(const ReadPolicy& policy) const;

  SessionIdentity identity_;
  std::optional<bool> transaction_decision_;
  std::optional<bool> session_decision_;
};

} // namespace switchyard::routing
