#include "routing/read_router.hpp"

#include <algorithm>
#include <cmath>

#include "routing/stable_hash.hpp"

namespace switchyard::routing {

uint32_t cohort_bucket(std::string_view key) {
  return static_cast<uint32_t>(stable_hash(key) % kBuckets);
}

bool in_cohort(uint32_t bucket, double percent) {
  if (percent <= 0) return false;
  if (percent >= 100) return true;
  // Buckets are 0.01 % wide; round so that 12.5 % routes exactly 1250 of them.
  auto routed = static_cast<uint32_t>(std::lround(percent * (kBuckets / 100.0)));
  return bucket < routed;
}

double percent_for(const ReadPolicy& policy, std::string_view user, std::string_view application) {
  for (const auto& [name, value] : policy.application_percent) {
    if (name == application) return value;
  }
  for (const auto& [name, value] : policy.user_percent) {
    if (name == user) return value;
  }
  return policy.percent;
}

bool is_safe_read(const protocol::Statement& statement,
                  const std::vector<std::string>& safe_functions,
                  const std::function<bool(const std::string&)>& known_read_only) {
  if (statement.node == "VariableShowStmt") return true;
  if (statement.node != "SelectStmt" || statement.kind == protocol::StatementKind::kDdl) {
    return false; // SELECT INTO creates a table
  }
  // The client knows the primary's OIDs (see OidTranslation): catalogs are read there.
  if (statement.locking || statement.nested_write || statement.pinned_call ||
      statement.reads_catalog) {
    return false;
  }
  return std::all_of(statement.unlisted_functions.begin(), statement.unlisted_functions.end(),
                     [&](const std::string& name) {
                       return std::find(safe_functions.begin(), safe_functions.end(), name) !=
                                  safe_functions.end() ||
                              (known_read_only && known_read_only(name));
                     });
}

bool SessionRouter::decide(const ReadPolicy& policy) const {
  std::string_view key;
  switch (policy.key) {
  case CohortKey::kSession: key = identity_.session_id; break;
  case CohortKey::kUser: key = identity_.user; break;
  case CohortKey::kApplicationName: key = identity_.application_name; break;
  case CohortKey::kClientAddress: key = identity_.client_address; break;
  }
  double percent = percent_for(policy, identity_.user, identity_.application_name);
  return in_cohort(cohort_bucket(key), percent);
}

RouteDecision SessionRouter::route(const ReadPolicy& policy, const ReadRequest& request) {
  if (!request.safe) return {ReadTarget::kPrimary, RouteReason::kUnsafe};
  if (request.transaction_wrote) return {ReadTarget::kPrimary, RouteReason::kWrittenTransaction};
  bool secondary = false;
  switch (policy.unit) {
  case DecisionUnit::kStatement: secondary = decide(policy); break;
  case DecisionUnit::kTransaction:
    if (!request.in_transaction) {
      secondary = decide(policy);
      break;
    }
    if (!transaction_decision_) transaction_decision_ = decide(policy);
    secondary = *transaction_decision_;
    break;
  case DecisionUnit::kSession:
    if (!session_decision_) session_decision_ = decide(policy);
    // At 0 % (a revert) the session's earlier decision does not keep it on the secondary.
    secondary =
        *session_decision_ && percent_for(policy, identity_.user, identity_.application_name) > 0;
    break;
  }
  if (secondary) return {ReadTarget::kSecondary, RouteReason::kCohort};
  return {ReadTarget::kPrimary, RouteReason::kOutsideCohort};
}

} // namespace switchyard::routing
