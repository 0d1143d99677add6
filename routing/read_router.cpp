#include "routing/read_router.hpp"

#include <cmath>

namespace switchyard::routing {

uint32_t cohort_bucket(std::string_view key) {
  // FNV-1a, then splitmix64's finalizer so similar keys ("app-1", "app-2") spread evenly.
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  hash ^= hash >> 30;
  hash *= 0xbf58476d1ce4e5b9ULL;
  hash ^= hash >> 27;
  hash *= 0x94d049bb133111ebULL;
  hash ^= hash >> 31;
  return static_cast<uint32_t>(hash % kBuckets);
}

bool in_cohort(uint32_t bucket, double percent) {
  if (percent <= 0) return false;
  if (percent >= 100) return true;
  // Buckets are 0.01 % wide; round so that 12.5 % routes exactly 1250 of them.
  auto routed = static_cast<uint32_t>(std::lround(percent * (kBuckets / 100.0)));
  return bucket < routed;
}

double ReadPolicy::percent_for(std::string_view user, std::string_view application) const {
  for (const auto& [name, value] : application_percent) {
    if (name == application) return value;
  }
  for (const auto& [name, value] : user_percent) {
    if (name == user) return value;
  }
  return percent;
}

const char* to_string(RouteReason reason) {
  switch (reason) {
  case RouteReason::kCohort: return "cohort";
  case RouteReason::kOutsideCohort: return "outside_cohort";
  case RouteReason::kUnsafe: return "unsafe";
  case RouteReason::kWrittenTransaction: return "written_transaction";
  case RouteReason::kCount: break;
  }
  return "?";
}

bool SessionRouter::decide(const ReadPolicy& policy) const {
  std::string_view key;
  switch (policy.key) {
  case CohortKey::kSession: key = identity_.session_id; break;
  case CohortKey::kUser: key = identity_.user; break;
  case CohortKey::kApplicationName: key = identity_.application_name; break;
  case CohortKey::kClientAddress: key = identity_.client_address; break;
  }
  double percent = policy.percent_for(identity_.user, identity_.application_name);
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
    secondary = *session_decision_;
    break;
  }
  if (secondary) return {ReadTarget::kSecondary, RouteReason::kCohort};
  return {ReadTarget::kPrimary, RouteReason::kOutsideCohort};
}

} // namespace switchyard::routing
